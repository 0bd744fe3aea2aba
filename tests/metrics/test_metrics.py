from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching

from maskfocal.metrics import (
    counting_errors,
    localization_report,
    localization_scores,
    match_points,
    nwpu_radii,
)


def test_counting_errors_by_hand():
    errors = counting_errors([12, 8, 3, 1], [10, 10, 0, 1])
    assert errors["mae"] == pytest.approx((2 + 2 + 3 + 0) / 4)
    assert errors["rmse"] == pytest.approx(math.sqrt((4 + 4 + 9 + 0) / 4))
    assert errors["nae"] == pytest.approx((0.2 + 0.2 + 0) / 3)  # the empty image is left out
    assert math.isnan(counting_errors([1], [0])["nae"])
    with pytest.raises(ValueError):
        counting_errors([1, 2], [1])


def reference_cardinality(pred, gt, radius):
    radius = np.broadcast_to(radius, (len(gt),))
    distance = np.linalg.norm(pred[:, None] - gt[None], axis=-1)
    graph = csr_matrix((distance <= radius[None]).astype(np.int8))
    matching = maximum_bipartite_matching(graph, perm_type="column")
    return int((matching >= 0).sum())


@pytest.mark.parametrize("seed", range(25))
def test_matching_is_maximum(seed):
    rng = np.random.default_rng(seed)
    pred = rng.uniform(0, 30, (int(rng.integers(0, 40)), 2))
    gt = rng.uniform(0, 30, (int(rng.integers(1, 40)), 2))
    radius = rng.uniform(1, 6, len(gt)) if seed % 2 else 4.0
    tp, fp, fn = match_points(pred, gt, radius)
    expected = reference_cardinality(pred, gt, np.asarray(radius)) if len(pred) else 0
    assert tp == expected
    assert tp + fp == len(pred) and tp + fn == len(gt)


def test_any_pairing_counts_not_greedy():
    # Greedy nearest-first pairs pred 0 with gt 0 and leaves gt 1 unmatched; the maximum matching
    # pairs pred 0 with gt 1 and pred 1 with gt 0.
    pred = np.array([[0.0, 0.0], [-3.9, 0.0]])
    gt = np.array([[-0.5, 0.0], [3.5, 0.0]])
    assert match_points(pred, gt, 4.0) == (2, 0, 0)


def test_nwpu_radii_and_report():
    boxes = np.array([[0, 0, 6, 8]])
    radii = nwpu_radii(boxes)
    assert radii["small"].tolist() == [3.0] and radii["large"].tolist() == [5.0]
    pred, gt = [np.array([[3.0, 8.0]])], [np.array([[3.0, 4.0]])]
    report = localization_report(pred, gt, [boxes])
    assert report["f1_sigma4"] == 1.0 and report["f1_small"] == 0.0 and report["f1_large"] == 1.0
    scores = localization_scores([np.zeros((0, 2))], [np.zeros((2, 2))], 4.0)
    assert scores["recall"] == 0.0 and scores["fn"] == 2
