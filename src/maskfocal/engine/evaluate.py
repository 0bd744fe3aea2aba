"""Evaluation: run a model over whole images, decode, calibrate the threshold, score."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from maskfocal.data.training import EvalSet, pad_batch
from maskfocal.decode import SCORE_FLOOR, Detections
from maskfocal.families import DetectorFamily
from maskfocal.metrics import counting_errors, localization_report
from maskfocal.structures import AnnotatedImage

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


@torch.no_grad()
def detect_batch(family: DetectorFamily, model: nn.Module, images: Sequence[Tensor], *,
                 threshold: float, device: torch.device,
                 runner: Callable[[Tensor], object] | None = None, heatmaps: bool = False
                 ) -> list[tuple[Detections, np.ndarray | None]]:
    """Heads of each (3, h, w) image (in its pixels) and, with ``heatmaps``, its heatmap.

    The one prediction path of evaluation, training's validation and :class:`Counter`: pad
    to a multiple of 32, run ``model`` (or ``runner``, an ONNX session, on the padded batch),
    decode with the family.
    """
    batch = pad_batch(list(images), min_side=family.min_side).to(device)
    outputs = runner(batch) if runner is not None else family.forward(model, batch)
    sizes = [tuple(image.shape[-2:]) for image in images]
    detections = family.decode(model, outputs, sizes, threshold=threshold)
    maps = family.heatmaps(outputs, sizes) if heatmaps else [None] * len(sizes)
    return list(zip(detections, maps, strict=True))


@torch.no_grad()
def predict(family: DetectorFamily, model: nn.Module, images: Sequence[AnnotatedImage], *,
            device: torch.device, max_side: int = 2048, scale: float = 1.0,
            floor: float = SCORE_FLOOR, workers: int = 0, progress: bool = False
            ) -> Predictions:
    """Decode every image at the ``floor`` threshold, so any higher threshold is a filter.

    Images are scaled by ``scale`` and down to ``max_side`` (:func:`fit_image`); heads are
    scaled back."""
    from tqdm import tqdm

    model.eval()
    loader = DataLoader(EvalSet(images, max_side, scale), batch_size=None,
                        num_workers=workers)
    detections = []
    for image, scale in tqdm(loader, desc="evaluating", unit="img", disable=not progress,
                             leave=False):
        (found, _), = detect_batch(family, model, [image], threshold=floor, device=device)
        detections.append(found.scaled(1 / scale))
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
