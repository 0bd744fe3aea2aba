"""Target encoding: Gaussian spreads, heatmaps, positive masks. Pure functions, no state."""

from .heatmaps import (
                       MASK_KINDS,
                       box_mask,
                       gaussian_heatmap,
                       gaussian_heatmaps,
                       multilevel_heatmaps,
                       positive_mask,
)
from .spreads import box_sigmas, gaussian_radius, knn_mean_distance, point_sigmas, pseudo_boxes

__all__ = ["MASK_KINDS", "box_mask", "box_sigmas", "gaussian_heatmap", "gaussian_heatmaps",
           "gaussian_radius", "knn_mean_distance", "multilevel_heatmaps", "point_sigmas",
           "positive_mask", "pseudo_boxes"]
