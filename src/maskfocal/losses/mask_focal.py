"""Mask Focal Loss and the losses it unifies (``shared/MFL.md``, "The loss").

    MFL = -(1/N) * sum_x [ a_pos * M(x) * Y(x)^w * (1-p)^gamma * log p
                         + a_neg * (1 - Y(x))^beta * p^gamma * log(1-p) ]

Zhong et al., "Mask Focal Loss", arXiv 2212.11542, as read in MFL.md. Special cases (tested):
CenterNet's penalty-reduced focal loss (mask ``peak``, w = 0; Zhou et al. 2019, after Law & Deng,
CornerNet 2018) and the sigmoid focal loss of a binary map (mask ``assigned``, w = 0,
alpha = 0.25, N = positives; Lin et al., RetinaNet 2017).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from maskfocal.targets.heatmaps import MASK_KINDS, positive_mask

__all__ = ["LOSS_PRESETS", "MaskFocalLoss", "MaskFocalLossConfig", "mask_focal_loss"]

NORMALIZERS = ("objects", "positives", "weighted", "anchors")


def mask_focal_loss(logits: Tensor, heatmap: Tensor, mask: Tensor, *, gamma: float = 2.0,
                    beta: float = 4.0, weight_power: float = 1.0, alpha: float | None = None,
                    normalizer: str = "objects", num_objects: int | Tensor | None = None,
                    negatives_inside_mask: bool = True, reduction: str = "mean") -> Tensor:
    """Mask Focal Loss over a whole batch.

    Args:
        logits: raw scores z of any shape, e.g. (B, C, H, W); p = sigmoid(z).
        heatmap: Y in [0, 1], same shape (the Gaussian heatmap, or a binary map).
        mask: M, bool or {0, 1}, same shape: the area-based positive mask.
        gamma: focusing exponent on (1-p) and p.
        beta: exponent of the negative weight (1 - Y)^beta.
        weight_power: w in the positive weight M * Y^w (0 makes every positive count 1).
        alpha: None for a_pos = a_neg = 1; a number for a_pos = alpha, a_neg = 1 - alpha.
        normalizer: ``"objects"`` (``num_objects``, or the count of Y == 1 when None),
            ``"positives"`` (sum of M), ``"weighted"`` (sum of M * Y^w) or ``"anchors"``
            (every element: a mean, as binary cross-entropy takes); each at least 1, one for
            the whole batch.
        negatives_inside_mask: False drops the negative term where M is set (an ablation that
            trains a flat plateau per head; see MFL.md).
        reduction: ``"mean"`` divides the sum by the normaliser (the loss of MFL.md),
            ``"sum"`` returns the plain sum, ``"none"`` the per-element loss before division.

    log p and log(1-p) come from logsigmoid, in float32 whatever the input dtype, so the loss
    stays finite under float16/bfloat16 autocast and for saturated logits.
    """
    if heatmap.shape != logits.shape or mask.shape != logits.shape:
        raise ValueError(f"logits {tuple(logits.shape)}, heatmap {tuple(heatmap.shape)} and "
                         f"mask {tuple(mask.shape)} must have the same shape")
    if normalizer not in NORMALIZERS:
        raise ValueError(f"unknown normalizer {normalizer!r}; choose one of: "
                         f"{', '.join(NORMALIZERS)}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"unknown reduction {reduction!r}; choose 'mean', 'sum' or 'none'")
    z = logits.float()
    target = heatmap.float()
    positive = mask.to(torch.float32)
    log_p = F.logsigmoid(z)
    log_not_p = log_p - z  # log(1 - p) = log sigmoid(-z) = log sigmoid(z) - z
    pos_weight = positive if weight_power == 0 else positive * target.pow(weight_power)
    neg_weight = (1 - target).pow(beta)
    if not negatives_inside_mask:
        neg_weight = neg_weight * (1 - positive)
    a_pos, a_neg = (1.0, 1.0) if alpha is None else (alpha, 1.0 - alpha)
    loss = -(a_pos * pos_weight * torch.exp(gamma * log_not_p) * log_p
             + a_neg * neg_weight * torch.exp(gamma * log_p) * log_not_p)
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    return total / _normalizer(normalizer, target, positive, pos_weight, num_objects)


def _normalizer(kind: str, target: Tensor, positive: Tensor, pos_weight: Tensor,
                num_objects: int | Tensor | None) -> Tensor:
    if kind == "objects":
        count = (target == 1).sum() if num_objects is None else num_objects
    elif kind == "anchors":
        count = target.numel()
    elif kind == "positives":
        count = positive.sum()
    else:  # weighted: sum of M * Y^w
        count = pos_weight.sum()
    return torch.clamp(torch.as_tensor(count, dtype=torch.float32, device=target.device), min=1)


@dataclass
class MaskFocalLossConfig:
    """Every choice of MFL: the positive mask and the loss options. Declared once: the
    ``loss`` section of the config is a :class:`MaskFocalLossConfig` (its keys are these
    fields)."""

    mask: str = "peak"  # the measured CenterNet default (docs/experiments/mfl.md); MFL.md's
    tau: float = 0.5    # starting point is "gaussian" (the "mfl" preset below)
    gamma: float = 2.0
    beta: float = 4.0
    weight_power: float = 1.0
    alpha: float | None = None
    normalizer: str = "objects"
    negatives_inside_mask: bool = True

    def __post_init__(self) -> None:
        if self.mask not in MASK_KINDS:
            raise ValueError(f"unknown mask {self.mask!r}; choose one of: {', '.join(MASK_KINDS)}")
        if self.normalizer not in NORMALIZERS:
            raise ValueError(f"unknown normalizer {self.normalizer!r}")

    def loss_options(self) -> dict:
        """The keyword arguments of :func:`mask_focal_loss` (every field but the mask's)."""
        return {f.name: getattr(self, f.name) for f in fields(MaskFocalLossConfig)
                if f.name not in ("mask", "tau")}


LOSS_PRESETS: dict[str, MaskFocalLossConfig] = {
    # CenterNet / CornerNet penalty-reduced focal loss: special case 1 of MFL.md.
    "centernet": MaskFocalLossConfig(mask="peak", weight_power=0.0),
    # Sigmoid focal loss of a binary map (RetinaNet, FCOS): special case 2 of MFL.md.
    "focal": MaskFocalLossConfig(mask="assigned", weight_power=0.0, alpha=0.25,
                                 normalizer="positives"),
    # MFL.md's starting point: the Gaussian mask Y >= tau, w = 1, N = objects.
    "mfl": MaskFocalLossConfig(mask="gaussian"),
}


class MaskFocalLoss(nn.Module):
    """MFL with a preset or explicit options; builds the positive mask from the heatmap.

    >>> loss = MaskFocalLoss("mfl")
    >>> loss(logits, heatmap)            # mask "gaussian": Y >= tau
    >>> MaskFocalLoss("focal")(logits, binary_map, assigned=positives)
    """

    def __init__(self, preset: str | MaskFocalLossConfig = "mfl", **overrides) -> None:
        super().__init__()
        if isinstance(preset, str):
            if preset not in LOSS_PRESETS:
                raise ValueError(f"unknown preset {preset!r}; choose one of: "
                                 f"{', '.join(LOSS_PRESETS)}")
            preset = LOSS_PRESETS[preset]
        self.config = MaskFocalLossConfig(**{**asdict(preset), **overrides})

    def forward(self, logits: Tensor, heatmap: Tensor, *, boxes: Tensor | None = None,
                stride: int = 1, assigned: Tensor | None = None,
                num_objects: int | Tensor | None = None) -> Tensor:
        mask = positive_mask(self.config.mask, heatmap, tau=self.config.tau, boxes=boxes,
                             stride=stride, assigned=assigned)
        return mask_focal_loss(logits, heatmap, mask, num_objects=num_objects,
                               **self.config.loss_options())
