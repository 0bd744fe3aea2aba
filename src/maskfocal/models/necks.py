"""Necks: bring backbone features to the resolution the heads need."""

from __future__ import annotations

from collections import OrderedDict

import torch.nn.functional as F
from torch import Tensor, nn


class TopDownNeck(nn.Module):
    """FPN's top-down path (Lin et al. 2017) ending at the finest level only.

    1x1 lateral convs bring every level to ``channels``; each coarser level is upsampled
    (nearest) and added to the next finer one; one 3x3 conv smooths the finest sum. Only the
    stride-4 output is computed, so no parameter sits unused.

    ``forward({"c2".."c5"}) -> (B, channels, H/4, W/4)``.
    """

    def __init__(self, in_channels: list[int], channels: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.smooth = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, features: OrderedDict[str, Tensor]) -> Tensor:
        levels = list(features.values())  # finest first
        merged = self.lateral[-1](levels[-1])
        for lateral, feature in zip(reversed(self.lateral[:-1]), reversed(levels[:-1]),
                                    strict=True):
            merged = lateral(feature) + F.interpolate(merged, size=feature.shape[-2:],
                                                      mode="nearest")
        return self.smooth(merged)
