"""Gaussian spreads and pseudo boxes per head (``shared/MFL.md``, "Gaussian spread per head").

Pure vectorised functions over all heads of an image. Units are whatever the inputs use
(image pixels, or feature-map pixels after dividing by the stride).
"""

from __future__ import annotations

import numpy as np

from maskfocal.geometry import knn_mean_distance, pseudo_boxes

__all__ = ["BOX_RULES", "box_sigmas", "gaussian_radius", "knn_mean_distance", "point_sigmas",
           "pseudo_boxes"]


def point_sigmas(points: np.ndarray, *, k: int = 3, scale: float = 0.3, min_sigma: float = 1.0,
                 max_sigma: float = 16.0, fallback: float = 4.0) -> np.ndarray:
    """Geometry-adaptive spread for point-only heads (MCNN, Zhang et al. CVPR 2016), shape (N,).

    ``sigma_i = scale * mean distance to the k nearest heads``, clipped to
    ``[min_sigma, max_sigma]``; a lone head gets ``fallback``.
    """
    distance = knn_mean_distance(points, k)
    sigma = np.where(np.isnan(distance), fallback, scale * np.nan_to_num(distance))
    return np.clip(sigma, min_sigma, max_sigma).astype(np.float32)


def gaussian_radius(heights: np.ndarray, widths: np.ndarray,
                    min_overlap: float = 0.7) -> np.ndarray:
    """CenterNet's radius (Zhou et al. 2019, ``gaussian_radius``), vectorised over boxes.

    The largest corner shift that keeps a box of this size at IoU >= ``min_overlap`` with the
    true box, the minimum of CornerNet's three cases. Returns float radii, shape (N,).
    """
    h = np.asarray(heights, dtype=np.float64)
    w = np.asarray(widths, dtype=np.float64)
    b1 = h + w
    c1 = w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + np.sqrt(b1**2 - 4 * c1)) / 2
    b2 = 2 * (h + w)
    c2 = (1 - min_overlap) * w * h
    r2 = (b2 + np.sqrt(b2**2 - 16 * c2)) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (h + w)
    c3 = (min_overlap - 1) * w * h
    r3 = (b3 + np.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return np.minimum(np.minimum(r1, r2), r3)


BOX_RULES = ("centernet", "ttfnet")
"""Spreads from boxes: CenterNet's ``gaussian_radius``, or TTFNet's elliptical rule."""


def box_sigmas(boxes: np.ndarray, *, rule: str = "centernet", min_overlap: float = 0.7,
               alpha: float = 0.54, min_sigma: float = 0.5) -> np.ndarray:
    """Gaussian spread (N, 2) as (sigma_x, sigma_y) for heads with boxes (N, 4) x1 y1 x2 y2.

    ``rule="centernet"``: ``r = floor(gaussian_radius(h, w, min_overlap))`` as CenterNet
    truncates it, ``sigma = (2r + 1) / 6`` on both axes. ``rule="ttfnet"``: the elliptical rule
    of TTFNet (Liu et al. AAAI 2020), ``sigma_x = alpha * w / 6``, ``sigma_y = alpha * h / 6``.
    Every sigma is at least ``min_sigma``.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    if rule == "centernet":
        radius = np.floor(np.maximum(gaussian_radius(heights, widths, min_overlap), 0))
        sigma = np.repeat(((2 * radius + 1) / 6)[:, None], 2, axis=1)
    elif rule == "ttfnet":
        sigma = np.stack([alpha * widths / 6, alpha * heights / 6], axis=1)
    else:
        raise ValueError(f"unknown spread rule {rule!r}; choose 'centernet' or 'ttfnet'")
    return np.maximum(sigma, min_sigma).astype(np.float32)
