"""One configuration path: typed dataclasses, one commented YAML of defaults, key=value overrides.

``configs/base.yaml`` documents every key; a run's file overrides some of them, and
``section.key=value`` arguments on the command line override those. Unknown keys and invalid
values are errors that list what is valid. The resolved config is saved next to every
checkpoint (``config.yaml``) and inside it.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from maskfocal.data.synthetic import SyntheticConfig
from maskfocal.data.training import AugmentOptions, check_augment_options
from maskfocal.decode.options import DecodeOptions
from maskfocal.errors import MaskfocalError
from maskfocal.inference.options import InferenceOptions
from maskfocal.losses.options import LossOptions
from maskfocal.models.options import ModelOptions
from maskfocal.options import (
    AT_LEAST_ONE,
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    PROBABILITY,
    Range,
    coerce,
)

BUDGET_CLOCKS = ("wall", "process")
"""``train.budget_clock``: what ``train.max_minutes`` counts (the engine's clocks of these
names; a test pins them together)."""


@functools.cache
def choices() -> dict[str, tuple]:
    """The valid values of each key with a vocabulary, taken from the registries they
    describe (a test pins them together)."""
    from maskfocal.data.readers import READERS
    from maskfocal.data.synthetic import COUNT_DISTRIBUTIONS
    from maskfocal.device import DEVICES
    from maskfocal.families import FAMILIES, LOSS_NAMES
    from maskfocal.losses.detector import TARGET_MAPS
    from maskfocal.losses.mask_focal import NORMALIZERS
    from maskfocal.models import BACKBONES, PRETRAINED
    from maskfocal.targets.centernet import SPREAD_SOURCES
    from maskfocal.targets.heatmaps import HEATMAP_MASKS
    from maskfocal.targets.spreads import BOX_RULES

    return {
        "model.name": tuple(FAMILIES),
        "model.backbone": BACKBONES,
        "model.pretrained": PRETRAINED,
        "loss.name": LOSS_NAMES,
        "loss.mask": HEATMAP_MASKS,
        "loss.target_map": TARGET_MAPS,
        "loss.normalizer": NORMALIZERS,
        "loss.box_spread": BOX_RULES,
        "loss.spread_source": SPREAD_SOURCES,
        "data.format": ("synthetic", *READERS),
        "data.synthetic.count_distribution": COUNT_DISTRIBUTIONS,
        "train.device": DEVICES,
        "train.budget_clock": BUDGET_CLOCKS,
    }


@dataclass
class SyntheticDataConfig(SyntheticConfig):
    """The generator's own options (:class:`~maskfocal.data.synthetic.SyntheticConfig`, declared
    there) and the splits drawn from it."""

    train_images: int = 400
    val_images: int = 60
    test_images: int = 60
    seed: int = 0
    cache: bool = False


@dataclass
class DataConfig(AugmentOptions):
    """Where images come from, and the training augmentation
    (:class:`~maskfocal.data.training.AugmentOptions`, declared there)."""

    format: str = "synthetic"
    root: str | None = None
    train_split: str | None = "train"
    val_split: str | None = "val"
    test_split: str | None = "test"
    val_fraction: float = 0.1
    extra_train: list[str] = field(default_factory=list)  # FORMAT:ROOT each
    negative_textures: int = 0  # head-free texture images added to train (data/negatives.py)
    read_scale: float = 1.0  # images and heads read from files resized by this (experiments)
    synthetic: SyntheticDataConfig = field(default_factory=SyntheticDataConfig)
    max_eval_side: int = InferenceOptions.max_eval_side
    batch_size: int = 8
    workers: int = 2


@dataclass
class ModelConfig(ModelOptions):
    """The model (:class:`~maskfocal.models.options.ModelOptions`, declared there) and the
    weights a training run starts from."""

    init_from: str | None = None


@dataclass
class LossConfig(LossOptions):
    """The loss (:class:`~maskfocal.losses.options.LossOptions`, declared there: which one,
    MFL's options, the Gaussian spreads and the loss weights)."""


@dataclass
class TrainConfig:
    epochs: int = 30
    lr: float = 1e-3
    backbone_lr: float = 1.0  # the backbone's learning rate, as a multiple of lr
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    grad_clip: float = 10.0
    amp: bool = True
    seed: int = 0
    device: str = "auto"
    eval_every: int = 1
    validations: int = 10  # with max_minutes: validate about this many times over the budget
    max_minutes: float | None = None
    budget_clock: str = "wall"  # what max_minutes counts: wall, or process (CPU time got)
    channels_last: bool = False
    cpu_bf16: bool = False  # bfloat16 autocast for training steps on the CPU (train.amp: CUDA)
    ema_decay: float | None = None  # e.g. 0.998: validate, test and release an EMA of weights


@dataclass
class DecodeConfig(DecodeOptions):
    """Decoding (:class:`~maskfocal.decode.options.DecodeOptions`, declared there) and the
    inference options a model is saved with (:class:`~maskfocal.inference.InferenceOptions`,
    whose defaults these are): the threshold training calibrates, the test-time scale."""

    threshold: float = InferenceOptions.threshold
    calibrate: bool = True
    input_scale: float = InferenceOptions.input_scale
    scale_target: float | None = InferenceOptions.scale_target  # count --scale auto: px aimed at


@dataclass
class PretrainConfig:
    """A first stage inside the same budget: this config with ``overrides`` (e.g. the
    synthetic generator as data) trained for ``fraction`` of ``train.max_minutes`` into
    ``OUT/pretrain``; its best weights then start the main stage, which gets the rest."""

    fraction: float | None = None
    overrides: list[str] = field(default_factory=list)  # KEY=VALUE each


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return _as_dict(self)

    def inference_options(self) -> InferenceOptions:
        """What a model trained with this config is saved with for counting (the tiling at
        its defaults: no config stores it)."""
        return InferenceOptions.from_saved(self.to_dict())

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _as_dict(node: Any) -> dict[str, Any]:
    """``dataclasses.asdict``, each section's own keys first and the keys it inherits from a
    lower layer's option type after them (``loss.name`` before MFL's options)."""
    own = list(vars(type(node)).get("__annotations__", {}))
    names = [f.name for f in dataclasses.fields(node)]
    ordered = [n for n in own if n in names] + [n for n in names if n not in own]
    return {name: _as_dict(value) if dataclasses.is_dataclass(value) else
            copy.deepcopy(value) for name in ordered for value in [getattr(node, name)]}


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
        value = coerce(value, hints[name], key)
        valid = choices().get(key)
        if valid is not None and value not in valid:
            raise MaskfocalError(f"{key}: {value!r} is not one of: {', '.join(valid)}")
        setattr(target, name, value)


def _section_ranges(section: str, record: type) -> dict[str, Range]:
    """A layer record's ``RANGES``, keyed as the config's keys (``model.head_convs``)."""
    return {f"{section}.{name}": valid for name, valid in record.RANGES.items()}


RANGES: dict[str, Range] = {
    **_section_ranges("model", ModelOptions),
    **_section_ranges("loss", LossOptions),
    **_section_ranges("decode", DecodeOptions),
    "data.synthetic.train_images": AT_LEAST_ONE,
    "data.synthetic.val_images": NON_NEGATIVE,
    "data.synthetic.test_images": NON_NEGATIVE,
    "data.synthetic.width": Range(32),
    "data.synthetic.height": Range(32),
    "data.synthetic.min_count": NON_NEGATIVE,
    "data.synthetic.max_count": AT_LEAST_ONE,
    "data.synthetic.empty_fraction": FRACTION,
    "data.synthetic.max_distractors": NON_NEGATIVE,
    "data.synthetic.min_visible": FRACTION,
    "data.synthetic.min_head_radius": NON_NEGATIVE,
    "data.synthetic.noise": NON_NEGATIVE,
    "data.synthetic.max_blur": NON_NEGATIVE,
    "data.synthetic.seed": NON_NEGATIVE,
    "data.val_fraction": Range(0, 1, open_high=True),
    "data.input_size": Range(64),
    "data.min_scale": POSITIVE,
    "data.max_scale": POSITIVE,
    "data.color_jitter": FRACTION,
    "data.empty_crops": FRACTION,
    "data.hard_negative_crops": Range(0, 1, open_high=True),
    "data.negative_textures": NON_NEGATIVE,
    "data.read_scale": Range(0, 1, open_low=True),
    "data.max_eval_side": Range(64),
    "data.batch_size": AT_LEAST_ONE,
    "data.workers": NON_NEGATIVE,
    "train.epochs": AT_LEAST_ONE,
    "train.lr": POSITIVE,
    "train.backbone_lr": NON_NEGATIVE,
    "train.weight_decay": NON_NEGATIVE,
    "train.warmup_steps": NON_NEGATIVE,
    "train.grad_clip": NON_NEGATIVE,
    "train.seed": NON_NEGATIVE,
    "train.eval_every": AT_LEAST_ONE,
    "train.validations": AT_LEAST_ONE,
    "train.max_minutes": POSITIVE,
    "train.ema_decay": Range(0, 1, open_high=True),
    "pretrain.fraction": Range(0, 1, open_high=True),
    "decode.threshold": PROBABILITY,
    "decode.input_scale": Range(0.25, 4),
    "decode.scale_target": POSITIVE,
}
"""Every numeric key's valid values, checked before any work starts (a test pins that every
numeric key has one)."""


def _validate(config: Config) -> None:
    for key, valid in RANGES.items():
        value = _value(config, key)
        if value is not None and value not in valid:
            raise MaskfocalError(f"{key} must be {valid}, got {value!r}")
    checks = [
        (config.data.input_size % 32 == 0, "data.input_size must be a multiple of 32"),
        (config.data.synthetic.min_count <= config.data.synthetic.max_count,
         "need data.synthetic.min_count <= data.synthetic.max_count"),
        (config.data.min_scale <= config.data.max_scale,
         "need data.min_scale <= data.max_scale"),
        (config.loss.min_sigma <= config.loss.max_sigma, "need loss.min_sigma <= loss.max_sigma"),
        (config.decode.peak_window % 2 == 1, "decode.peak_window must be odd"),
        (config.model.output_stride in (2, 4), "model.output_stride must be 2 or 4"),
        (config.data.format == "synthetic" or config.data.root is not None,
         f"data.root is required for data.format={config.data.format}"),
        (not config.pretrain.fraction or config.train.max_minutes is not None,
         "pretrain.fraction is a share of train.max_minutes: set train.max_minutes"),
        (not (config.pretrain.fraction and config.model.init_from),
         "pretrain.fraction and model.init_from both choose the starting weights: give one"),
        (config.data.read_scale == 1 or config.data.format != "synthetic",
         "data.read_scale resizes images read from files; synthetic scenes have "
         "data.synthetic.width and height"),
        (not config.data.hard_negative_crops or config.data.hard_negatives,
         "data.hard_negative_crops needs data.hard_negatives: a file of `maskfocal mine`"),
        (not (config.model.pretrained != "none" and config.model.weights),
         "model.pretrained and model.weights both choose the backbone's weights: give one"),
    ]
    for ok, message in checks:
        if not ok:
            raise MaskfocalError(message)
    check_augment_options(config.data, config.data.workers)
    if config.model.pretrained == "imagenet":
        from maskfocal.models.backbones import check_imagenet

        check_imagenet(config.model.backbone)
    from maskfocal.data.readers import extra_source

    for source in config.data.extra_train:
        extra_source(source)
    for override in config.pretrain.overrides:
        if override.split("=", 1)[0].strip().split(".")[0] == "pretrain":
            raise MaskfocalError(f"pretrain.overrides: {override!r} cannot set pretrain itself")
    if config.pretrain.fraction:
        parse_overrides(config.pretrain.overrides)  # a malformed one: an error now


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
    _resolve_auto(config)
    if not base:  # a resumed run's saved config was checked when the run began
        _check_family_keys(config)
    return config


def _value(config: Config, key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        node = getattr(node, part)
    return node


def _resolve_auto(config: Config) -> None:
    """``loss.name=auto`` -> the detector family's ``default_loss``, so that a loaded (and a
    saved) config names the loss it trains with."""
    from maskfocal.families import family_for

    if config.loss.name == "auto":
        config.loss.name = family_for(config).default_loss


def _check_family_keys(config: Config) -> None:
    """A key that the chosen detector ignores, set to anything but its default, is an error:
    it would be silently dead (e.g. ``loss.mask`` for FCOS)."""
    from maskfocal.families import family_for

    family = family_for(config)
    family.validate()
    defaults = Config()
    for key, why in family.ignored_keys().items():
        value = _value(config, key)
        if value != _value(defaults, key):
            raise MaskfocalError(f"{key}={value!r} has no effect with model.name="
                                 f"{config.model.name} and loss.name={config.loss.name}: "
                                 f"{why}; leave it at its default "
                                 f"({_value(defaults, key)!r})")


def config_from_dict(values: dict[str, Any]) -> Config:
    """Rebuild a saved, resolved config (e.g. from a checkpoint)."""
    config = Config()
    _apply(config, values, "")
    _validate(config)
    _resolve_auto(config)
    return config


def config_from_checkpoint(state: dict[str, Any], path: str | Path) -> Config:
    """The :class:`Config` a checkpoint was trained with; a config this version cannot read is
    explained with both versions."""
    from maskfocal import __version__

    try:
        return config_from_dict(state["config"])
    except MaskfocalError as error:
        raise MaskfocalError(f"{path}: its config (maskfocal "
                             f"{state.get('maskfocal_version', 'unknown')}) does not fit this "
                             f"maskfocal {__version__}: {error}") from None
