"""The CLI end to end, in-process and as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from maskfocal.cli import main
from tests.data.test_readers import make_voc


def test_data_synth_stats_show(tmp_path, capsys):
    root = tmp_path / "synth"
    assert main(["data", "synth", "--out", str(root), "--train", "3", "--val", "1",
                 "--test", "0", "--size", "96x64", "--min-count", "30", "--max-count", "50"]) == 0
    capsys.readouterr()
    assert main(["data", "stats", "--format", "mot", "--root", str(root), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert stats["images"] == 4
    assert stats["heads_per_image"]["min"] > 0  # --min-count: no empty scene
    assert set(stats["heads_per_image"]) == {"min", "mean", "max"}
    assert main(["data", "show", "--format", "mot", "--root", str(root), "--out",
                 str(tmp_path / "show"), "--count", "2"]) == 0
    assert len(list((tmp_path / "show").glob("*.png"))) == 2


def test_stats_reports_repairs(tmp_path, capsys):
    make_voc(tmp_path)
    assert main(["data", "stats", "--format", "voc", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "zero-area boxes dropped: 1" in out and "images            2" in out


@pytest.mark.parametrize("argv, message", [
    (["data", "stats", "--format", "voc", "--root", "/no/such/dir"], "does not exist"),
    (["data", "stats", "--format", "nope", "--root", "."], "invalid choice"),
    (["data", "synth", "--out", "x", "--size", "big"], "WIDTHxHEIGHT"),
    (["data", "synth", "--out", "x", "--min-count", "60", "--max-count", "50"], "--min-count"),
    (["frobnicate"], "invalid choice"),
])
def test_user_mistakes_one_line_status_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        sys.exit(main(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_damaged_file_strict_exits_2(tmp_path, capsys):
    make_voc(tmp_path)
    (tmp_path / "Annotations" / "b.xml").write_text("<broken")
    assert main(["data", "stats", "--format", "voc", "--root", str(tmp_path), "--strict"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("b.xml: invalid XML (unclosed token: line 1, column 0)")
    assert len(err.splitlines()) == 1


def test_python_dash_m_runs_the_cli(tmp_path):
    result = subprocess.run([sys.executable, "-m", "maskfocal", "data", "stats", "--format",
                             "voc", "--root", str(tmp_path / "missing")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == f"maskfocal: error: {tmp_path / 'missing'}: dataset root " \
                                    "does not exist"


def test_train_eval_count_end_to_end(tmp_path, capsys):
    from pathlib import Path

    tiny = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
    run = tmp_path / "run"
    assert main(["train", "--config", str(tiny), "--out", str(run), "--quiet",
                 "train.epochs=1"]) == 0
    assert "test MAE" in capsys.readouterr().out
    assert main(["eval", "--checkpoint", str(run / "best.pt"), "--format", "synthetic",
                 "--json", "--save-dir", str(tmp_path / "eval")]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"mae", "rmse", "nae", "f1_sigma4", "f1_sigma8"} <= set(metrics)
    assert (tmp_path / "eval" / "per_image.csv").read_text().startswith("image,split,true_count")

    scenes = tmp_path / "scenes"
    main(["data", "synth", "--out", str(scenes), "--train", "0", "--val", "0", "--test", "2",
          "--size", "96x64", "--max-count", "20"])
    capsys.readouterr()
    folder = scenes / "test" / "synth-test-00" / "img1"
    (folder / "broken.jpg").write_bytes(b"not an image")
    assert main(["count", str(folder / "000001.jpg"), "--checkpoint", str(run / "best.pt"),
                 "--json"]) == 0
    one = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(one) >= {"count", "points"} and one["count"] == len(one["points"])
    assert main(["count", str(folder), "--checkpoint", str(run / "best.pt"), "--json",
                 "--save-overlay", str(tmp_path / "overlays")]) == 0
    captured = capsys.readouterr()
    many = json.loads(captured.out.strip().splitlines()[-1])
    assert isinstance(many, list) and len(many) == 2
    assert "1 of 3 images could not be read" in captured.err
    written = sorted(p.name for p in (tmp_path / "overlays").iterdir())
    assert written == [".maskfocal-outputs.json", "000001.overlay.png", "000002.overlay.png",
                       "contact_sheet.png", "counts.csv"]
    assert (tmp_path / "overlays" / "counts.csv").read_text().count("\n") == 3
    assert main(["eval", "--checkpoint", str(tmp_path / "missing.pt"), "--format",
                 "synthetic"]) == 2
    assert main(["train", "--config", str(tiny), "--out", str(run), "model.nope=1"]) == 2


def test_counter_accepts_arrays_pil_tensors_and_gives_heatmap(tmp_path):
    import numpy as np
    import torch
    from PIL import Image

    from maskfocal import Counter
    from maskfocal.checkpoint import save_checkpoint
    from maskfocal.config import load_config
    from maskfocal.families import build_model

    config = load_config(None, ["model.neck_channels=16", "model.head_channels=8"])
    save_checkpoint(tmp_path / "c.pt", {"model": build_model(config).state_dict(),
                                        "config": config.to_dict(), "threshold": 0.3})
    counter = Counter.from_checkpoint(tmp_path / "c.pt", device="cpu")
    pixels = np.zeros((70, 90, 3), np.uint8)
    counts = {counter(pixels).count, counter(Image.fromarray(pixels)).count,
              counter(torch.zeros(3, 70, 90)).count}
    assert len(counts) == 1
    result = counter(pixels, return_heatmap=True)
    assert result.heatmap.shape == (-(-70 // 4), -(-90 // 4))
