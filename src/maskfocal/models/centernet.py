"""A CenterNet-style dense head counter (Zhou et al., "Objects as Points", 2019).

Backbone (torchvision) -> FPN-style top-down neck at stride 4 -> heads: heatmap (1 class), sub-pixel
offset (2) and head size (2). Like torchvision's detectors, ``model(images, targets)`` in
training returns the loss dict (its :class:`~maskfocal.losses.CenterNetLoss`: targets from
``targets/``, losses from ``losses/``) and ``model(images)`` the raw maps; decoding lives in
``decode/``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from maskfocal.losses import LOSS_PRESETS, CenterNetLoss

from .backbones import Backbone
from .necks import TopDownNeck

PRIOR_PROBABILITY = 0.1  # heatmap bias -log((1 - 0.1) / 0.1) = -2.19, as in CenterNet


def head(in_channels: int, hidden: int, out_channels: int, bias: float = 0.0) -> nn.Sequential:
    """conv3x3 -> ReLU -> conv1x1, the CenterNet head."""
    layers = nn.Sequential(nn.Conv2d(in_channels, hidden, 3, padding=1), nn.ReLU(inplace=True),
                           nn.Conv2d(hidden, out_channels, 1))
    nn.init.constant_(layers[-1].bias, bias)
    return layers


class CenterNet(nn.Module):
    """``forward(images) -> {"heatmap": (B, 1, H/s, W/s), "offset": (B, 2, ...), "size": ...}``
    with ``s = stride`` (4, or 2 for dense crowds whose heads lie closer than 8 px); in
    training, ``forward(images, targets)`` -> ``{"loss_heatmap", "loss_offset", "loss_size"}``
    (torchvision's detection contract).

    Args:
        backbone: a :class:`Backbone`; built from ``backbone_name``, ``weights`` and
            ``imagenet`` when None.
        neck_channels: FPN channels.
        head_channels: hidden channels of each head.
        size_head: add the head-size branch (``"size"``, box width and height in stride units).
        stride: output stride, 4 (the neck's finest level) or 2 (that level upsampled
            bilinearly and refined by a 3x3 conv + ReLU before the heads).
        loss: the training loss (:class:`~maskfocal.losses.CenterNetLoss`); default:
            CenterNet's own penalty-reduced focal loss with its default weights.

    ``images`` are (B, 3, H, W) RGB in [0, 1] with H and W multiples of 32; the model applies
    the backbone's input normalisation itself.
    """

    STRIDES = (2, 4)

    def __init__(self, backbone: Backbone | None = None, *, backbone_name: str = "resnet18",
                 weights: str | None = None, imagenet: bool = False, neck_channels: int = 128,
                 head_channels: int = 64, size_head: bool = True, stride: int = 4,
                 loss: CenterNetLoss | None = None) -> None:
        super().__init__()
        if stride not in self.STRIDES:
            raise ValueError(f"stride must be one of {self.STRIDES}, got {stride}")
        self.stride = stride
        self.loss = loss if loss is not None else CenterNetLoss(LOSS_PRESETS["centernet"])
        self.backbone = (backbone if backbone is not None
                         else Backbone(backbone_name, weights, imagenet=imagenet))
        self.neck = TopDownNeck(self.backbone.out_channels, neck_channels)
        self.upsample = None if stride == 4 else nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(neck_channels, neck_channels, 3, padding=1), nn.ReLU(inplace=True))
        prior = -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)
        self.heads = nn.ModuleDict({
            "heatmap": head(neck_channels, head_channels, 1, bias=prior),
            "offset": head(neck_channels, head_channels, 2),
        })
        if size_head:
            self.heads["size"] = head(neck_channels, head_channels, 2)
        self.register_buffer("mean", torch.tensor(self.backbone.mean).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(self.backbone.std).view(1, 3, 1, 1),
                             persistent=False)

    def forward(self, images: Tensor, targets: list[dict[str, Tensor]] | None = None
                ) -> dict[str, Tensor]:
        """Raw maps of a (B, 3, H, W) batch; with ``targets`` in training, the loss dict."""
        features = self.backbone((images - self.mean) / self.std)
        finest = self.neck(features)  # (B, neck_channels, H/4, W/4)
        if self.upsample is not None:
            finest = self.upsample(finest)  # (B, neck_channels, H/2, W/2)
        outputs = {name: branch(finest) for name, branch in self.heads.items()}
        if self.training and targets is not None:
            return self.loss(outputs, targets, tuple(images.shape[-2:]), self.stride)
        return outputs
