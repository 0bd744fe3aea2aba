from __future__ import annotations

import numpy as np
import pytest

from maskfocal.targets import (
    box_sigmas,
    gaussian_radius,
    knn_mean_distance,
    point_sigmas,
    pseudo_boxes,
)


def centernet_gaussian_radius(det_size, min_overlap=0.7):
    """CenterNet's own code (src/lib/utils/image.py), one box at a time."""
    height, width = det_size
    a1 = 1
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + np.sqrt(b1**2 - 4 * a1 * c1)) / 2
    a2 = 4
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + np.sqrt(b2**2 - 4 * a2 * c2)) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + np.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def test_gaussian_radius_matches_centernet():
    rng = np.random.default_rng(0)
    heights, widths = rng.uniform(1, 80, 50), rng.uniform(1, 80, 50)
    expected = [centernet_gaussian_radius((h, w)) for h, w in zip(heights, widths, strict=True)]
    np.testing.assert_allclose(gaussian_radius(heights, widths), expected, rtol=1e-12)


def test_box_sigmas_rules():
    boxes = np.array([[0, 0, 12, 24], [5, 5, 5.5, 5.5]])
    centernet = box_sigmas(boxes)
    radius = np.floor(centernet_gaussian_radius((24, 12)))
    assert centernet[0].tolist() == pytest.approx([(2 * radius + 1) / 6] * 2)
    assert centernet[1].tolist() == [0.5, 0.5]  # floor of the minimum spread
    ttfnet = box_sigmas(boxes, rule="ttfnet")
    assert ttfnet[0].tolist() == pytest.approx([0.54 * 12 / 6, 0.54 * 24 / 6])
    with pytest.raises(ValueError, match="unknown spread rule"):
        box_sigmas(boxes, rule="other")


def test_knn_distance_against_brute_force():
    points = np.random.default_rng(1).uniform(0, 100, (40, 2))
    pairwise = np.linalg.norm(points[:, None] - points[None], axis=-1)
    expected = np.sort(pairwise, axis=1)[:, 1:4].mean(axis=1)
    np.testing.assert_allclose(knn_mean_distance(points, k=3), expected)


def test_point_sigmas_and_pseudo_boxes_edge_cases():
    assert point_sigmas(np.zeros((0, 2))).shape == (0,)
    assert pseudo_boxes(np.zeros((0, 2))).shape == (0, 4)
    lone = point_sigmas(np.array([[3.0, 4.0]]), fallback=4.0)
    assert lone.tolist() == [4.0]
    pair = point_sigmas(np.array([[0.0, 0.0], [10.0, 0.0]]), k=3, scale=0.3)
    np.testing.assert_allclose(pair, [3.0, 3.0])  # fewer than k neighbours: use those there
    clipped = point_sigmas(np.array([[0.0, 0.0], [1000.0, 0.0]]), max_sigma=16)
    assert clipped.tolist() == [16.0, 16.0]
    boxes = pseudo_boxes(np.array([[10.0, 10.0], [20.0, 10.0]]), min_size=4, max_size=96)
    np.testing.assert_allclose(boxes[0], [5, 5, 15, 15])
    alone = pseudo_boxes(np.array([[50.0, 50.0]]), fallback=16)
    np.testing.assert_allclose(alone[0], [42, 42, 58, 58])


def test_spread_source_points_ignores_boxes():
    from maskfocal.targets.centernet import SpreadRule, head_sigmas

    points = np.array([[10.0, 10.0], [18.0, 10.0], [10.0, 40.0]])
    boxes = np.concatenate([points - 20, points + 20], axis=1)
    from_boxes = head_sigmas(points, boxes, True, 4, SpreadRule())
    from_points = head_sigmas(points, boxes, True, 4, SpreadRule(spread_source="points"))
    np.testing.assert_allclose(from_points, head_sigmas(points, None, False, 4, SpreadRule()))
    assert not np.allclose(from_boxes, from_points)
