"""Target encoding: Gaussian spreads, heatmaps, positive masks. Pure functions, no state."""

from .spreads import box_sigmas, gaussian_radius, knn_mean_distance, point_sigmas, pseudo_boxes

__all__ = ["box_sigmas", "gaussian_radius", "knn_mean_distance", "point_sigmas", "pseudo_boxes"]
