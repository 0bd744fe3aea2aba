"""Safe inputs: odd image modes, EXIF rotation, bombs, truncation; checkpoints that could run
code; every CLI mistake one line and exit status 2."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from maskfocal import structures
from maskfocal.checkpoint import load_checkpoint, save_checkpoint
from maskfocal.cli import main
from maskfocal.config import load_config
from maskfocal.data.training import AugmentOptions, TrainingSet
from maskfocal.errors import DatasetError, MaskfocalError
from maskfocal.families import build_model
from maskfocal.structures import AnnotatedImage, load_rgb


def save(path: Path, image: Image.Image, **options) -> Path:
    image.save(path, **options)
    return path


def test_image_modes_become_rgb(tmp_path):
    gray = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (8, 1))  # 8 x 64
    cases = {
        "gray.png": Image.fromarray(gray, "L"),
        "rgba.png": Image.fromarray(np.dstack([gray] * 3 + [np.zeros_like(gray)]), "RGBA"),
        "cmyk.jpg": Image.fromarray(np.dstack([gray] * 3), "RGB").convert("CMYK"),
        "palette.png": Image.fromarray(gray, "L").convert("P"),
        "bits16.png": Image.fromarray(gray.astype(np.uint16) * 257),  # mode I;16
        "int32.tiff": Image.fromarray(gray.astype(np.int32) * 257),  # mode I
        "float.tiff": Image.fromarray(gray.astype(np.float32) / 255),  # mode F
    }
    assert [cases[n].mode for n in ("bits16.png", "int32.tiff", "float.tiff")] == ["I;16", "I",
                                                                                   "F"]
    for name, image in cases.items():
        pixels = load_rgb(save(tmp_path / name, image))
        assert pixels.shape == (8, 64, 3) and pixels.dtype == np.uint8, name
        if name not in ("cmyk.jpg",):
            # 16-bit and float are scaled into 8 bits, not clipped: the ramp survives
            assert abs(int(pixels[0, -1, 0]) - 252) <= 1 and pixels[0, 0, 0] == 0, name
    assert load_rgb(tmp_path / "rgba.png")[0, -1].tolist() == [252, 252, 252]  # alpha dropped


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :10] = 255  # white on the left of a landscape image
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display needs 90 degrees clockwise
    path = save(tmp_path / "rotated.jpg", Image.fromarray(pixels), exif=exif.tobytes())
    upright = load_rgb(path)
    assert upright.shape == (40, 20, 3)
    assert upright[:10].mean() > 200 and upright[-10:].mean() < 50  # white now on top


def test_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    path = save(tmp_path / "big.png", Image.new("RGB", (300, 200)))
    monkeypatch.setattr(structures, "MAX_PIXELS", 50_000)
    with pytest.raises(DatasetError, match=r"big\.png: .*300x200.*MAX_PIXELS"):
        load_rgb(path)


def test_truncated_image_is_an_error_naming_it(tmp_path):
    data = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(
        data, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    with pytest.raises(DatasetError, match=r"cut\.jpg: cannot read image"):
        load_rgb(path)


def test_truncated_image_does_not_end_an_epoch(tmp_path, capsys):
    good = save(tmp_path / "good.png", Image.new("RGB", (64, 48), (90, 90, 90)))
    data = io.BytesIO()
    Image.new("RGB", (64, 48)).save(data, format="JPEG")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(data.getvalue()[:200])
    images = [AnnotatedImage(bad, np.array([[5.0, 5.0]]), 64, 48),
              AnnotatedImage(good, np.array([[10.0, 10.0]]), 64, 48)]
    dataset = TrainingSet(images, AugmentOptions(input_size=32))
    samples = [dataset[i] for i in range(2)] + [dataset[0]]
    assert all(s.image.shape == (3, 32, 32) for s in samples)
    assert capsys.readouterr().err.count("bad.jpg") == 1  # reported once
    with pytest.raises(DatasetError, match="no training image"):
        TrainingSet(images[:1], AugmentOptions(input_size=32))[0]


class _Boom:
    def __reduce__(self):
        return (Path.touch, (Path("/tmp/maskfocal-pwned"),))


def test_checkpoint_that_would_run_code_is_refused(tmp_path, capsys):
    flag = Path("/tmp/maskfocal-pwned")
    flag.unlink(missing_ok=True)
    evil = tmp_path / "evil.pt"
    with evil.open("wb") as file:
        pickle.dump({"format": "maskfocal-checkpoint", "model": _Boom(), "config": {}}, file)
    torch.save({"format": "maskfocal-checkpoint", "model": _Boom(), "config": {}},
               tmp_path / "evil_zip.pt")
    for path in (evil, tmp_path / "evil_zip.pt"):
        with pytest.raises(MaskfocalError, match="not a readable checkpoint"):
            load_checkpoint(path)
        assert main(["count", str(path), "--checkpoint", str(path)]) == 2
    assert not flag.exists()


def test_checkpoint_version_and_config_mismatches_are_explained(tmp_path):
    config = load_config(None, ["model.neck_channels=16", "model.head_channels=8"])
    state = {"model": build_model(config).state_dict(), "config": config.to_dict()}
    save_checkpoint(tmp_path / "new.pt", {**state, "format_version": 99})
    with pytest.raises(MaskfocalError, match="newer maskfocal"):
        load_checkpoint(tmp_path / "new.pt")
    save_checkpoint(tmp_path / "odd.pt", {**state, "config": {**state["config"],
                                                              "model": {"wings": 2}}})
    with pytest.raises(MaskfocalError, match=r"odd\.pt.*wings"):
        from maskfocal import Counter

        Counter.from_checkpoint(tmp_path / "odd.pt", device="cpu")
    other = load_config(None, ["model.neck_channels=32", "model.head_channels=8"])
    save_checkpoint(tmp_path / "shape.pt", {**state, "config": other.to_dict()})
    with pytest.raises(MaskfocalError, match="weights do not fit"):
        from maskfocal import Counter

        Counter.from_checkpoint(tmp_path / "shape.pt", device="cpu")


@pytest.fixture
def files(tmp_path):
    image = save(tmp_path / "a.png", Image.new("RGB", (40, 30)))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00garbage" * 100)
    return {"image": str(image), "garbage": str(garbage), "missing": str(tmp_path / "none"),
            "dir": str(tmp_path)}


MISTAKES = [
    ["count", "{missing}", "--checkpoint", "{garbage}"],
    ["count", "{image}", "--checkpoint", "{garbage}"],
    ["count", "{image}", "--checkpoint", "{missing}"],
    ["count", "{image}", "--checkpoint", "{garbage}", "--device", "tpu"],
    ["eval", "--checkpoint", "{garbage}", "--format", "synthetic"],
    ["eval", "--checkpoint", "{garbage}", "--format", "nope", "--root", "{dir}"],
    ["data", "stats", "--format", "voc", "--root", "{missing}"],
    ["data", "stats", "--format", "csv", "--root", "{dir}"],
    ["train", "--out", "{dir}/run", "train.epochs=two"],
    ["train", "--out", "{dir}/run", "model.name=yolo"],
    ["train", "--out", "{dir}/run", "nonsense"],
    ["train", "--config", "{missing}", "--out", "{dir}/run"],
    ["train", "--config", "{image}", "--out", "{dir}/run"],
    ["export", "--checkpoint", "{garbage}", "--out", "{dir}/m.onnx"],
    ["export", "--checkpoint", "{image}", "--format", "tflite", "--out", "{dir}/m"],
    ["count", "{dir}/clip.mp4", "--checkpoint", "{garbage}"],
    ["frobnicate"],
]


@pytest.mark.parametrize("argv", MISTAKES, ids=lambda a: " ".join(a[:2]))
def test_every_cli_mistake_is_one_line_and_status_2(argv, files, capsys):
    try:
        status = main([part.format(**files) for part in argv])
    except SystemExit as exit_:  # argparse's own usage errors
        status = exit_.code
    captured = capsys.readouterr()
    assert status == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
