"""The special cases of MFL.md, values and gradients."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import sigmoid_focal_loss

from maskfocal.losses import LOSS_PRESETS, MaskFocalLoss, mask_focal_loss
from maskfocal.targets import gaussian_heatmaps


def centernet_loss_from_formula(logits, heatmap):
    """-(1/N) sum [1{Y=1} (1-p)^2 log p + 1{Y<1} (1-Y)^4 p^2 log(1-p)], N = #peaks (min 1)."""
    p = torch.sigmoid(logits.double())
    y = heatmap.double()
    peaks = (y == 1).double()
    total = (peaks * (1 - p) ** 2 * torch.log(p)
             + (1 - peaks) * (1 - y) ** 4 * p**2 * torch.log(1 - p)).sum()
    return -total / peaks.sum().clamp(min=1)


def batch(seed=0, heads=6, size=24):
    generator = torch.Generator().manual_seed(seed)
    centers = [torch.rand(heads, 2, generator=generator) * size for _ in range(2)]
    sigmas = [torch.rand(heads, generator=generator) * 2 + 0.7 for _ in range(2)]
    heatmap = gaussian_heatmaps(centers, sigmas, size, size)[:, None]  # (2, 1, size, size)
    logits = torch.randn(heatmap.shape, generator=generator) * 2
    return logits, heatmap


def gradient(function, logits):
    logits = logits.clone().double().requires_grad_(True)
    function(logits).backward()
    return logits.grad


def test_centernet_special_case_values_and_gradients():
    logits, heatmap = batch()
    preset = LOSS_PRESETS["centernet"]
    options = preset.loss_options()

    def ours(z):
        return mask_focal_loss(z, heatmap, heatmap == 1, **options)

    assert preset.mask == "peak" and options["weight_power"] == 0 and options["alpha"] is None
    torch.testing.assert_close(ours(logits.double()).double(),
                               centernet_loss_from_formula(logits, heatmap), rtol=1e-5, atol=0)
    torch.testing.assert_close(gradient(ours, logits).double(),
                               gradient(lambda z: centernet_loss_from_formula(z, heatmap),
                                        logits), rtol=1e-4, atol=1e-7)


def test_sigmoid_focal_special_case_values_and_gradients():
    logits, _ = batch(1)
    binary = (torch.rand(logits.shape, generator=torch.Generator().manual_seed(2)) > 0.9).float()
    options = LOSS_PRESETS["focal"].loss_options()

    def ours(z):
        return mask_focal_loss(z, binary, binary.bool(), **options)

    def stock(z):
        return (sigmoid_focal_loss(z, binary.to(z.dtype), alpha=0.25, gamma=2, reduction="sum")
                / max(1, int(binary.sum())))

    torch.testing.assert_close(ours(logits).double(), stock(logits).double(), rtol=1e-5,
                               atol=1e-7)
    torch.testing.assert_close(gradient(ours, logits).double(), gradient(stock, logits),
                               rtol=1e-4, atol=1e-8)


def test_general_formula_elementwise():
    logits, heatmap = batch(3)
    mask = heatmap >= 0.5
    gamma, beta, w, alpha = 1.5, 3.0, 2.0, 0.4
    got = mask_focal_loss(logits, heatmap, mask, gamma=gamma, beta=beta, weight_power=w,
                          alpha=alpha, normalizer="weighted")
    p, y, m = torch.sigmoid(logits.double()), heatmap.double(), mask.double()
    pos = alpha * m * y**w * (1 - p) ** gamma * torch.log(p)
    neg = (1 - alpha) * (1 - y) ** beta * p**gamma * torch.log(1 - p)
    expected = -(pos + neg).sum() / (m * y**w).sum()
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=0)
    inside_off = mask_focal_loss(logits, heatmap, mask, negatives_inside_mask=False,
                                 reduction="sum")
    expected_off = -((m * y * (1 - p) ** 2 * torch.log(p))
                     + (1 - m) * (1 - y) ** 4 * p**2 * torch.log(1 - p)).sum()
    torch.testing.assert_close(inside_off.double(), expected_off, rtol=1e-5, atol=0)


def test_normalizers():
    logits, heatmap = batch(4)
    mask = heatmap >= 0.5
    total = mask_focal_loss(logits, heatmap, mask, reduction="sum")
    assert torch.isclose(mask_focal_loss(logits, heatmap, mask, normalizer="positives"),
                         total / mask.sum())
    assert torch.isclose(mask_focal_loss(logits, heatmap, mask, num_objects=7), total / 7)
    assert torch.isclose(mask_focal_loss(logits, heatmap, mask), total / (heatmap == 1).sum())
    assert mask_focal_loss(logits, heatmap, mask, reduction="none").shape == logits.shape


def test_empty_image_only_negatives_finite():
    logits = torch.randn(1, 1, 16, 16, requires_grad=True)
    heatmap = torch.zeros(1, 1, 16, 16)
    loss = mask_focal_loss(logits, heatmap, heatmap.bool())
    expected = -(torch.sigmoid(logits) ** 2 * torch.log1p(-torch.sigmoid(logits))).sum()
    assert torch.isfinite(loss) and torch.isclose(loss, expected)  # N = 1
    loss.backward()
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_and_saturated_logits(dtype):
    logits, heatmap = batch(5)
    logits = (logits * 40).to(dtype).requires_grad_(True)  # |z| up to ~200: saturated
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = mask_focal_loss(logits, heatmap.to(dtype), heatmap >= 0.5)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_module_and_presets():
    logits, heatmap = batch(6)
    assert torch.isclose(MaskFocalLoss("mfl")(logits, heatmap),
                         mask_focal_loss(logits, heatmap, heatmap >= 0.5))
    assert torch.isclose(MaskFocalLoss("centernet")(logits, heatmap),
                         centernet_loss_from_formula(logits, heatmap).float())
    assert MaskFocalLoss("mfl", tau=0.3).config.tau == 0.3
    with pytest.raises(ValueError, match="unknown preset"):
        MaskFocalLoss("other")
    with pytest.raises(ValueError, match="same shape"):
        mask_focal_loss(logits, heatmap[:1], heatmap >= 0.5)
