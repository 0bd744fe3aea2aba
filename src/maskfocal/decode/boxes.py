"""Box detectors' outputs -> heads: box centres as points, and torchvision's post-processing
(anchors, box decoding, NMS) for raw head outputs computed elsewhere (an exported graph)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from maskfocal.errors import MaskfocalError

from .detections import Detections


def boxes_to_detections(outputs: list[dict[str, Tensor]],
                        valid_sizes: Sequence[tuple[int, int]], *,
                        threshold: float) -> list[Detections]:
    """torchvision's per-image ``{"boxes", "scores"}`` -> heads at the box centres (score >=
    ``threshold``, inside the valid size), sorted by score."""
    found = []
    for output, (height, width) in zip(outputs, valid_sizes, strict=True):
        boxes, scores = output["boxes"], output["scores"]
        points = (boxes[:, :2] + boxes[:, 2:]) / 2
        keep = (scores >= threshold) & (points[:, 0] < width) & (points[:, 1] < height)
        order = torch.argsort(scores[keep], descending=True)
        found.append(Detections(points[keep][order], scores[keep][order], boxes[keep][order]))
    return found


def feature_sizes(height: int, width: int, strides: list[int]) -> list[tuple[int, int]]:
    """Feature sizes at each stride: every stride-2 step of the backbone rounds up."""
    sizes = []
    for stride in strides:
        steps = int(math.log2(stride))
        h, w = height, width
        for _ in range(steps):
            h, w = -(-h // 2), -(-w // 2)
        sizes.append((h, w))
    return sizes


@torch.no_grad()
def box_postprocess(model: nn.Module, head_outputs: dict[str, Tensor],
                    image_size: tuple[int, int], batch: int, strides: Sequence[int]
                    ) -> list[dict[str, Tensor]]:
    """torchvision's FCOS/RetinaNet inference after the heads: anchors, decode, NMS."""
    from torchvision.models.detection.image_list import ImageList

    sizes = feature_sizes(*image_size, list(strides))
    images = ImageList(torch.empty(batch, 0, *image_size), [image_size] * batch)
    features = [torch.empty(batch, 0, h, w) for h, w in sizes]
    anchors = model.anchor_generator(images, features)
    per_level = [h * w for h, w in sizes]
    total = head_outputs["cls_logits"].shape[1]
    if total % sum(per_level):
        raise MaskfocalError(f"ONNX outputs have {total} anchors; the config's levels "
                             f"{sizes} do not divide them")
    per_level = [n * (total // sum(per_level)) for n in per_level]
    split_outputs = {k: list(v.split(per_level, dim=1)) for k, v in head_outputs.items()}
    split_anchors = [list(a.split(per_level)) for a in anchors]
    return model.postprocess_detections(split_outputs, split_anchors, images.image_sizes)
