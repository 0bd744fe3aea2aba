"""Mask Focal Loss as the classification loss of FCOS and RetinaNet, and as the objectness
loss of Faster R-CNN's region proposal network.

The detector's own assignment (``matched_idxs``) is the positive mask M (MFL.md's ``assigned``);
Y at each anchor comes from ``targets.anchors.anchor_heatmap_values``, or is the binary
assignment itself for the focal-loss special case. FCOS normalises once over the batch,
RetinaNet per image and then averages over images; both are kept, so that MFL's special case
reproduces each stock loss exactly. RetinaNet's ignored anchors (between its IoU thresholds)
stay ignored.
"""

from __future__ import annotations

import torch
from torch import Tensor

from maskfocal.targets.anchors import anchor_heatmap_values, strides_of_anchors
from maskfocal.targets.centernet import SpreadRule

from .mask_focal import MaskFocalLossConfig, mask_focal_loss

TARGET_MAPS = ("gaussian", "binary")
"""Y at each anchor: Gaussian heatmap values, or the binary assignment (the focal-loss special
case)."""
BETWEEN_THRESHOLDS = -2  # torchvision's Matcher label of ignored anchors


def detector_classification_loss(cls_logits: Tensor, targets: list[dict[str, Tensor]],
                                 anchors: list[Tensor], matched_idxs: list[Tensor],
                                 options: MaskFocalLossConfig, *,
                                 size_to_stride: dict[float, int], rule: SpreadRule,
                                 per_image: bool, binary: bool = False) -> Tensor:
    """MFL over a batch of anchors.

    Args:
        cls_logits: (B, A, 1) classification logits.
        targets: torchvision targets, ``boxes`` (N_i, 4) and optionally ``real_boxes`` (a bool
            tensor: False for pseudo boxes of point data).
        anchors: per image (A, 4); matched_idxs: per image (A,), -1 background, -2 ignored.
        per_image: normalise each image and average (RetinaNet) or the batch once (FCOS).
        binary: Y is the assignment itself (the focal-loss special case) instead of Gaussians.
    """
    heatmaps_all = (None if binary else
                    _heatmaps_on_host(targets, anchors, size_to_stride, rule, cls_logits.device))
    logits, heatmaps, masks, heads = [], [], [], []
    for i, (logits_i, target, matched) in enumerate(zip(cls_logits, targets, matched_idxs,
                                                        strict=True)):
        valid = matched != BETWEEN_THRESHOLDS
        foreground = (matched >= 0)[valid]
        logits.append(logits_i[valid, 0])
        heatmaps.append(foreground.float() if heatmaps_all is None else heatmaps_all[i][valid])
        masks.append(foreground)
        heads.append(len(target["boxes"]))
    loss_options = options.loss_options()
    if per_image:
        losses = [mask_focal_loss(z, y, m, num_objects=n, **loss_options)
                  for z, y, m, n in zip(logits, heatmaps, masks, heads, strict=True)]
        return torch.stack(losses).mean()
    return mask_focal_loss(torch.cat(logits), torch.cat(heatmaps), torch.cat(masks),
                           num_objects=sum(heads), **loss_options)


def _heatmaps_on_host(targets: list[dict[str, Tensor]], anchors: list[Tensor],
                      size_to_stride: dict[float, int], rule: SpreadRule,
                      device: torch.device) -> list[Tensor]:
    """Y at every anchor of every image, (A_i,) each, rendered on the CPU, where the spreads are
    computed (numpy, KD-trees): one copy of the anchors and boxes down and one of Y up per
    batch. Rendered beside the logits, each image and pyramid level cost several host round
    trips (the likely cause of FCOS with MFL training at 7-8 images/s against FCOS's own 75 on
    a GPU shared by 12 runs, experiments/results/mfl_converged.md)."""
    counts = [len(t["boxes"]) for t in targets]
    boxes = torch.cat([t["boxes"].float() for t in targets]).cpu().split(counts)
    sizes = [len(a) for a in anchors]
    anchors = torch.cat([a.float() for a in anchors]).cpu()  # bfloat16 under autocast: coarse
    values = []
    for anchors_i, boxes_i, target in zip(anchors.split(sizes), boxes, targets, strict=True):
        centers = (anchors_i[:, :2] + anchors_i[:, 2:]) / 2
        strides = strides_of_anchors(anchors_i, size_to_stride)
        real = bool(target.get("real_boxes", torch.tensor(True)))
        values.append(anchor_heatmap_values(centers, strides, boxes_i, real, rule))
    return torch.cat(values).to(device, non_blocking=True).split(sizes)


def rpn_objectness_loss(objectness: Tensor, targets: list[dict[str, Tensor]],
                        anchors: list[Tensor], labels: list[Tensor],
                        options: MaskFocalLossConfig, *, size_to_stride: dict[float, int],
                        rule: SpreadRule, binary: bool = False) -> Tensor:
    """MFL as the RPN's objectness loss, over its own assignment.

    ``labels``: per image (A,), the RPN matcher's 1 (a head's anchor: the positive mask),
    0 (background) and -1 (between its IoU thresholds: left out, as torchvision leaves them).
    Every labelled anchor counts, not the RPN's sample of 256 per image: the focal weights
    and Y balance them, as in RetinaNet. Restricting ``labels`` to the sample (the others set
    to -1) with binary Y, ``gamma=0``, ``weight_power=0``, ``alpha=None`` and
    ``normalizer="anchors"`` is torchvision's binary cross-entropy exactly (tested).
    ``objectness``: (B * A,) or (B, A) logits in torchvision's anchor order.
    """
    matched = [torch.where(lab == 1, 0, torch.where(lab == 0, -1, BETWEEN_THRESHOLDS))
               for lab in labels]
    return detector_classification_loss(objectness.reshape(len(labels), -1, 1), targets,
                                        anchors, matched, options,
                                        size_to_stride=size_to_stride, rule=rule,
                                        per_image=False, binary=binary)
