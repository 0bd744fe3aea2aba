"""Models: backbones, necks, heads, detectors. A model returns raw outputs only (CenterNet);
torchvision's FCOS and RetinaNet keep their own interface (losses in training, boxes in eval)."""

from __future__ import annotations

import dataclasses

from torch import nn

from maskfocal.config import Config

from .backbones import Backbone, build_classifier
from .centernet import CenterNet

__all__ = ["Backbone", "CenterNet", "build_classifier", "build_model"]


def build_model(config: Config) -> nn.Module:
    """The detector a config names, with the classification loss it asks for."""
    model = config.model
    if model.name == "centernet":
        return CenterNet(backbone_name=model.backbone, weights=model.weights,
                         neck_channels=model.neck_channels, head_channels=model.head_channels,
                         size_head=model.size_head)
    from maskfocal.engine.tasks import spread_rule
    from maskfocal.losses.mask_focal import MaskFocalLossConfig

    from .detectors import build_fcos, build_retinanet

    mfl = None
    if config.loss.name == "mfl":  # the detector's own assignment is the positive mask
        options = {f.name: getattr(config.loss, f.name)
                   for f in dataclasses.fields(MaskFocalLossConfig)}
        mfl = MaskFocalLossConfig(**{**options, "mask": "assigned"})
    build = build_fcos if model.name == "fcos" else build_retinanet
    return build(Backbone(model.backbone, model.weights), channels=model.neck_channels,
                 head_convs=model.head_convs, mfl=mfl,
                 binary=config.loss.target_map == "binary", spread=spread_rule(config),
                 nms_threshold=config.decode.nms_threshold)
