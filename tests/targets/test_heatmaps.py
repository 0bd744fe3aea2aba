from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from maskfocal.targets import (
    box_mask,
    gaussian_heatmap,
    gaussian_heatmaps,
    multilevel_heatmaps,
    positive_mask,
)


def reference_heatmap(centers, sigmas, height, width):
    """Per-head loop straight from MFL.md: max over heads, 0 beyond 3 sigma per axis."""
    heatmap = np.zeros((height, width), np.float64)
    ys, xs = np.mgrid[0:height, 0:width]
    for (x, y), (sx, sy) in zip(centers, sigmas, strict=True):
        px, py = math.floor(x), math.floor(y)
        if not (0 <= px < width and 0 <= py < height):
            continue
        g = np.exp(-((xs - px) ** 2 / (2 * sx**2) + (ys - py) ** 2 / (2 * sy**2)))
        g[(np.abs(xs - px) > math.ceil(3 * sx)) | (np.abs(ys - py) > math.ceil(3 * sy))] = 0
        heatmap = np.maximum(heatmap, g)
    return heatmap


def test_matches_reference_with_anisotropy_borders_and_outside():
    rng = np.random.default_rng(0)
    centers = np.concatenate([rng.uniform(-3, 43, (60, 2)), [[0.2, 0.9], [39.99, 29.5],
                                                             [-0.5, 5], [40.0, 3]]])
    sigmas = rng.uniform(0.5, 4, (len(centers), 2))
    ours = gaussian_heatmap(torch.tensor(centers), torch.tensor(sigmas), 30, 40)
    expected = reference_heatmap(centers, sigmas, 30, 40)
    assert ours.dtype == torch.float32 and ours.shape == (30, 40)
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-6)


def test_peaks_are_exactly_one_and_merge_by_max():
    centers = torch.tensor([[5.7, 6.2], [7.1, 6.9]])
    heatmap = gaussian_heatmap(centers, torch.tensor([2.0, 2.0]), 16, 16)
    assert heatmap[6, 5] == 1.0 and heatmap[6, 7] == 1.0
    assert heatmap.max() == 1.0  # max, not sum, between the two peaks
    assert (heatmap == 1).sum() == 2


def test_isotropic_equals_pairs_and_empty():
    centers = torch.tensor([[3.0, 4.0]])
    assert torch.equal(gaussian_heatmap(centers, [1.5], 10, 10),
                       gaussian_heatmap(centers, [[1.5, 1.5]], 10, 10))
    assert gaussian_heatmap(torch.zeros(0, 2), torch.zeros(0), 8, 9).abs().sum() == 0
    with pytest.raises(ValueError, match="sigmas must have shape"):
        gaussian_heatmap(centers, torch.ones(3), 10, 10)


def test_batched_and_multilevel_equal_single():
    c1, s1 = torch.tensor([[3.0, 4.0], [10.5, 2.5]]), torch.tensor([1.0, 2.0])
    c2, s2 = torch.zeros(0, 2), torch.zeros(0)
    batch = gaussian_heatmaps([c1, c2], [s1, s2], 12, 14)
    assert torch.equal(batch[0], gaussian_heatmap(c1, s1, 12, 14))
    assert batch[1].abs().sum() == 0
    levels = multilevel_heatmaps(c1 * 8, s1 * 8, 96, 112, strides=[8, 16])
    assert levels[0].shape == (12, 14) and levels[1].shape == (6, 7)
    assert torch.allclose(levels[0], gaussian_heatmap(c1, s1, 12, 14))


def test_masks():
    heatmap = gaussian_heatmap(torch.tensor([[4.0, 4.0]]), [1.0], 9, 9)
    assert positive_mask("peak", heatmap).sum() == 1
    gaussian = positive_mask("gaussian", heatmap, tau=0.5)
    assert gaussian.sum() == 5  # the peak and its 4 neighbours: exp(-1/2) > 0.5 > exp(-1)
    boxes = torch.tensor([[2.0, 2.0, 6.0, 4.0]])
    expected = torch.zeros(9, 9, dtype=torch.bool)
    expected[2:4, 2:6] = True  # pixel centres (j + 0.5) inside [2, 6] x [2, 4]
    assert torch.equal(positive_mask("box", heatmap, boxes=boxes), expected)
    assert torch.equal(box_mask(boxes * 2, 9, 9, stride=2), expected)
    assigned = torch.rand(9, 9) > 0.5
    assert torch.equal(positive_mask("assigned", heatmap, assigned=assigned), assigned)
    with pytest.raises(ValueError, match="unknown mask"):
        positive_mask("other", heatmap)


def test_box_mask_against_loop():
    rng = np.random.default_rng(3)
    boxes = np.sort(rng.uniform(-5, 40, (20, 4)).reshape(20, 2, 2), axis=1).transpose(
        0, 2, 1).reshape(20, 4)[:, [0, 2, 1, 3]]
    ours = box_mask(torch.tensor(boxes), 10, 12, stride=4).numpy()
    ys, xs = (np.mgrid[0:10, 0:12] + 0.5) * 4
    expected = np.zeros((10, 12), bool)
    for x1, y1, x2, y2 in boxes:
        expected |= (xs >= x1) & (xs <= x2) & (ys >= y1) & (ys <= y2)
    np.testing.assert_array_equal(ours, expected)
