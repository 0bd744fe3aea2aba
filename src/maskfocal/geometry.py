"""Geometry of head points shared by data and targets: neighbour distances and pseudo boxes.

Neutral ground: ``data/`` gives point-only heads pseudo boxes and ``targets/`` spreads them, and
neither imports the other.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["knn_mean_distance", "pseudo_boxes"]


def knn_mean_distance(points: np.ndarray, k: int = 3) -> np.ndarray:
    """Mean distance from each point to its ``k`` nearest other points, shape (N,).

    With fewer than ``k + 1`` points the available neighbours are used; a lone point (or an
    empty set) gives NaN, for the caller to replace with its fallback.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(points) < 2:
        return np.full(len(points), np.nan)
    neighbours = min(k, len(points) - 1)
    distances, _ = cKDTree(points).query(points, k=neighbours + 1)
    return distances[:, 1:].mean(axis=1)  # column 0 is the point itself



def pseudo_boxes(points: np.ndarray, *, k: int = 3, min_size: float = 4.0,
                 max_size: float = 96.0, fallback: float = 16.0) -> np.ndarray:
    """Square pseudo boxes (N, 4) x1 y1 x2 y2 for point-only heads.

    The side of head i is its mean distance to the ``k`` nearest heads, clipped to
    ``[min_size, max_size]``; a lone head gets ``fallback``.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    distance = knn_mean_distance(points, k)
    side = np.clip(np.where(np.isnan(distance), fallback, np.nan_to_num(distance)),
                   min_size, max_size)
    half = side[:, None] / 2
    return np.concatenate([points - half, points + half], axis=1).astype(np.float32)
