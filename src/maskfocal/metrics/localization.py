"""Localisation: one-to-one matching of predicted to true heads within a radius.

As in the NWPU-Crowd protocol (Wang et al., TPAMI 2020), any pairing within the radius counts:
the number of true positives is a maximum-cardinality bipartite matching, not a greedy
nearest-first pass. Among the maximum matchings this one also has the least total distance:
each connected component of the "within radius" graph is solved with the Hungarian algorithm
(``scipy.optimize.linear_sum_assignment``), where a pair out of range costs more than all
in-range pairs together.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

__all__ = ["localization_report", "localization_scores", "match_points", "nwpu_radii"]


def candidate_pairs(pred: np.ndarray, gt: np.ndarray, radius: np.ndarray):
    """(pred index, gt index, distance) of every pair within the true head's radius.

    Distance <= radius exactly, with the distance computed as scipy's ``distance_matrix`` does
    (``(dx^2 + dy^2) ** 0.5``): the KD-tree is asked a hair wider, because its own test can
    drop a point lying on the circle when the radius is a float (e.g. sqrt(13)).
    """
    tree = cKDTree(pred)
    neighbours = tree.query_ball_point(gt, r=radius * (1 + 1e-9) + 1e-9)
    gt_index = np.repeat(np.arange(len(gt)), [len(n) for n in neighbours])
    pred_index = np.fromiter((j for n in neighbours for j in n), dtype=np.int64,
                             count=len(gt_index))
    distance = np.sum((pred[pred_index] - gt[gt_index]) ** 2, axis=1) ** 0.5
    inside = distance <= radius[gt_index]
    return pred_index[inside], gt_index[inside], distance[inside]


def match_points(pred: np.ndarray | Sequence, gt: np.ndarray | Sequence,
                 radius: float | np.ndarray | Sequence) -> tuple[int, int, int]:
    """(tp, fp, fn) of a maximum one-to-one matching of predicted to true points.

    Args:
        pred: (P, 2) predicted points x, y.
        gt: (G, 2) true points.
        radius: one number, or (G,) one per true head; a pair matches when its distance is at
            most the true head's radius.
    """
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 2)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 2)
    radius = np.broadcast_to(np.asarray(radius, dtype=np.float64), (len(gt),))
    if len(pred) == 0 or len(gt) == 0:
        return 0, len(pred), len(gt)
    pred_index, gt_index, distance = candidate_pairs(pred, gt, radius)
    if len(pred_index) == 0:
        return 0, len(pred), len(gt)
    # Components of the bipartite graph: nodes 0..P-1 are predictions, P..P+G-1 true heads.
    nodes = len(pred) + len(gt)
    graph = coo_matrix((np.ones(len(pred_index)), (pred_index, len(pred) + gt_index)),
                       shape=(nodes, nodes))
    _, component = connected_components(graph, directed=False)
    pair_component = component[pred_index]
    order = np.argsort(pair_component, kind="stable")
    bounds = np.flatnonzero(np.diff(pair_component[order])) + 1
    matched = 0
    for pairs in np.split(order, bounds):  # one assignment per cluster of nearby heads
        if len(pairs) == 1:
            matched += 1
            continue
        rows, row_of = np.unique(pred_index[pairs], return_inverse=True)
        cols, col_of = np.unique(gt_index[pairs], return_inverse=True)
        out_of_range = distance[pairs].sum() + 1.0
        cost = np.full((len(rows), len(cols)), out_of_range)
        cost[row_of, col_of] = distance[pairs]
        r, c = linear_sum_assignment(cost)
        matched += int((cost[r, c] < out_of_range).sum())
    return matched, len(pred) - matched, len(gt) - matched


def nwpu_radii(boxes: np.ndarray | Sequence) -> dict[str, np.ndarray]:
    """Per-head radii of the NWPU-Crowd protocol from boxes (N, 4) x1 y1 x2 y2.

    ``"small"``: half the short side; ``"large"``: half the diagonal, as floats (the
    leaderboard's integer radii: :mod:`maskfocal.metrics.protocols`).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return {"small": np.minimum(width, height) / 2,
            "large": (width * width + height * height) ** 0.5 / 2}


def localization_scores(pred_points: Sequence[np.ndarray], gt_points: Sequence[np.ndarray],
                        radius: float | Sequence[np.ndarray]) -> dict[str, float]:
    """Precision, recall and F1 pooled over a split (sums of tp, fp, fn over its images).

    ``radius`` is one number for every head (sigma = 4 or 8 px), or one (G_i,) array per image.
    """
    if len(pred_points) != len(gt_points):
        raise ValueError(f"{len(pred_points)} predictions for {len(gt_points)} images")
    radii = radius if isinstance(radius, Sequence) else [radius] * len(gt_points)
    tp = fp = fn = 0
    for pred, gt, r in zip(pred_points, gt_points, radii, strict=True):
        a, b, c = match_points(pred, gt, r)
        tp, fp, fn = tp + a, fp + b, fn + c
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


def localization_report(pred_points: Sequence[np.ndarray], gt_points: Sequence[np.ndarray],
                        gt_boxes: Sequence[np.ndarray | None] | None = None,
                        sigmas: Sequence[float] = (4.0, 8.0)) -> dict[str, float]:
    """Pooled precision/recall/F1 at each fixed sigma (``precision_sigma4``, ``f1_sigma8``...)
    and, when every image has boxes, with NWPU per-head radii (``f1_small``, ``f1_large``)."""
    report: dict[str, float] = {}
    for sigma in sigmas:
        scores = localization_scores(pred_points, gt_points, float(sigma))
        for key in ("precision", "recall", "f1"):
            report[f"{key}_sigma{sigma:g}"] = scores[key]
    if gt_boxes is not None and all(b is not None for b in gt_boxes):
        radii = [nwpu_radii(b) for b in gt_boxes]
        for name in ("small", "large"):
            scores = localization_scores(pred_points, gt_points, [r[name] for r in radii])
            for key in ("precision", "recall", "f1"):
                report[f"{key}_{name}"] = scores[key]
    return report
