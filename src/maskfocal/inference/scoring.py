"""Scoring predictions: every candidate head of a set of images, the threshold that counts
best on them, and the errors at a threshold."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from maskfocal.decode import SCORE_FLOOR, Detections
from maskfocal.metrics import counting_errors, localization_report

CALIBRATION_GRID = np.round(np.arange(SCORE_FLOOR, 0.951, 0.01), 4)


@dataclass
class Predictions:
    """Every candidate head (score >= the floor) of every image, in original pixels."""

    detections: list[Detections]
    gt_points: list[np.ndarray]
    gt_boxes: list[np.ndarray | None]
    names: list[str] = field(default_factory=list)

    @property
    def gt_counts(self) -> np.ndarray:
        return np.array([len(p) for p in self.gt_points], dtype=np.float64)

    def counts(self, threshold: float) -> np.ndarray:
        return np.array([int((d.scores >= threshold).sum()) for d in self.detections],
                        dtype=np.float64)


def calibrate_threshold(predictions: Predictions,
                        grid: np.ndarray = CALIBRATION_GRID) -> tuple[float, float]:
    """(threshold, MAE) with the lowest MAE over ``grid``; ties go to the middle of the run."""
    gt = predictions.gt_counts
    maes = np.array([np.abs(predictions.counts(t) - gt).mean() for t in grid])
    best = np.flatnonzero(maes == maes.min())
    choice = best[len(best) // 2]
    return float(grid[choice]), float(maes[choice])


def per_source(predictions: Predictions, threshold: float, sources: Sequence[str]) -> dict:
    """Each source's MAE, mean count and images at ``threshold``, and their mean relative MAE
    (``val_relative_mae``: each source's MAE over its mean count, averaged, so that every
    source weighs the same whatever its crowd sizes; a pooled MAE over ShanghaiTech A and
    SCUT-HEAD would be ShanghaiTech A's alone)."""
    counts, truths = predictions.counts(threshold), predictions.gt_counts
    labels = np.array(sources)
    result = {}
    for source in dict.fromkeys(sources):
        chosen = labels == source
        error = np.abs(counts[chosen] - truths[chosen])
        result[source] = {"images": int(chosen.sum()), "mae": round(float(error.mean()), 3),
                          "mean_count": round(float(truths[chosen].mean()), 2)}
    relative = [r["mae"] / max(r["mean_count"], 1.0) for r in result.values()]
    return {"per_source": result, "val_relative_mae": round(float(np.mean(relative)), 4)}


def balanced_threshold(predictions: Predictions, sources: Sequence[str],
                       grid: np.ndarray = CALIBRATION_GRID) -> tuple[float, float]:
    """(threshold, mean relative MAE) with the lowest mean relative MAE over sources
    (:func:`per_source`) over ``grid``; ties go to the middle of the run. With one source it
    picks what :func:`calibrate_threshold` picks."""
    errors = np.array([per_source(predictions, t, sources)["val_relative_mae"] for t in grid])
    best = np.flatnonzero(errors == errors.min())
    choice = best[len(best) // 2]
    return float(grid[choice]), float(errors[choice])


def score(predictions: Predictions, threshold: float) -> dict[str, float]:
    """MAE, RMSE, NAE and localisation P/R/F1 (sigma 4 and 8 px; NWPU radii with boxes)."""
    counts = predictions.counts(threshold)
    metrics = counting_errors(counts, predictions.gt_counts)
    kept = [d.above(threshold) for d in predictions.detections]
    metrics.update(localization_report([d.points.numpy() for d in kept], predictions.gt_points,
                                       predictions.gt_boxes))
    metrics["threshold"] = threshold
    return metrics
