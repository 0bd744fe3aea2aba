"""The training loss's options: which loss, MFL's options
(:class:`~maskfocal.losses.MaskFocalLossConfig`), the Gaussian spreads
(:class:`~maskfocal.targets.centernet.SpreadRule`) and the loss weights. Declared here; the
config's ``loss`` section is a :class:`LossOptions`, and a saved model carries one (the box
detectors compute their loss inside the model, so building one needs it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from maskfocal.options import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, PROBABILITY, Range
from maskfocal.targets.centernet import SpreadRule

from .mask_focal import MaskFocalLossConfig

__all__ = ["LossOptions"]


@dataclass
class LossOptions(SpreadRule, MaskFocalLossConfig):
    name: str = "auto"  # the detector's measured best: CenterNet mfl (peak), FCOS/RetinaNet native
    target_map: str = "gaussian"
    heatmap_weight: float = 1.0
    offset_weight: float = 1.0
    size_weight: float = 0.1

    RANGES: ClassVar[dict[str, Range]] = {
        "tau": Range(0, 1, open_low=True),
        "gamma": NON_NEGATIVE,
        "beta": NON_NEGATIVE,
        "weight_power": NON_NEGATIVE,
        "alpha": PROBABILITY,
        "point_spread_k": AT_LEAST_ONE,
        "point_spread_scale": POSITIVE,
        "min_sigma": POSITIVE,
        "max_sigma": POSITIVE,
        "heatmap_weight": NON_NEGATIVE,
        "offset_weight": NON_NEGATIVE,
        "size_weight": NON_NEGATIVE,
    }
