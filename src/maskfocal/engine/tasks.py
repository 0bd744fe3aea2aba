"""What differs between detector families, in one place: how a batch becomes losses and how
outputs become heads. CenterNet returns raw maps (targets, losses and decoding are ours);
torchvision's FCOS and RetinaNet compute their losses and detections themselves."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from maskfocal.config import Config, DecodeConfig
from maskfocal.data.transforms import Sample
from maskfocal.decode import Detections, decode_centernet
from maskfocal.losses import LOSS_KEYS as CENTERNET_LOSS_KEYS
from maskfocal.losses import centernet_losses
from maskfocal.models import CenterNet
from maskfocal.targets.centernet import SpreadRule, encode_centernet

LOSS_KEYS: dict[str, tuple[str, ...]] = {
    "centernet": CENTERNET_LOSS_KEYS,
    "fcos": ("loss_classification", "loss_box", "loss_centerness"),
    "retinanet": ("loss_classification", "loss_box"),
}
_TORCHVISION_KEYS = {"classification": "loss_classification", "bbox_regression": "loss_box",
                     "bbox_ctrness": "loss_centerness"}


def spread_rule(config: Config) -> SpreadRule:
    loss = config.loss
    return SpreadRule(box_rule=loss.box_spread, source=loss.spread_source, k=loss.point_spread_k,
                      scale=loss.point_spread_scale, min_sigma=loss.min_sigma,
                      max_sigma=loss.max_sigma)


def training_losses(model: nn.Module, images: Tensor, samples: Sequence[Sample],
                    config: Config, *, call: nn.Module | None = None) -> dict[str, Tensor]:
    """The loss dict of one batch (stable keys, see ``LOSS_KEYS``); sum it to train.

    ``images``: (B, 3, H, W) on the model's device; ``samples``: their heads in input pixels.
    ``call``: what runs the forward pass when it is not ``model`` itself (its
    DistributedDataParallel wrapper).
    """
    call = call if call is not None else model
    device = images.device
    if isinstance(model, CenterNet):
        targets = encode_centernet(
            [s.points.to(device) for s in samples], [s.boxes.to(device) for s in samples],
            [s.has_boxes for s in samples], images.shape[-2], images.shape[-1],
            stride=model.stride, rule=spread_rule(config))
        return centernet_losses(call(images), targets, config.loss, stride=model.stride)
    targets = [{"boxes": s.boxes.to(device), "real_boxes": torch.tensor(s.has_boxes),
                "labels": torch.zeros(len(s.boxes), dtype=torch.int64, device=device)}
               for s in samples]
    losses = call(list(images), targets)
    return {_TORCHVISION_KEYS[key]: value for key, value in losses.items()}


@torch.no_grad()
def detect(model: nn.Module, images: Tensor, valid_sizes: Sequence[tuple[int, int]], *,
           threshold: float, decode: DecodeConfig) -> list[Detections]:
    """Heads (score >= ``threshold``) in each image of a padded batch, in input pixels,
    sorted by score; heads beyond an image's valid (unpadded) size are dropped."""
    return decode_outputs(model, forward(model, images), valid_sizes, threshold=threshold,
                          decode=decode)


def forward(model: nn.Module, images: Tensor):
    """Inference outputs of a (B, 3, H, W) batch: CenterNet's raw maps, or torchvision's
    per-image detections (the model must be in eval mode)."""
    return model(images) if isinstance(model, CenterNet) else model(list(images))


def decode_outputs(model: nn.Module, outputs, valid_sizes: Sequence[tuple[int, int]], *,
                   threshold: float, decode: DecodeConfig) -> list[Detections]:
    """:func:`detect` after the forward pass: CenterNet maps, or torchvision's detections."""
    if isinstance(model, CenterNet):
        return decode_centernet(outputs, threshold=threshold, stride=model.stride,
                                peak_window=decode.peak_window,
                                max_detections=decode.max_detections,
                                image_sizes=list(valid_sizes))
    found = []
    for output, (height, width) in zip(outputs, valid_sizes, strict=True):
        boxes, scores = output["boxes"], output["scores"]
        points = (boxes[:, :2] + boxes[:, 2:]) / 2
        keep = (scores >= threshold) & (points[:, 0] < width) & (points[:, 1] < height)
        order = torch.argsort(scores[keep], descending=True)
        found.append(Detections(points[keep][order], scores[keep][order], boxes[keep][order]))
    return found
