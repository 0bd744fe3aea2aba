"""Models: backbones, necks, heads, detectors. A model returns raw outputs only (CenterNet);
torchvision's FCOS and RetinaNet keep their own interface (losses in training, boxes in eval)."""

from __future__ import annotations

import dataclasses

from torch import nn

from maskfocal.config import Config

from .backbones import Backbone, build_classifier
from .centernet import CenterNet

__all__ = ["Backbone", "CenterNet", "build_classifier", "build_model"]


def build_model(config: Config, *, pretrained: bool = True) -> nn.Module:
    """The detector a config names, with the classification loss it asks for.

    ``pretrained=False`` skips ``model.weights`` (for weights about to be replaced by a
    checkpoint's, which must not need a download or the original file).
    """
    model = config.model
    weights = model.weights if pretrained else None
    if model.name == "centernet":
        return CenterNet(backbone_name=model.backbone, weights=weights,
                         neck_channels=model.neck_channels, head_channels=model.head_channels,
                         size_head=model.size_head)
    from maskfocal.engine.tasks import spread_rule
    from maskfocal.losses import heatmap_loss_config

    from .detectors import build_fcos, build_retinanet

    mfl = None
    if config.loss.name == "mfl":  # the detector's own assignment is the positive mask
        mfl = dataclasses.replace(heatmap_loss_config(config.loss), mask="assigned")
    build = build_fcos if model.name == "fcos" else build_retinanet
    return build(Backbone(model.backbone, weights), channels=model.neck_channels,
                 head_convs=model.head_convs, mfl=mfl,
                 binary=config.loss.target_map == "binary", spread=spread_rule(config),
                 nms_threshold=config.decode.nms_threshold)
