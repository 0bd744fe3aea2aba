"""The GPU recipe's staging and training, on the CPU with a tiny budget: what travels is the
training images alone (never validation), in parts, with their heads and hard negatives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.gpu_continue import stage, train_on_stage
from maskfocal.checkpoint import load_checkpoint
from maskfocal.config import load_config
from maskfocal.data.readers import read_dataset
from maskfocal.data.splits import build_splits
from maskfocal.data.synthetic import SyntheticConfig, write_mot

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"


@pytest.fixture()
def on_disk(tmp_path, monkeypatch) -> list[str]:
    monkeypatch.chdir(tmp_path)  # the stage's paths are relative to the repository root
    scene = SyntheticConfig(width=192, height=160, max_count=40)
    write_mot(tmp_path / "a", {"train": 8}, seed=1, config=scene)
    write_mot(tmp_path / "b", {"train": 8}, seed=2, config=scene)
    return ["data.format=mot", f"data.root={tmp_path / 'a'}",
            f"data.extra_train=[mot:{tmp_path / 'b'}]", "data.val_split=null",
            "data.val_fraction=0.25", "data.test_split=null", "data.hard_negatives=null",
            "data.hard_negative_crops=0"]


def test_staging_sends_the_training_images_in_parts_and_the_run_trains(on_disk, tmp_path):
    config = load_config(TINY, on_disk)
    train_images, val, _ = build_splits(config.data, seed=0)
    first = train_images[0]
    hard = tmp_path / "hard.json"
    hard.write_text(json.dumps({"format": "maskfocal-hard-negatives/1", "images": {
        str(first.image_path.resolve()): [[10, 20, 0.5]],
        str(val[0].image_path.resolve()): [[1, 1, 0.5]]}}))
    parts = stage(str(TINY), str(hard), Path("runs/gpu_stage"), 0.02, on_disk)
    assert len(parts) > 1  # 20 kB parts: the images travel over several calls
    staged = [p for part in parts for p in part.rglob("*.webp")]
    assert len(staged) == len(train_images) == 12  # 6 of each source; no validation image
    train_on_stage(Path("runs/gpu_stage"), 0.05, tmp_path / "out", "null",
                   ["data.synthetic.test_images=0"])
    merged = Path("runs/gpu_stage/merged")
    names = sorted(str(p.relative_to(merged)) for p in merged.rglob("*.webp"))
    assert len(set(names)) == 12  # parts of one source merged without a clash
    for root in ("0_a", "1_b"):
        assert len(read_dataset("points", merged / root, split="train").images) == 6
    negatives = json.loads((merged / "hard_negatives.json").read_text())["images"]
    assert list(negatives.values()) == [[[10.0, 20.0, 1.0]]]  # the validation image's: dropped
    weights = load_checkpoint(tmp_path / "out" / "crowd_lite0_gpu.safetensors")
    assert weights["config"]["data"]["batch_size"] == 32  # the GPU profile
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["epochs"] >= 1 and summary["images"] == 12
