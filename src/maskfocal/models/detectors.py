"""FCOS, RetinaNet and Faster R-CNN for heads: torchvision's own implementations, with MFL as
an option.

``torchvision.models.detection.FCOS``, ``RetinaNet`` and ``FasterRCNN`` are used as they are;
the only changes:

- the backbone is any of ours with a torchvision FPN on c2..c5 plus a max-pooled P6 (strides 4 to
  64, since heads are small), narrower than the COCO default (``neck_channels``) and with
  ``head_convs`` convolutions per head branch instead of four, to fit CPU budgets;
- anchors sized for heads (FCOS: one per location, of the stride's size, which sets FCOS's
  per-level size ranges; RetinaNet: 2 x stride times 2^(0, 1/3, 2/3), aspect ratio 1);
- no resizing inside the model (the data pipeline decides sizes), and limits that never cap
  dense scenes (``detections_per_img`` and ``topk_candidates`` of at least 10,000);
- with ``loss.name=mfl`` the classification loss becomes Mask Focal Loss over the detector's own
  assignment (the ``assigned`` mask); box regression and centerness losses stay as they are.
  In Faster R-CNN MFL replaces the RPN's objectness loss; the RoI head keeps its own losses.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn
from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
from torchvision.models.detection._utils import BoxCoder, BoxLinearCoder
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.fcos import FCOSHead
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from maskfocal.decode import SCORE_FLOOR
from maskfocal.losses.detector import detector_classification_loss, rpn_objectness_loss
from maskfocal.losses.mask_focal import MaskFocalLossConfig
from maskfocal.targets.anchors import level_sizes
from maskfocal.targets.centernet import SpreadRule

from .backbones import Backbone

PYRAMID_STRIDES = (4, 8, 16, 32, 64)
MIN_DETECTIONS = 10000
# Faster R-CNN's ceilings: proposals kept per level before the RPN's NMS, and after it (so
# the most heads one image can have); ShanghaiTech A's densest image has 3,139 heads, the
# dense synthetic scenes up to 1,500. Training keeps fewer: the RoI head samples 512 anyway.
RPN_PRE_NMS = {"training": 4000, "testing": 8000}
RPN_POST_NMS = {"training": 2000, "testing": 5000}


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


class DetectionContract:
    """torchvision's detector called as every maskfocal detector is: ``model(images,
    targets)`` in training returns the loss dict under maskfocal's names, ``model(images)``
    in eval its detections; ``images`` a (B, 3, H, W) batch (or a list), ``targets`` one dict
    per image with ``boxes`` (n, 4) and, for MFL, ``real_boxes`` (annotated, or pseudo boxes
    around points; ``points`` is not read). The class labels torchvision wants are filled in
    where a target has none (one class: heads)."""

    loss_names: ClassVar[dict[str, str]]
    """torchvision's loss keys -> maskfocal's (``DetectorFamily.loss_keys``)."""
    label: ClassVar[int] = 0

    def forward(self, images, targets=None):
        if isinstance(images, Tensor):
            images = list(images)
        if targets is not None:  # labels filled in; points are CenterNet's, not read here
            targets = [{**{k: v for k, v in t.items() if k != "points"},
                        "labels": t.get("labels", torch.full(
                            (len(t["boxes"]),), self.label, dtype=torch.int64,
                            device=t["boxes"].device))} for t in targets]
        outputs = super().forward(images, targets)
        if self.training and targets is not None:
            return {self.loss_names[key]: value for key, value in outputs.items()}
        return outputs


class HeadFCOS(DetectionContract, FCOS):
    loss_names: ClassVar[dict[str, str]] = {
        "classification": "loss_classification", "bbox_regression": "loss_box",
        "bbox_ctrness": "loss_centerness"}


class HeadRetinaNet(DetectionContract, RetinaNet):
    loss_names: ClassVar[dict[str, str]] = {
        "classification": "loss_classification", "bbox_regression": "loss_box"}


class HeadFasterRCNN(DetectionContract, FasterRCNN):
    loss_names: ClassVar[dict[str, str]] = {
        "loss_classifier": "loss_classifier", "loss_box_reg": "loss_box",
        "loss_objectness": "loss_objectness", "loss_rpn_box_reg": "loss_rpn_box"}
    label = 1  # Faster R-CNN's class 0 is the background


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


class BoxDecoder(nn.Module):
    """What runs after a box detector's heads, without the network: its anchors, box coder,
    score floor and NMS, and torchvision's own ``postprocess_detections`` of ``detector``
    (FCOS or RetinaNet), for head outputs computed elsewhere (an ONNX export). No weights."""

    def __init__(self, detector: type, anchor_generator: AnchorGenerator, box_coder, *,
                 score_thresh: float, nms_thresh: float) -> None:
        super().__init__()
        self.detector = detector
        self.anchor_generator = anchor_generator
        self.box_coder = box_coder
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = MIN_DETECTIONS
        self.topk_candidates = MIN_DETECTIONS

    def postprocess_detections(self, head_outputs, anchors, image_shapes):
        return self.detector.postprocess_detections(self, head_outputs, anchors, image_shapes)


def _fcos_anchors() -> AnchorGenerator:
    """One anchor per location, of the stride's size (which sets FCOS's size ranges)."""
    sizes = tuple((float(stride),) for stride in PYRAMID_STRIDES)
    return AnchorGenerator(sizes, ((1.0,),) * len(sizes))


def _retinanet_anchors() -> AnchorGenerator:
    """2 x stride times 2^(0, 1/3, 2/3) per location, aspect ratio 1."""
    sizes = tuple(tuple(2.0 * stride * 2 ** (k / 3) for k in range(3))
                  for stride in PYRAMID_STRIDES)
    return AnchorGenerator(sizes, ((1.0,),) * len(sizes))


def fcos_decoder(*, score_floor: float = SCORE_FLOOR, nms_threshold: float = 0.5
                 ) -> BoxDecoder:
    """:func:`build_fcos`'s post-processing alone (:class:`BoxDecoder`)."""
    return BoxDecoder(FCOS, _fcos_anchors(), BoxLinearCoder(normalize_by_size=True),
                      score_thresh=score_floor, nms_thresh=nms_threshold)


def retinanet_decoder(*, score_floor: float = SCORE_FLOOR, nms_threshold: float = 0.5
                      ) -> BoxDecoder:
    """:func:`build_retinanet`'s post-processing alone (:class:`BoxDecoder`)."""
    return BoxDecoder(RetinaNet, _retinanet_anchors(), BoxCoder(weights=(1.0, 1.0, 1.0, 1.0)),
                      score_thresh=score_floor, nms_thresh=nms_threshold)


def build_fcos(backbone: Backbone, *, channels: int = 128, head_convs: int = 2,
               mfl: MaskFocalLossConfig | None = None, binary: bool = False,
               spread: SpreadRule | None = None, score_floor: float = SCORE_FLOOR,
               nms_threshold: float = 0.5) -> FCOS:
    """torchvision FCOS for one class (head) on strides 4 to 64."""
    anchors = _fcos_anchors()
    sizes = anchors.sizes
    head = HeadFCOSHead(channels, 1, 1, num_convs=head_convs,
                        classification_loss=_anchor_mfl(mfl, binary, spread, sizes))
    model = HeadFCOS(PyramidBackbone(backbone, channels), num_classes=1,
                     anchor_generator=anchors, head=head, score_thresh=score_floor,
                     nms_thresh=nms_threshold, detections_per_img=MIN_DETECTIONS,
                     topk_candidates=MIN_DETECTIONS)
    model.transform = FixedSizeTransform(backbone.mean, backbone.std)
    return model


def build_retinanet(backbone: Backbone, *, channels: int = 128, head_convs: int = 2,
                    mfl: MaskFocalLossConfig | None = None, binary: bool = False,
                    spread: SpreadRule | None = None, score_floor: float = SCORE_FLOOR,
                    nms_threshold: float = 0.5) -> RetinaNet:
    """torchvision RetinaNet for one class (head) on strides 4 to 64, three scales per level."""
    anchors = _retinanet_anchors()
    sizes = anchors.sizes
    head = HeadRetinaNetHead(channels, anchors.num_anchors_per_location()[0], 1,
                             classification_loss=_anchor_mfl(mfl, binary, spread, sizes))
    head.classification_head.conv = _trim_convs(head.classification_head.conv, head_convs)
    head.regression_head.conv = _trim_convs(head.regression_head.conv, head_convs)
    model = HeadRetinaNet(PyramidBackbone(backbone, channels), num_classes=1,
                          anchor_generator=anchors, head=head, score_thresh=score_floor,
                          nms_thresh=nms_threshold, detections_per_img=MIN_DETECTIONS,
                          topk_candidates=MIN_DETECTIONS)
    model.transform = FixedSizeTransform(backbone.mean, backbone.std)
    return model


class HeadRPN(RegionProposalNetwork):
    """torchvision's RPN whose objectness loss may be MFL (``objectness_loss``; None: the
    stock binary cross-entropy over 256 sampled anchors per image); its box loss unchanged.

    torchvision's ``compute_loss`` is not given the anchors and targets MFL needs (Y at each
    anchor centre), so :meth:`assign_targets_to_anchors`, which ``forward`` calls just before,
    keeps them for it."""

    def __init__(self, *args, objectness_loss: AnchorMFL | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.objectness_loss = objectness_loss
        self._assigned = None

    def assign_targets_to_anchors(self, anchors, targets):
        labels, matched = super().assign_targets_to_anchors(anchors, targets)
        self._assigned = (anchors, targets, labels)
        return labels, matched

    def compute_loss(self, objectness, pred_bbox_deltas, labels, regression_targets):
        objectness_loss, box_loss = super().compute_loss(objectness, pred_bbox_deltas, labels,
                                                         regression_targets)
        if self.objectness_loss is not None:
            anchors, targets, _ = self._assigned
            mfl = self.objectness_loss
            objectness_loss = rpn_objectness_loss(
                objectness, targets, anchors, labels, mfl.options,
                size_to_stride=mfl.size_to_stride, rule=mfl.spread, binary=mfl.binary)
        self._assigned = None
        return objectness_loss, box_loss


def build_faster_rcnn(backbone: Backbone, *, channels: int = 128, head_convs: int = 2,
                      mfl: MaskFocalLossConfig | None = None, binary: bool = False,
                      spread: SpreadRule | None = None, score_floor: float = SCORE_FLOOR,
                      nms_threshold: float = 0.5, representation: int = 256) -> FasterRCNN:
    """torchvision Faster R-CNN for one class (head; label 1, 0 is background) on strides 4 to
    64: two square anchors per location (stride x 2 and x 2.8), RoIAlign 7x7 on strides 4 to
    32, a two-layer MLP head of ``representation`` features. ``head_convs`` is unused (the
    RoI head has no conv branches); it is accepted so every box builder takes the same keys."""
    sizes = tuple((2.0 * stride, 2.0 * stride * 2 ** 0.5) for stride in PYRAMID_STRIDES)
    anchors = AnchorGenerator(sizes, ((1.0,),) * len(sizes))
    pyramid = PyramidBackbone(backbone, channels)
    model = HeadFasterRCNN(
        pyramid, num_classes=None, rpn_anchor_generator=anchors,
        rpn_head=RPNHead(channels, anchors.num_anchors_per_location()[0]),
        box_roi_pool=MultiScaleRoIAlign(["c2", "c3", "c4", "c5"], output_size=7, sampling_ratio=2),
        box_head=TwoMLPHead(channels * 7 * 7, representation),
        box_predictor=FastRCNNPredictor(representation, 2),
        rpn_pre_nms_top_n_train=RPN_PRE_NMS["training"],
        rpn_pre_nms_top_n_test=RPN_PRE_NMS["testing"],
        rpn_post_nms_top_n_train=RPN_POST_NMS["training"],
        rpn_post_nms_top_n_test=RPN_POST_NMS["testing"],
        box_score_thresh=score_floor, box_nms_thresh=nms_threshold,
        box_detections_per_img=MIN_DETECTIONS)
    rpn = model.rpn
    model.rpn = HeadRPN(  # the same RPN, torchvision's defaults and all, with MFL possible
        rpn.anchor_generator, rpn.head, rpn.proposal_matcher.high_threshold,
        rpn.proposal_matcher.low_threshold, rpn.fg_bg_sampler.batch_size_per_image,
        rpn.fg_bg_sampler.positive_fraction, dict(rpn._pre_nms_top_n),
        dict(rpn._post_nms_top_n), rpn.nms_thresh, score_thresh=rpn.score_thresh,
        objectness_loss=_anchor_mfl(mfl, binary, spread, sizes))
    if mfl is not None:  # a focal loss over every anchor starts from the prior p = 0.01, as
        # torchvision's RetinaNet and FCOS classification heads do (Lin et al. 2017, 3.3);
        # from p = 0.5 the thousands of background anchors swamp the first steps
        nn.init.constant_(model.rpn.head.cls_logits.bias, -math.log(99))
    model.transform = FixedSizeTransform(backbone.mean, backbone.std)
    return model
