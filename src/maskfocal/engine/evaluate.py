"""Evaluation: run a model over whole images, decode, calibrate the threshold, score."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from maskfocal.config import DecodeConfig
from maskfocal.data.training import EvalSet, collate
from maskfocal.decode import Detections
from maskfocal.metrics import counting_errors, localization_report
from maskfocal.structures import AnnotatedImage

from .tasks import detect

CALIBRATION_FLOOR = 0.05  # lowest threshold considered; peaks below it are never counted
CALIBRATION_GRID = np.round(np.arange(CALIBRATION_FLOOR, 0.951, 0.01), 4)


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


@torch.no_grad()
def predict(model: nn.Module, images: Sequence[AnnotatedImage], *, device: torch.device,
            decode: DecodeConfig, max_side: int = 2048, floor: float = CALIBRATION_FLOOR,
            workers: int = 0, progress: bool = False) -> Predictions:
    """Decode every image at the ``floor`` threshold, so any higher threshold is a filter."""
    from tqdm import tqdm

    model.eval()
    loader = DataLoader(EvalSet(images, max_side), batch_size=1, num_workers=workers,
                        collate_fn=collate)
    detections = []
    for batch, samples in tqdm(loader, desc="evaluating", unit="img", disable=not progress,
                               leave=False):
        found = detect(model, batch.to(device), [s.valid_size for s in samples],
                       threshold=floor, decode=decode)
        detections += [d.scaled(1 / s.scale) for d, s in zip(found, samples, strict=True)]
    return Predictions(
        detections=[Detections(d.points.cpu(), d.scores.cpu(),
                               None if d.boxes is None else d.boxes.cpu()) for d in detections],
        gt_points=[image.points for image in images],
        gt_boxes=[image.boxes for image in images],
        names=[image.name for image in images])


def calibrate_threshold(predictions: Predictions,
                        grid: np.ndarray = CALIBRATION_GRID) -> tuple[float, float]:
    """(threshold, MAE) with the lowest MAE over ``grid``; ties go to the middle of the run."""
    gt = predictions.gt_counts
    maes = np.array([np.abs(predictions.counts(t) - gt).mean() for t in grid])
    best = np.flatnonzero(maes == maes.min())
    choice = best[len(best) // 2]
    return float(grid[choice]), float(maes[choice])


def score(predictions: Predictions, threshold: float) -> dict[str, float]:
    """MAE, RMSE, NAE and localisation P/R/F1 (sigma 4 and 8 px; NWPU radii with boxes)."""
    counts = predictions.counts(threshold)
    metrics = counting_errors(counts, predictions.gt_counts)
    kept = [d.above(threshold) for d in predictions.detections]
    metrics.update(localization_report([d.points.numpy() for d in kept], predictions.gt_points,
                                       predictions.gt_boxes))
    metrics["threshold"] = threshold
    return metrics
