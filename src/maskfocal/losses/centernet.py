"""CenterNet's losses, with the heatmap loss either its own or Mask Focal Loss.

``native``: CenterNet's penalty-reduced focal loss (MFL's ``centernet`` special case, exactly).
``mfl``: Mask Focal Loss with the configured mask and options. The offset and size heads keep
their L1 losses (Zhou et al. 2019), averaged over the heads of the batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from maskfocal.targets.centernet import CenterNetTargets, SpreadRule, encode_centernet
from maskfocal.targets.heatmaps import box_mask, positive_mask

from .mask_focal import MaskFocalLossConfig, mask_focal_loss

LOSS_KEYS = ("loss_heatmap", "loss_offset", "loss_size")


def _gather(prediction: Tensor, targets: CenterNetTargets) -> Tensor:
    """(K, C) predictions at the heads' peak pixels from a (B, C, h, w) map."""
    batch, channels, height, width = prediction.shape
    flat = prediction.permute(0, 2, 3, 1).reshape(batch * height * width, channels)
    return flat[targets.batch_index * height * width + targets.peak_index]


def centernet_losses(outputs: dict[str, Tensor], targets: CenterNetTargets,
                     options: MaskFocalLossConfig, *, heatmap_weight: float = 1.0,
                     offset_weight: float = 1.0, size_weight: float = 0.1,
                     stride: int = 4) -> dict[str, Tensor]:
    """``{"loss_heatmap", "loss_offset", "loss_size"}``, each already weighted; sum to train.

    ``options``: the heatmap loss, CenterNet's own (``LOSS_PRESETS["centernet"]``) or MFL.
    """
    heatmap = targets.heatmap
    if options.mask == "box":
        mask = torch.stack([box_mask(boxes, heatmap.shape[-2], heatmap.shape[-1], stride)
                            for boxes in targets.boxes_per_image])[:, None].to(heatmap.device)
    else:
        mask = positive_mask(options.mask, heatmap, tau=options.tau)
    loss_heatmap = mask_focal_loss(outputs["heatmap"], heatmap, mask,
                                   num_objects=targets.num_heads, **options.loss_options())
    normaliser = max(1, targets.num_heads)
    loss_offset = (_gather(outputs["offset"].float(), targets) - targets.offset).abs().sum() \
        / normaliser
    losses = {"loss_heatmap": heatmap_weight * loss_heatmap,
              "loss_offset": offset_weight * loss_offset}
    if "size" in outputs:
        loss_size = (_gather(outputs["size"].float(), targets) - targets.size).abs().sum() \
            / normaliser
        losses["loss_size"] = size_weight * loss_size
    else:
        losses["loss_size"] = outputs["heatmap"].new_zeros(())
    return losses


@dataclass
class CenterNetLoss:
    """CenterNet's training loss as the model applies it (``model(images, targets)`` in
    training): the targets encoded at the model's stride, then :func:`centernet_losses`.

    ``targets``: one dict per image, ``points`` (n, 2) and ``boxes`` (n, 4) in input pixels
    and ``real_boxes`` (whether the boxes are annotated or pseudo boxes), as every detector
    takes them (:func:`maskfocal.data.training.detection_targets`).
    """

    heatmap: MaskFocalLossConfig
    spread: SpreadRule = field(default_factory=SpreadRule)
    heatmap_weight: float = 1.0
    offset_weight: float = 1.0
    size_weight: float = 0.1

    def __call__(self, outputs: dict[str, Tensor], targets: list[dict[str, Tensor]],
                 image_size: tuple[int, int], stride: int) -> dict[str, Tensor]:
        encoded = encode_centernet(
            [t["points"] for t in targets], [t["boxes"] for t in targets],
            [bool(t["real_boxes"]) for t in targets], image_size[0], image_size[1],
            stride=stride, rule=self.spread)
        return centernet_losses(outputs, encoded, self.heatmap,
                                heatmap_weight=self.heatmap_weight,
                                offset_weight=self.offset_weight, size_weight=self.size_weight,
                                stride=stride)
