"""Models: backbones, necks, heads, detectors. A model returns raw outputs only."""

from __future__ import annotations

from maskfocal.config import ModelConfig

from .backbones import Backbone, build_classifier
from .centernet import CenterNet

__all__ = ["Backbone", "CenterNet", "build_classifier", "build_model"]


def build_model(config: ModelConfig) -> CenterNet:
    """The model a config names."""
    if config.name == "centernet":
        return CenterNet(backbone_name=config.backbone, weights=config.weights,
                         neck_channels=config.neck_channels, head_channels=config.head_channels,
                         size_head=config.size_head)
    from maskfocal.errors import MaskfocalError

    raise MaskfocalError(f"model.name={config.name} is not available yet (centernet is)")
