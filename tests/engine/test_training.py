"""Training on the tiny config: resume exactness, checkpoints, metrics, calibration."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from maskfocal.checkpoint import load_checkpoint, save_checkpoint
from maskfocal.config import load_config
from maskfocal.decode import Detections
from maskfocal.engine import train
from maskfocal.engine.trainer import lr_factor
from maskfocal.errors import MaskfocalError
from maskfocal.inference import Predictions, calibrate_threshold

TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"


def tiny(*overrides):
    return load_config(TINY, ["data.synthetic.test_images=0", "data.test_split=null",
                              *overrides])


@pytest.mark.parametrize("ema", [[], ["train.ema_decay=0.9"]], ids=["plain", "ema"])
def test_resume_equals_uninterrupted(tmp_path, ema):
    config = tiny(*ema)
    train(config, tmp_path / "straight", progress=False)
    stopped = train(config, tmp_path / "resumed", progress=False, stop_after=1)
    assert stopped == {"stopped_after_epoch": 1}
    assert load_checkpoint(tmp_path / "resumed" / "last.pt")["epoch"] == 0
    train(config, tmp_path / "resumed", resume=True, progress=False)
    straight = load_checkpoint(tmp_path / "straight" / "last.pt")
    resumed = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert straight["epoch"] == resumed["epoch"] == 1 and straight["step"] == resumed["step"]
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    for key, value in straight.get("ema", {}).items():  # the average continues too
        assert torch.equal(value, resumed["ema"][key]), key
    assert ("ema" in straight) == bool(ema)
    with (tmp_path / "resumed" / "metrics.csv").open() as file:
        assert [row["epoch"] for row in csv.DictReader(file)] == ["0", "1"]


def test_run_folder_contents(tmp_path):
    result = train(tiny("train.epochs=1"), tmp_path, progress=False)
    for name in ("last.pt", "best.pt", "config.yaml", "metrics.csv"):
        assert (tmp_path / name).is_file(), name
    assert list((tmp_path / "tb").iterdir())  # TensorBoard event files
    state = load_checkpoint(tmp_path / "best.pt")
    assert {"model", "optimizer", "scheduler", "epoch", "step", "config",
            "maskfocal_version"} <= set(state)
    threshold = state["config"]["decode"]["threshold"]  # the threshold's one home
    assert 0 < threshold < 1 and threshold == result["threshold"]


def test_resume_with_a_different_model_is_refused(tmp_path):
    train(tiny("train.epochs=1"), tmp_path, progress=False)
    with pytest.raises(MaskfocalError, match="model config differs"):
        train(tiny("train.epochs=2", "model.head_channels=8"), tmp_path, resume=True,
              progress=False)


def test_non_finite_loss_stops_with_a_clear_message(tmp_path, monkeypatch):
    from maskfocal.models import CenterNet

    forward = CenterNet.forward

    def broken(self, images, targets=None):
        losses = forward(self, images, targets)
        return {key: value * float("nan") for key, value in losses.items()}

    monkeypatch.setattr(CenterNet, "forward", broken)
    with pytest.raises(MaskfocalError, match="loss became nan at epoch 1, step 1"):
        train(tiny("train.epochs=1"), tmp_path, progress=False)


def test_checkpoint_errors(tmp_path):
    with pytest.raises(MaskfocalError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00junk")
    with pytest.raises(MaskfocalError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(MaskfocalError, match="not a maskfocal checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    save_checkpoint(tmp_path / "ok.pt", {"model": {}, "config": {}})
    assert load_checkpoint(tmp_path / "ok.pt")["format_version"] == 1


def test_calibration_picks_lowest_mae():
    scores = [torch.tensor([0.9, 0.8, 0.4, 0.2]), torch.tensor([0.95, 0.3])]
    predictions = Predictions(
        detections=[Detections(torch.zeros(len(s), 2), s, None) for s in scores],
        gt_points=[np.zeros((2, 2)), np.zeros((1, 2))], gt_boxes=[None, None])
    threshold, mae = calibrate_threshold(predictions)
    assert mae == 0 and 0.4 < threshold <= 0.8


def test_schedule_warms_up_then_decays_to_zero():
    assert lr_factor(0, 10, 100) == pytest.approx(0.1)
    assert lr_factor(9, 10, 100) == pytest.approx(1.0)
    assert lr_factor(100, 10, 100) == pytest.approx(0.0)


@pytest.mark.parametrize("model_name", ["fcos", "retinanet", "faster_rcnn"])
@pytest.mark.parametrize("loss_name", ["native", "mfl"])
def test_box_detectors_train_with_each_loss(tmp_path, model_name, loss_name):
    result = train(tiny("train.epochs=1", f"model.name={model_name}", f"loss.name={loss_name}",
                        "model.neck_channels=32"), tmp_path, progress=False)
    with (tmp_path / "metrics.csv").open() as file:
        row = next(csv.DictReader(file))
    keys = {"fcos": ["loss_classification", "loss_box", "loss_centerness"],
            "retinanet": ["loss_classification", "loss_box"],
            "faster_rcnn": ["loss_classifier", "loss_box", "loss_objectness",
                            "loss_rpn_box"]}[model_name]
    assert all(np.isfinite(float(row[key])) for key in keys)
    assert np.isfinite(result["val"]["mae"])
    from maskfocal.inference import Counter

    counter = Counter.from_checkpoint(tmp_path / "best.pt")
    found = counter(np.zeros((64, 96, 3), np.uint8))
    assert found.boxes is not None and len(found.boxes) == found.count
