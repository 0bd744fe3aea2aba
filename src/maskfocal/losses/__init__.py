"""Losses: Mask Focal Loss and the losses it unifies, as functions with explicit normalisers."""

from .mask_focal import LOSS_PRESETS, MaskFocalLoss, MaskFocalLossConfig, mask_focal_loss

__all__ = ["LOSS_PRESETS", "MaskFocalLoss", "MaskFocalLossConfig", "mask_focal_loss"]
