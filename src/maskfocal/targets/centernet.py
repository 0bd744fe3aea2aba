"""CenterNet targets: heatmap, peak indices, sub-pixel offsets and head sizes, per batch.

A pure, no-grad step that returns plain tensors (detectron2's ``label_anchors`` habit); the
loss only compares. Spreads follow MFL.md: from boxes by CenterNet's or TTFNet's rule, from
points by the geometry-adaptive rule (MCNN).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .heatmaps import gaussian_heatmaps
from .spreads import box_sigmas, point_sigmas

LONE_HEAD_SIGMA = 2.0  # feature-map pixels, for an image with a single point-only head


SPREAD_SOURCES = ("auto", "points")
"""``auto``: spreads from boxes where the data has them, else from points; ``points``: always
from points."""


@dataclass
class SpreadRule:
    """How a head's Gaussian spread is chosen. Declared once: the ``loss`` section of the
    config is a :class:`SpreadRule` (its keys are these fields)."""

    box_spread: str = "centernet"  # a rule of BOX_RULES
    spread_source: str = "auto"  # a value of SPREAD_SOURCES
    point_spread_k: int = 3
    point_spread_scale: float = 0.3
    min_sigma: float = 0.5
    max_sigma: float = 2.0


@dataclass
class CenterNetTargets:
    """Targets of a batch at stride s; K heads over the whole batch.

    heatmap: (B, 1, H/s, W/s) Gaussian heatmap Y.
    batch_index, peak_index: (K,) image of each head and its peak ``y * (W/s) + x``.
    offset: (K, 2) sub-pixel offset of the centre from its peak pixel, in [0, 1).
    size: (K, 2) box width and height in stride units.
    boxes_per_image: head boxes (real or pseudo) in input pixels, for the ``box`` mask.
    num_heads: K (heads whose peak lies inside the map).
    """

    heatmap: Tensor
    batch_index: Tensor
    peak_index: Tensor
    offset: Tensor
    size: Tensor
    boxes_per_image: list[Tensor]
    num_heads: int


def head_sigmas(points: np.ndarray, boxes: np.ndarray | None, has_boxes: bool, stride: int,
                rule: SpreadRule) -> np.ndarray:
    """(N, 2) spreads in feature-map pixels of one image's heads."""
    if has_boxes and boxes is not None and rule.spread_source == "auto":
        return box_sigmas(boxes / stride, rule=rule.box_spread, min_sigma=rule.min_sigma)
    fallback = float(np.clip(LONE_HEAD_SIGMA, rule.min_sigma, rule.max_sigma))
    sigma = point_sigmas(points / stride, k=rule.point_spread_k, scale=rule.point_spread_scale,
                         min_sigma=rule.min_sigma, max_sigma=rule.max_sigma, fallback=fallback)
    return np.repeat(sigma[:, None], 2, axis=1)


@torch.no_grad()
def encode_centernet(points_per_image: Sequence[Tensor], boxes_per_image: Sequence[Tensor],
                     has_boxes: Sequence[bool], image_height: int, image_width: int,
                     stride: int = 4, rule: SpreadRule | None = None) -> CenterNetTargets:
    """Encode a batch of heads for CenterNet.

    Args:
        points_per_image: (N_i, 2) head centres x, y in input pixels.
        boxes_per_image: (N_i, 4) head boxes (real, or pseudo boxes for point data).
        has_boxes: per image, whether the boxes are real (spread from boxes) or pseudo
            (geometry-adaptive spread from points).
        image_height, image_width: the input size (multiples of ``stride``).
    """
    rule = rule or SpreadRule()
    height, width = image_height // stride, image_width // stride
    device = points_per_image[0].device if len(points_per_image) else torch.device("cpu")
    centers, sigmas = [], []
    batch_index, peak_index, offsets, sizes = [], [], [], []
    for b, (points, boxes, real) in enumerate(zip(points_per_image, boxes_per_image, has_boxes,
                                                  strict=True)):
        points = points.float().reshape(-1, 2)
        boxes = boxes.float().reshape(-1, 4)
        feature_points = points / stride
        centers.append(feature_points)
        sigma = head_sigmas(points.cpu().numpy(), boxes.cpu().numpy(), real, stride, rule)
        sigmas.append(torch.from_numpy(sigma).to(device))
        peaks = torch.floor(feature_points).long()
        inside = ((peaks[:, 0] >= 0) & (peaks[:, 0] < width) & (peaks[:, 1] >= 0)
                  & (peaks[:, 1] < height))
        peaks = peaks[inside]
        batch_index.append(torch.full((len(peaks),), b, dtype=torch.long, device=device))
        peak_index.append(peaks[:, 1] * width + peaks[:, 0])
        offsets.append(feature_points[inside] - peaks.float())
        sizes.append((boxes[inside, 2:] - boxes[inside, :2]) / stride)
    heatmap = gaussian_heatmaps(centers, sigmas, height, width)[:, None].to(device)
    offset = torch.cat(offsets) if offsets else torch.zeros(0, 2, device=device)
    return CenterNetTargets(
        heatmap=heatmap,
        batch_index=torch.cat(batch_index) if batch_index else torch.zeros(0, dtype=torch.long),
        peak_index=torch.cat(peak_index) if peak_index else torch.zeros(0, dtype=torch.long),
        offset=offset,
        size=torch.cat(sizes) if sizes else torch.zeros(0, 2, device=device),
        boxes_per_image=[b.float().reshape(-1, 4) for b in boxes_per_image],
        num_heads=len(offset),
    )
