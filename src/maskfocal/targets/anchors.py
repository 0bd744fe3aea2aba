"""MFL targets for anchor-based and anchor-free box detectors (``shared/MFL.md``, "How each
detector family uses it").

Y at a location (FCOS) or an anchor centre (RetinaNet) is the Gaussian heatmap of that pyramid
level at that level's stride: each head's spread is computed from its box divided by the stride
(or from its neighbours, for point data), and overlaps merge by max, so a location assigned to
a head gets that head's Gaussian and a location between heads the largest nearby one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .centernet import SpreadRule, head_sigmas
from .heatmaps import gaussian_heatmaps


@torch.no_grad()
def anchor_heatmap_values(anchor_centers: Tensor, anchor_strides: Tensor, gt_boxes: Tensor,
                          real_boxes: bool, rule: SpreadRule) -> Tensor:
    """Y at each anchor, shape (A,).

    Args:
        anchor_centers: (A, 2) x, y in image pixels; on a level of stride s the centres lie on
            the grid ``(i * s, j * s)`` (torchvision's anchor layout).
        anchor_strides: (A,) the stride of each anchor's level.
        gt_boxes: (N, 4) head boxes x1 y1 x2 y2 in image pixels (pseudo boxes for point data).
        real_boxes: spreads from boxes (True) or from neighbouring points (False).
    """
    # float32 throughout: under autocast the anchors arrive in the feature maps' dtype
    anchor_centers, gt_boxes = anchor_centers.float(), gt_boxes.float()
    values = anchor_centers.new_zeros(len(anchor_centers))
    if len(gt_boxes) == 0:
        return values
    centers = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
    points = centers.detach().cpu().numpy()
    boxes = gt_boxes.detach().cpu().numpy()
    for stride in torch.unique(anchor_strides).tolist():  # one rendering per pyramid level
        on_level = anchor_strides == stride
        cells = torch.round(anchor_centers[on_level] / stride).long()  # (n, 2) grid x, y
        height, width = int(cells[:, 1].max()) + 1, int(cells[:, 0].max()) + 1
        sigma = torch.from_numpy(head_sigmas(points, boxes, real_boxes, int(stride), rule))
        heatmap = gaussian_heatmaps([centers / stride], [sigma.to(centers.device)], height,
                                    width)[0]
        values[on_level] = heatmap[cells[:, 1].clamp(min=0), cells[:, 0].clamp(min=0)]
    return values


def strides_of_anchors(anchors: Tensor, size_to_stride: dict[float, int]) -> Tensor:
    """(A,) stride of each anchor (A, 4), from its width: anchor sizes differ per level, and
    torchvision rounds anchor corners, so the nearest listed size decides."""
    widths = anchors[:, 2] - anchors[:, 0]
    sizes = torch.tensor(list(size_to_stride), dtype=widths.dtype, device=widths.device)
    strides = torch.tensor(list(size_to_stride.values()), device=widths.device)
    return strides[(widths[:, None] - sizes[None, :]).abs().argmin(dim=1)]


def level_sizes(sizes: Sequence[Sequence[float]], strides: Sequence[int]) -> dict[float, int]:
    """``{anchor width: stride}`` for an anchor generator's sizes per level."""
    return {float(size): int(stride)
            for level, stride in zip(sizes, strides, strict=True) for size in level}
