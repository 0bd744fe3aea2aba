"""Metrics: counting errors, localisation precision/recall/F1."""

from .counting import counting_errors
from .localization import localization_report, localization_scores, match_points, nwpu_radii

__all__ = ["counting_errors", "localization_report", "localization_scores", "match_points",
           "nwpu_radii"]
