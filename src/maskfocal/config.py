"""One configuration path: typed dataclasses, one commented YAML of defaults, key=value overrides.

``configs/base.yaml`` documents every key; a run's file overrides some of them, and
``section.key=value`` arguments on the command line override those. Unknown keys and invalid
values are errors that list what is valid. The resolved config is saved next to every
checkpoint (``config.yaml``) and inside it.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from maskfocal.errors import MaskfocalError

MODEL_NAMES = ("centernet", "fcos", "retinanet")
BACKBONES = ("resnet18", "resnet34", "resnet50", "mobilenet_v3_large", "vgg16_bn")
LOSS_NAMES = ("native", "mfl")
DATA_FORMATS = ("synthetic", "shanghaitech", "ucf", "jhu", "nwpu", "voc", "mot", "coco",
                "points")

CHOICES: dict[str, tuple] = {
    "model.name": MODEL_NAMES,
    "model.backbone": BACKBONES,
    "loss.name": LOSS_NAMES,
    "loss.mask": ("peak", "gaussian", "box"),
    "loss.target_map": ("gaussian", "binary"),
    "loss.normalizer": ("objects", "positives", "weighted"),
    "loss.box_spread": ("centernet", "ttfnet"),
    "loss.spread_source": ("auto", "points"),
    "data.format": DATA_FORMATS,
    "train.device": ("auto", "cpu", "cuda"),
}


@dataclass
class SyntheticDataConfig:
    train_images: int = 400
    val_images: int = 60
    test_images: int = 60
    width: int = 640
    height: int = 480
    max_count: int = 1500
    seed: int = 0
    cache: bool = False


@dataclass
class DataConfig:
    format: str = "synthetic"
    root: str | None = None
    train_split: str | None = "train"
    val_split: str | None = "val"
    test_split: str | None = "test"
    val_fraction: float = 0.1
    synthetic: SyntheticDataConfig = field(default_factory=SyntheticDataConfig)
    input_size: int = 512
    min_scale: float = 0.7
    max_scale: float = 1.3
    flip: bool = True
    color_jitter: float = 0.3
    max_eval_side: int = 2048
    batch_size: int = 8
    workers: int = 2


@dataclass
class ModelConfig:
    name: str = "centernet"
    backbone: str = "resnet18"
    weights: str | None = None
    neck_channels: int = 128
    head_channels: int = 64
    size_head: bool = True
    head_convs: int = 2


@dataclass
class LossConfig:
    name: str = "mfl"
    target_map: str = "gaussian"
    mask: str = "peak"
    tau: float = 0.5
    gamma: float = 2.0
    beta: float = 4.0
    weight_power: float = 1.0
    alpha: float | None = None
    normalizer: str = "objects"
    negatives_inside_mask: bool = True
    box_spread: str = "centernet"
    spread_source: str = "auto"
    point_spread_k: int = 3
    point_spread_scale: float = 0.3
    min_sigma: float = 0.5
    max_sigma: float = 2.0
    heatmap_weight: float = 1.0
    offset_weight: float = 1.0
    size_weight: float = 0.1


@dataclass
class TrainConfig:
    epochs: int = 30
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    grad_clip: float = 10.0
    amp: bool = True
    seed: int = 0
    device: str = "auto"
    eval_every: int = 1


@dataclass
class DecodeConfig:
    threshold: float = 0.3
    peak_window: int = 3
    nms_threshold: float = 0.5
    max_detections: int = 10000
    calibrate: bool = True


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _coerce(value: Any, kind: Any, key: str) -> Any:
    """Convert ``value`` to the field type ``kind``; raise naming ``key`` when it cannot."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except MaskfocalError as error:
                errors.append(str(error))
        raise MaskfocalError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise MaskfocalError(f"{key}: expected true or false, got {value!r}")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise MaskfocalError(f"{key}: expected an integer, got {value!r}")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise MaskfocalError(f"{key}: expected a number, got {value!r}")
    if kind is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise MaskfocalError(f"{key}: expected a string, got {value!r}")
    raise MaskfocalError(f"{key}: unsupported type {kind}")


def _apply(target: Any, values: dict[str, Any], prefix: str) -> None:
    if not isinstance(values, dict):
        raise MaskfocalError(f"{prefix or 'config'}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(type(target))
    names = [f.name for f in dataclasses.fields(target)]
    for name, value in values.items():
        key = f"{prefix}{name}"
        if name not in names:
            raise MaskfocalError(f"unknown config key {key!r}; valid keys here: "
                                 f"{', '.join(prefix + n for n in names)}")
        current = getattr(target, name)
        if dataclasses.is_dataclass(current):
            _apply(current, value, f"{key}.")
            continue
        value = _coerce(value, hints[name], key)
        if key in CHOICES and value not in CHOICES[key]:
            raise MaskfocalError(f"{key}: {value!r} is not one of: {', '.join(CHOICES[key])}")
        setattr(target, name, value)


@dataclass(frozen=True)
class Range:
    """The valid values of a numeric key: finite, within ``[low, high]`` (``None``: no bound;
    ``open_low``/``open_high``: the bound itself excluded)."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def __contains__(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.open_low and value == self.low)):
            return False
        return self.high is None or not (value > self.high or
                                         (self.open_high and value == self.high))

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.open_low else '>='} {self.low:g}"
        return (f"in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}"
                f"{')' if self.open_high else ']'}")


POSITIVE = Range(0, open_low=True)
NON_NEGATIVE = Range(0)
AT_LEAST_ONE = Range(1)
FRACTION = Range(0, 1)
PROBABILITY = Range(0, 1, open_low=True, open_high=True)

RANGES: dict[str, Range] = {
    "data.synthetic.train_images": AT_LEAST_ONE,
    "data.synthetic.val_images": NON_NEGATIVE,
    "data.synthetic.test_images": NON_NEGATIVE,
    "data.synthetic.width": Range(32),
    "data.synthetic.height": Range(32),
    "data.synthetic.max_count": AT_LEAST_ONE,
    "data.synthetic.seed": NON_NEGATIVE,
    "data.val_fraction": Range(0, 1, open_high=True),
    "data.input_size": Range(64),
    "data.min_scale": POSITIVE,
    "data.max_scale": POSITIVE,
    "data.color_jitter": FRACTION,
    "data.max_eval_side": Range(64),
    "data.batch_size": AT_LEAST_ONE,
    "data.workers": NON_NEGATIVE,
    "model.neck_channels": AT_LEAST_ONE,
    "model.head_channels": AT_LEAST_ONE,
    "model.head_convs": AT_LEAST_ONE,
    "loss.tau": Range(0, 1, open_low=True),
    "loss.gamma": NON_NEGATIVE,
    "loss.beta": NON_NEGATIVE,
    "loss.weight_power": NON_NEGATIVE,
    "loss.alpha": PROBABILITY,
    "loss.point_spread_k": AT_LEAST_ONE,
    "loss.point_spread_scale": POSITIVE,
    "loss.min_sigma": POSITIVE,
    "loss.max_sigma": POSITIVE,
    "loss.heatmap_weight": NON_NEGATIVE,
    "loss.offset_weight": NON_NEGATIVE,
    "loss.size_weight": NON_NEGATIVE,
    "train.epochs": AT_LEAST_ONE,
    "train.lr": POSITIVE,
    "train.weight_decay": NON_NEGATIVE,
    "train.warmup_steps": NON_NEGATIVE,
    "train.grad_clip": NON_NEGATIVE,
    "train.seed": NON_NEGATIVE,
    "train.eval_every": AT_LEAST_ONE,
    "decode.threshold": PROBABILITY,
    "decode.peak_window": AT_LEAST_ONE,
    "decode.nms_threshold": FRACTION,
    "decode.max_detections": Range(10000),
}
"""Every numeric key's valid values, checked before any work starts (a test pins that every
numeric key has one)."""


def _validate(config: Config) -> None:
    for key, valid in RANGES.items():
        name = key.rsplit(".", 1)[1]
        node: Any = config
        for part in key.split(".")[:-1]:
            node = getattr(node, part)
        value = getattr(node, name)
        if value is not None and value not in valid:
            raise MaskfocalError(f"{key} must be {valid}, got {value!r}")
    checks = [
        (config.data.input_size % 32 == 0, "data.input_size must be a multiple of 32"),
        (config.data.min_scale <= config.data.max_scale,
         "need data.min_scale <= data.max_scale"),
        (config.loss.min_sigma <= config.loss.max_sigma, "need loss.min_sigma <= loss.max_sigma"),
        (config.decode.peak_window % 2 == 1, "decode.peak_window must be odd"),
        (config.data.format == "synthetic" or config.data.root is not None,
         f"data.root is required for data.format={config.data.format}"),
    ]
    for ok, message in checks:
        if not ok:
            raise MaskfocalError(message)


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["model.name=fcos", "train.epochs=5"]`` -> nested dict, values parsed as YAML."""
    nested: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise MaskfocalError(f"override {item!r} is not key=value (e.g. train.epochs=5)")
        key, text = item.split("=", 1)
        try:
            value = yaml.safe_load(text) if text != "" else None
        except yaml.YAMLError:
            value = text
        parts = key.strip().split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise MaskfocalError(f"override {item!r} conflicts with another override")
        node[parts[-1]] = value
    return nested


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict[str, Any] | None = None) -> Config:
    """Defaults, then ``base`` (e.g. a checkpoint's saved config), then the file, then overrides."""
    config = Config()
    if base:
        _apply(config, base, "")
    if path is not None:
        path = Path(path)
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise MaskfocalError(f"{path}: config file does not exist") from None
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            raise MaskfocalError(f"{path}: cannot read config ({error})") from None
        try:
            _apply(config, values, "")
        except MaskfocalError as error:
            raise MaskfocalError(f"{path}: {error}") from None
    _apply(config, parse_overrides(overrides or []), "")
    _validate(config)
    return config


def config_from_dict(values: dict[str, Any]) -> Config:
    """Rebuild a saved, resolved config (e.g. from a checkpoint)."""
    config = Config()
    _apply(config, values, "")
    _validate(config)
    return config
