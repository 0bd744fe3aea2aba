"""FCOS and RetinaNet for heads: torchvision's own implementations, with MFL as an option.

``torchvision.models.detection.FCOS`` and ``RetinaNet`` are used as they are; the only changes:

- the backbone is any of ours with a torchvision FPN on c2..c5 plus a max-pooled P6 (strides 4 to
  64, since heads are small), narrower than the COCO default (``neck_channels``) and with
  ``head_convs`` convolutions per head branch instead of four, to fit CPU budgets;
- anchors sized for heads (FCOS: one per location, of the stride's size, which sets FCOS's
  per-level size ranges; RetinaNet: 2 x stride times 2^(0, 1/3, 2/3), aspect ratio 1);
- no resizing inside the model (the data pipeline decides sizes), and limits that never cap
  dense scenes (``detections_per_img`` and ``topk_candidates`` of at least 10,000);
- with ``loss.name=mfl`` the classification loss becomes Mask Focal Loss over the detector's own
  assignment (the ``assigned`` mask); box regression and centerness losses stay as they are.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from torch import Tensor, nn
from torchvision.models.detection import FCOS, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.fcos import FCOSHead
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from maskfocal.decode import SCORE_FLOOR
from maskfocal.losses.detector import detector_classification_loss
from maskfocal.losses.mask_focal import MaskFocalLossConfig
from maskfocal.targets.anchors import level_sizes
from maskfocal.targets.centernet import SpreadRule

from .backbones import Backbone

PYRAMID_STRIDES = (4, 8, 16, 32, 64)
MIN_DETECTIONS = 10000


class PyramidBackbone(nn.Module):
    """Backbone + torchvision FPN with a max-pooled extra level: strides 4, 8, 16, 32, 64."""

    def __init__(self, backbone: Backbone, channels: int) -> None:
        super().__init__()
        self.body = backbone
        self.fpn = FeaturePyramidNetwork(backbone.out_channels, channels,
                                         extra_blocks=LastLevelMaxPool())
        self.out_channels = channels

    def forward(self, images: Tensor) -> OrderedDict[str, Tensor]:
        return self.fpn(self.body(images))


class FixedSizeTransform(GeneralizedRCNNTransform):
    """torchvision's detection transform (normalise with the backbone's ``mean`` and ``std``,
    batch, pad to 32) without the resize."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__(min_size=1, max_size=1 << 30, image_mean=list(mean),
                         image_std=list(std), size_divisible=32)

    def resize(self, image: Tensor, target=None):
        return image, target


@dataclass(frozen=True)
class AnchorMFL:
    """MFL as a box head's classification loss, over the head's own anchor assignment
    (:func:`~maskfocal.losses.detector.detector_classification_loss`)."""

    options: MaskFocalLossConfig
    size_to_stride: dict[float, int]
    spread: SpreadRule = field(default_factory=SpreadRule)
    binary: bool = False

    def __call__(self, targets, head_outputs, anchors, matched_idxs, *,
                 per_image: bool) -> Tensor:
        return detector_classification_loss(
            head_outputs["cls_logits"], targets, anchors, matched_idxs, self.options,
            size_to_stride=self.size_to_stride, rule=self.spread, per_image=per_image,
            binary=self.binary)


class HeadFCOSHead(FCOSHead):
    """FCOSHead whose classification loss may be MFL (``classification_loss``; None: the
    stock sigmoid focal loss); regression and centerness unchanged."""

    def __init__(self, in_channels: int, num_anchors: int, num_classes: int,
                 num_convs: int = 4, *, classification_loss: AnchorMFL | None = None) -> None:
        super().__init__(in_channels, num_anchors, num_classes, num_convs=num_convs)
        self.classification_loss = classification_loss

    def compute_loss(self, targets, head_outputs, anchors, matched_idxs):
        losses = super().compute_loss(targets, head_outputs, anchors, matched_idxs)
        if self.classification_loss is not None:
            losses["classification"] = self.classification_loss(
                targets, head_outputs, anchors, matched_idxs, per_image=False)
        return losses


class HeadRetinaNetHead(RetinaNetHead):
    """RetinaNetHead whose classification loss may be MFL (``classification_loss``; None: the
    stock sigmoid focal loss); box regression unchanged."""

    def __init__(self, in_channels: int, num_anchors: int, num_classes: int, *,
                 classification_loss: AnchorMFL | None = None) -> None:
        super().__init__(in_channels, num_anchors, num_classes)
        self.classification_loss = classification_loss

    def compute_loss(self, targets, head_outputs, anchors, matched_idxs):
        if self.classification_loss is None:
            return super().compute_loss(targets, head_outputs, anchors, matched_idxs)
        return {"classification": self.classification_loss(
                    targets, head_outputs, anchors, matched_idxs, per_image=True),
                "bbox_regression": self.regression_head.compute_loss(
                    targets, head_outputs, anchors, matched_idxs)}


def _anchor_mfl(mfl: MaskFocalLossConfig | None, binary: bool, spread: SpreadRule | None,
                sizes) -> AnchorMFL | None:
    if mfl is None:
        return None
    return AnchorMFL(mfl, level_sizes(sizes, PYRAMID_STRIDES), spread or SpreadRule(), binary)


def _trim_convs(sequence: nn.Sequential, convs: int) -> nn.Sequential:
    """Keep the first ``convs`` conv blocks of a RetinaNet head branch (4 in torchvision)."""
    return nn.Sequential(*list(sequence.children())[:convs])


def build_fcos(backbone: Backbone, *, channels: int = 128, head_convs: int = 2,
               mfl: MaskFocalLossConfig | None = None, binary: bool = False,
               spread: SpreadRule | None = None, score_floor: float = SCORE_FLOOR,
               nms_threshold: float = 0.5) -> FCOS:
    """torchvision FCOS for one class (head) on strides 4 to 64."""
    sizes = tuple((float(stride),) for stride in PYRAMID_STRIDES)
    anchors = AnchorGenerator(sizes, ((1.0,),) * len(sizes))
    head = HeadFCOSHead(channels, 1, 1, num_convs=head_convs,
                        classification_loss=_anchor_mfl(mfl, binary, spread, sizes))
    model = FCOS(PyramidBackbone(backbone, channels), num_classes=1, anchor_generator=anchors,
                 head=head, score_thresh=score_floor, nms_thresh=nms_threshold,
                 detections_per_img=MIN_DETECTIONS, topk_candidates=MIN_DETECTIONS)
    model.transform = FixedSizeTransform(backbone.mean, backbone.std)
    return model


def build_retinanet(backbone: Backbone, *, channels: int = 128, head_convs: int = 2,
                    mfl: MaskFocalLossConfig | None = None, binary: bool = False,
                    spread: SpreadRule | None = None, score_floor: float = SCORE_FLOOR,
                    nms_threshold: float = 0.5) -> RetinaNet:
    """torchvision RetinaNet for one class (head) on strides 4 to 64, three scales per level."""
    sizes = tuple(tuple(2.0 * stride * 2 ** (k / 3) for k in range(3))
                  for stride in PYRAMID_STRIDES)
    anchors = AnchorGenerator(sizes, ((1.0,),) * len(sizes))
    head = HeadRetinaNetHead(channels, anchors.num_anchors_per_location()[0], 1,
                             classification_loss=_anchor_mfl(mfl, binary, spread, sizes))
    head.classification_head.conv = _trim_convs(head.classification_head.conv, head_convs)
    head.regression_head.conv = _trim_convs(head.regression_head.conv, head_convs)
    model = RetinaNet(PyramidBackbone(backbone, channels), num_classes=1,
                      anchor_generator=anchors, head=head, score_thresh=score_floor,
                      nms_thresh=nms_threshold, detections_per_img=MIN_DETECTIONS,
                      topk_candidates=MIN_DETECTIONS)
    model.transform = FixedSizeTransform(backbone.mean, backbone.std)
    return model
