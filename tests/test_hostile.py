"""Second runs, odd inputs and mistakes as a demanding user makes them (issue 31): each case
here once went wrong silently, with a traceback, or by losing a file."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from maskfocal.checkpoint import load_checkpoint, save_checkpoint
from maskfocal.cli import main
from maskfocal.data.readers import read_dataset
from tests.conftest import write_image
from tests.data.test_readers import _voc_xml
from tests.test_inference import checkpoint


def run(argv, capsys):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def one_line(err: str) -> bool:
    return len(err.strip().splitlines()) == 1 and "Traceback" not in err


# --- silently wrong ---------------------------------------------------------------------------


def test_a_diverged_model_is_refused_not_counted_as_nobody(tmp_path, capsys):
    ck = checkpoint(tmp_path)
    state = load_checkpoint(ck)
    name = next(iter(state["model"]))
    state["model"][name] = torch.full_like(state["model"][name], float("nan"))
    save_checkpoint(tmp_path / "nan.pt", state)
    image = write_image(tmp_path / "a.png", 64, 48)
    status, _, err = run(["count", image, "--checkpoint", tmp_path / "nan.pt"], capsys)
    assert status == 2 and "NaN or infinity" in err and one_line(err)  # before: 0 heads, exit 0


def test_eval_without_split_scores_the_test_split_and_names_it(tmp_path, capsys):
    ck = checkpoint(tmp_path, threshold=0.09)
    root = tmp_path / "data"
    for split, heads in (("train", 3), ("test", 5)):  # the same file name in both splits
        (root / split).mkdir(parents=True)
        write_image(root / split / "IMG_1.png", 64, 48)
        (root / split / "IMG_1.json").write_text(json.dumps({"points": [[5, 5]] * heads}))
    status, out, err = run(["eval", "--checkpoint", ck, "--format", "points", "--root", root,
                            "--save-dir", tmp_path / "ev", "--json", "--device", "cpu"], capsys)
    assert status == 0, err
    assert json.loads(out.strip().splitlines()[-1])["images"] == 1  # before: 2, mixed
    assert "scoring the test split" in err
    rows = (tmp_path / "ev" / "per_image.csv").read_text().splitlines()
    assert rows[0] == "image,split,true_count,predicted_count,error"
    assert rows[1].startswith("IMG_1.png,test,5,")


def test_folder_scans_take_gif_like_count_does(tmp_path, capsys):
    ck = checkpoint(tmp_path)
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(folder / "a.gif")
    status, out, err = run(["count", folder, "--checkpoint", ck], capsys)
    assert status == 0 and "a.gif:" in out, err  # before: "no images found"


def test_voc_reads_typos_of_head_not_other_words(tmp_path):
    names = ["head", "haed", "hed", "heads", "heaad", "hand", "bead", "dead", "hear", "heap"]
    (tmp_path / "Annotations").mkdir()
    write_image(tmp_path / "JPEGImages" / "a.jpg")
    boxes = [[2 + 5 * k, 2, 6 + 5 * k, 6] for k in range(len(names))]
    (tmp_path / "Annotations" / "a.xml").write_text(_voc_xml(boxes, names=names))
    image = read_dataset("voc", tmp_path).images[0]
    assert image.num_heads == 5  # before: 10, every word one letter from "head"


def test_count_with_nothing_readable_is_an_error(tmp_path, capsys):
    ck = checkpoint(tmp_path)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a picture")
    status, _, err = run(["count", bad, "--checkpoint", ck, "--json"], capsys)
    assert status == 2 and "none of the 1 images could be read" in err  # before: exit 0, []


def test_export_names_what_count_can_read(tmp_path, capsys):
    ck = checkpoint(tmp_path)
    status, _, err = run(["export", "--checkpoint", ck, "--out", tmp_path / "model.txt"],
                         capsys)
    assert status == 2 and ".onnx" in err and one_line(err)
    assert not (tmp_path / "model.txt").exists()


def test_spreadsheet_formulas_in_names_are_escaped(tmp_path, capsys, monkeypatch):
    ck = checkpoint(tmp_path)
    monkeypatch.chdir(tmp_path)
    write_image(tmp_path / "=HYPERLINK(1).png", 64, 48)
    status, _, err = run(["count", "=HYPERLINK(1).png", "--checkpoint", ck, "--out", "out"],
                         capsys)
    assert status == 0, err
    rows = (tmp_path / "out" / "counts.csv").read_text().splitlines()
    assert rows[1].startswith("'=HYPERLINK(1).png,")


# --- tracebacks -------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, says", [
    (["serve", "--port", "99999"], "at most 65535"),
    (["data", "synth", "--out", "x", "--size", "100000x100000"], "at most 8192"),
    (["serve", "--timeout", "inf"], "number of seconds > 0"),  # siblings: timers, sizes
    (["serve", "--receive-timeout", "nan"], "number of seconds > 0"),
    (["serve", "--max-upload-mb", "inf"], "a number > 0"),
])
def test_out_of_range_options_are_one_line(argv, says, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, _, err = run(argv, capsys)
    assert status == 2 and says in err and one_line(err)


def test_write_errors_are_one_line(tmp_path, capsys, monkeypatch):
    import errno

    import maskfocal.fileio

    ck = checkpoint(tmp_path)

    def full(path, data):
        raise OSError(errno.EFBIG, "File too large", str(path))

    monkeypatch.setattr(maskfocal.fileio, "atomic_write_bytes", full)
    status, _, err = run(["data", "synth", "--out", tmp_path / "ds", "--train", "1", "--val",
                          "0", "--test", "0", "--size", "64x48"], capsys)
    status2, _, err2 = run(["count", write_image(tmp_path / "a.png", 64, 48), "--checkpoint",
                            ck, "--out", tmp_path / "o"], capsys)
    for code, text in ((status, err), (status2, err2)):
        assert code == 2 and "File too large" in text and one_line(text)


def test_serve_with_workers_takes_an_onnx_model(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("uvicorn")
    import uvicorn

    from maskfocal.service import ServeSettings, serve

    ck = checkpoint(tmp_path)
    assert main(["export", "--checkpoint", str(ck), "--out", str(tmp_path / "m.onnx")]) == 0
    started = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: started.append(k["workers"]))
    serve(ServeSettings(checkpoint=str(tmp_path / "m.onnx")), port=0, workers=2)
    assert started == [2]  # before: "not a readable checkpoint (damaged ...)"


# --- the service ------------------------------------------------------------------------------


def test_the_service_reads_mpo_as_phones_save_it():
    from maskfocal.service import ServeSettings, decode_upload

    buffer = io.BytesIO()
    frames = [Image.new("RGB", (64, 48), (200, 10, 10)), Image.new("RGB", (64, 48))]
    frames[0].save(buffer, format="MPO", save_all=True, append_images=frames[1:])
    assert Image.open(io.BytesIO(buffer.getvalue())).format == "MPO"
    pixels = decode_upload(buffer.getvalue(), ServeSettings())  # before: 400
    assert pixels.shape == (48, 64, 3) and pixels[0, 0, 0] > 150


# --- second runs into the same place ------------------------------------------------------------


def test_a_second_synthetic_set_replaces_the_first_not_mixes_with_it(tmp_path, capsys):
    root = tmp_path / "ds"
    common = ["data", "synth", "--out", root, "--val", "0", "--test", "0", "--size", "64x48"]
    assert run([*common, "--train", "60"], capsys)[0] == 0
    mine = root / "train" / "synth-train-00" / "notes.txt"
    mine.write_text("the user's")
    status, _, err = run([*common, "--train", "14"], capsys)
    assert status == 0 and "removed" in err
    dataset = read_dataset("mot", root)
    assert len(dataset.images) == 14  # before: 60, 46 of them without a row in gt.txt
    assert mine.read_text() == "the user's"


TINY = "configs/tiny.yaml"


def test_a_finished_run_is_read_only(tmp_path, capsys, monkeypatch):
    from pathlib import Path

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    out = tmp_path / "run"
    common = ["train", "--config", TINY, "--quiet"]
    assert run([*common, "train.epochs=1", "--out", out], capsys)[0] == 0
    files = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    for change in (["train.epochs=1", "data.synthetic.train_images=8"], ["train.epochs=2"]):
        status, _, err = run([*common, *change, "--out", out, "--resume"], capsys)
        assert status == 2 and "the run was trained with" in err and one_line(err), err
    status, _, err = run(["train", "--out", out, "--resume"], capsys)  # its own config
    assert status == 0 and "finished earlier" in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == files


def test_overwrite_replaces_a_run_not_the_users_files(tmp_path, capsys, monkeypatch):
    from pathlib import Path

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    out = tmp_path / "mine"
    out.mkdir()
    (out / "metrics.csv").write_text("my own numbers\n")  # a run file's name, the user's file
    status, _, err = run(["train", "--config", TINY, "--quiet", "train.epochs=1", "--out", out,
                          "--overwrite"], capsys)
    assert status == 2 and "metrics.csv" in err and one_line(err)
    assert (out / "metrics.csv").read_text() == "my own numbers\n"


def test_the_demo_config_is_package_data():
    """``maskfocal demo`` from an installed wheel: its config ships inside the package."""
    import tomllib
    from pathlib import Path

    import maskfocal
    from maskfocal.demo import DEMO_CONFIG

    assert DEMO_CONFIG.parent == Path(maskfocal.__file__).parent and DEMO_CONFIG.is_file()
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert DEMO_CONFIG.name in project["tool"]["setuptools"]["package-data"]["maskfocal"]


def test_a_nan_poisoned_onnx_file_is_refused_not_counted_as_nobody(tmp_path, capsys):
    """Issue 53, 1: one initializer set to NaN counted 0 everywhere, exit 0."""
    import onnx
    from onnx import numpy_helper

    clean = tmp_path / "clean.onnx"
    assert main(["export", "--checkpoint", str(checkpoint(tmp_path)), "--out", str(clean)]) == 0
    model = onnx.load(str(clean))
    target = next(t for t in model.graph.initializer if t.name.endswith("bias"))
    values = numpy_helper.to_array(target).copy()
    values.flat[0] = np.nan
    target.CopyFrom(numpy_helper.from_array(values, target.name))
    poisoned = tmp_path / "nan_model.onnx"
    onnx.save(model, str(poisoned))
    image = write_image(tmp_path / "photo.png", 96, 64)
    capsys.readouterr()
    assert run(["count", image, "--checkpoint", clean, "--json"], capsys)[0] == 0
    status, _, err = run(["count", image, "--checkpoint", poisoned, "--json"], capsys)
    assert status == 2 and one_line(err)
    assert "nan_model.onnx" in err and "NaN" in err and target.name in err


def test_a_symlink_loop_in_a_folder_is_skipped_with_out_too(tmp_path, capsys):
    """Issue 53, 2: ``count d --out o`` raised RuntimeError: Symlink loop."""
    folder = tmp_path / "d"
    folder.mkdir()
    write_image(folder / "real.png", 96, 64)
    (folder / "lb.jpg").symlink_to("la.jpg")
    (folder / "la.jpg").symlink_to("lb.jpg")
    ck = checkpoint(tmp_path)
    for extra in ([], ["--out", tmp_path / "o"]):
        status, _, err = run(["count", folder, "--checkpoint", ck, *extra], capsys)
        assert status == 0 and "Traceback" not in err
    assert (tmp_path / "o" / "real.overlay.png").is_file()


def test_an_onnx_file_is_not_exported_again(tmp_path, capsys):
    """Issue 53, 8: a valid ONNX file was called "not a readable checkpoint (damaged ...)"."""
    first = tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(checkpoint(tmp_path)), "--out", str(first)]) == 0
    capsys.readouterr()
    status, _, err = run(["export", "--checkpoint", first, "--out", tmp_path / "again.onnx"],
                         capsys)
    assert status == 2 and one_line(err)
    assert "is an ONNX export already" in err and "damaged" not in err


def test_count_again_adds_files_and_replace_rewrites_its_own(tmp_path, capsys):
    """Issue 53, 4: the docs said a re-run replaces count's outputs; it adds -2 files (kept:
    earlier results are safe) and ``--replace`` replaces count's own, never the user's."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        write_image(folder / name, 96, 64)
    out = tmp_path / "o"
    out.mkdir()
    (out / "contact_sheet.png").write_bytes(b"the user's own file")
    ck = checkpoint(tmp_path)
    for _ in range(2):
        assert run(["count", folder, "--checkpoint", ck, "--out", out], capsys)[0] == 0
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert "counts-2.csv" in names and "a-2.overlay.png" in names
    assert run(["count", folder, "--checkpoint", ck, "--out", out, "--replace"],
               capsys)[0] == 0
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == names
    assert (out / "contact_sheet.png").read_bytes() == b"the user's own file"
