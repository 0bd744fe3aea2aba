"""Losses: Mask Focal Loss and the losses it unifies, as functions with explicit normalisers."""

from .centernet import LOSS_KEYS, centernet_losses, heatmap_loss_config
from .mask_focal import LOSS_PRESETS, MaskFocalLoss, MaskFocalLossConfig, mask_focal_loss

__all__ = ["LOSS_KEYS", "LOSS_PRESETS", "MaskFocalLoss", "MaskFocalLossConfig",
           "centernet_losses", "heatmap_loss_config", "mask_focal_loss"]
