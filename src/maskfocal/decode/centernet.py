"""CenterNet maps -> heads: sigmoid, 3x3 max-pool peaks, threshold, offsets, sizes.

No top-k cap below ``max_detections`` (at least 10,000), so dense scenes are not truncated.
Peaks are found on the logits (monotone in the score), so saturated probabilities never tie.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .detections import Detections


@torch.no_grad()
def decode_centernet(outputs: dict[str, Tensor], *, threshold: float, stride: int = 4,
                     peak_window: int = 3, max_detections: int = 10000,
                     image_sizes: list[tuple[int, int]] | None = None) -> list[Detections]:
    """Decode a batch of raw CenterNet maps.

    Args:
        outputs: ``heatmap`` (B, 1, h, w) logits, ``offset`` (B, 2, h, w), optional ``size``.
        threshold: minimum score of a peak.
        image_sizes: (height, width) of each image's valid area; peaks beyond it (padding)
            are dropped.
    """
    logits = outputs["heatmap"].float()
    batch = logits.shape[0]
    pooled = F.max_pool2d(logits, peak_window, stride=1, padding=peak_window // 2)
    is_peak = (logits == pooled) & (torch.sigmoid(logits) >= threshold)
    detections = []
    for b in range(batch):
        ys, xs = is_peak[b, 0].nonzero(as_tuple=True)
        scores = torch.sigmoid(logits[b, 0, ys, xs])
        if len(scores) > max_detections:
            scores, keep = scores.topk(max_detections)
            ys, xs = ys[keep], xs[keep]
        offset = outputs["offset"][b, :, ys, xs].float().T  # (n, 2)
        points = (torch.stack([xs, ys], dim=1).float() + offset) * stride
        boxes = None
        if "size" in outputs:
            size = outputs["size"][b, :, ys, xs].float().T.clamp(min=0) * stride
            boxes = torch.cat([points - size / 2, points + size / 2], dim=1)
        if image_sizes is not None:
            valid_h, valid_w = image_sizes[b]
            keep = (points[:, 0] < valid_w) & (points[:, 1] < valid_h)
            points, scores = points[keep], scores[keep]
            boxes = None if boxes is None else boxes[keep]
        order = torch.argsort(scores, descending=True)
        detections.append(Detections(points[order], scores[order],
                                     None if boxes is None else boxes[order]))
    return detections
