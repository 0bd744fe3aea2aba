"""Models: backbones, necks, heads, detectors. A model returns raw outputs only (CenterNet);
torchvision's FCOS and RetinaNet keep their own interface (losses in training, boxes in eval).
Models take their own options; turning the app config into them is the families' work
(:mod:`maskfocal.families`)."""

from __future__ import annotations

from .backbones import BACKBONES, PRETRAINED, Backbone, build_classifier
from .centernet import CenterNet

__all__ = ["BACKBONES", "PRETRAINED", "Backbone", "CenterNet", "build_classifier"]
