"""Mask Focal Loss as the classification loss of FCOS and RetinaNet.

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
    logits, heatmaps, masks, heads = [], [], [], []
    for logits_i, target, anchors_i, matched in zip(cls_logits, targets, anchors, matched_idxs,
                                                    strict=True):
        valid = matched != BETWEEN_THRESHOLDS
        foreground = (matched >= 0)[valid]
        if binary:
            heatmap = foreground.float()
        else:
            anchors_v = anchors_i[valid].float()  # bfloat16 under autocast: too coarse
            centers = (anchors_v[:, :2] + anchors_v[:, 2:]) / 2
            strides = strides_of_anchors(anchors_v, size_to_stride)
            real = bool(target.get("real_boxes", torch.tensor(True)))
            heatmap = anchor_heatmap_values(centers, strides, target["boxes"], real, rule)
        logits.append(logits_i[valid, 0])
        heatmaps.append(heatmap)
        masks.append(foreground)
        heads.append(len(target["boxes"]))
    loss_options = options.loss_options()
    if per_image:
        losses = [mask_focal_loss(z, y, m, num_objects=n, **loss_options)
                  for z, y, m, n in zip(logits, heatmaps, masks, heads, strict=True)]
        return torch.stack(losses).mean()
    return mask_focal_loss(torch.cat(logits), torch.cat(heatmaps), torch.cat(masks),
                           num_objects=sum(heads), **loss_options)
