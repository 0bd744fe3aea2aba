"""Losses: Mask Focal Loss and the losses it unifies, as functions with explicit normalisers.
Losses take their own option types (:class:`MaskFocalLossConfig`), never the app config."""

from .centernet import LOSS_KEYS, CenterNetLoss, centernet_losses
from .mask_focal import LOSS_PRESETS, MaskFocalLoss, MaskFocalLossConfig, mask_focal_loss

__all__ = ["LOSS_KEYS", "LOSS_PRESETS", "CenterNetLoss", "MaskFocalLoss", "MaskFocalLossConfig",
           "centernet_losses", "mask_focal_loss"]
