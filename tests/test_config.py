from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from maskfocal.config import Config, load_config, parse_overrides
from maskfocal.errors import MaskfocalError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_base_yaml_documents_every_key_with_its_default():
    base = yaml.safe_load((CONFIGS / "base.yaml").read_text())
    assert base == Config().to_dict()
    lines = [line for line in (CONFIGS / "base.yaml").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#") and ":" in line
             and not line.rstrip().endswith(":")]
    undocumented = [line for line in lines if "#" not in line]
    assert not undocumented


@pytest.mark.parametrize("name", ["tiny.yaml", "centernet_r18_synth.yaml",
                                  "centernet_r18_shb.yaml"])
def test_shipped_overrides_load(name):
    config = load_config(CONFIGS / name)
    assert config.model.name == "centernet"


def test_overrides_and_types():
    config = load_config(CONFIGS / "tiny.yaml", ["model.backbone=resnet34", "train.epochs=5",
                                                 "loss.alpha=0.25", "data.flip=false",
                                                 "train.lr=1e-4"])
    assert config.model.backbone == "resnet34" and config.train.epochs == 5
    assert config.loss.alpha == 0.25 and config.data.flip is False and config.train.lr == 1e-4
    assert parse_overrides(["a.b=1", "a.c=x"]) == {"a": {"b": 1, "c": "x"}}


@pytest.mark.parametrize("override, message", [
    ("model.nope=1", "unknown config key 'model.nope'; valid keys here: model.name"),
    ("nope.x=1", "unknown config key 'nope'"),
    ("model.name=yolo",
     "model.name: 'yolo' is not one of: centernet, fcos, retinanet, faster_rcnn"),
    ("loss.name=dice", "loss.name: 'dice' is not one of: auto, native, mfl"),
    ("train.epochs=many", "train.epochs: expected an integer"),
    ("data.input_size=100", "multiple of 32"),
    ("decode.max_detections=100", "max_detections must be >= 10000"),
    ("train.epochs", "not key=value"),
])
def test_bad_overrides_say_what_is_valid(override, message):
    with pytest.raises(MaskfocalError, match=message.replace(".", r"\.").replace("(", r"\(")):
        load_config(CONFIGS / "tiny.yaml", [override])


def test_missing_file_and_required_root(tmp_path):
    with pytest.raises(MaskfocalError, match="does not exist"):
        load_config(tmp_path / "none.yaml")
    with pytest.raises(MaskfocalError, match=r"data\.root is required"):
        load_config(None, ["data.format=shanghaitech"])
