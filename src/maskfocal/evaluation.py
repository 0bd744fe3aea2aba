"""``maskfocal eval``: score a checkpoint on a dataset, per image and overall."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from maskfocal.data.readers import read_dataset
from maskfocal.engine.evaluate import predict, score
from maskfocal.engine.trainer import build_splits
from maskfocal.errors import MaskfocalError
from maskfocal.inference import Counter
from maskfocal.io import atomic_write_text


def evaluate_checkpoint(checkpoint: str | Path, format: str, root: str | None, *,
                        split: str | None = None, save_dir: str | Path | None = None,
                        device: str = "auto", progress: bool = False) -> dict[str, Any]:
    """MAE, RMSE, NAE and localisation P/R/F1 of a checkpoint at its calibrated threshold."""
    counter = Counter.from_checkpoint(checkpoint, device=device)
    if format == "synthetic":
        images = build_splits(counter.config)[2]
    else:
        if root is None:
            raise MaskfocalError(f"--root is required for --format {format}")
        images = [i for i in read_dataset(format, root, split=split).images if i.labelled]
    if not images:
        raise MaskfocalError("no labelled images to evaluate")
    predictions = predict(counter.model, images, device=counter.device,
                          decode=counter.config.decode,
                          max_side=counter.config.data.max_eval_side, progress=progress)
    metrics: dict[str, Any] = {"images": len(images), **score(predictions, counter.threshold)}
    if save_dir is not None:
        save_dir = Path(save_dir)
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["image", "true_count", "predicted_count", "error"])
        counts = predictions.counts(counter.threshold)
        for name, true, predicted in zip(predictions.names, predictions.gt_counts, counts,
                                         strict=True):
            writer.writerow([name, int(true), int(predicted), int(predicted - true)])
        atomic_write_text(save_dir / "per_image.csv", buffer.getvalue())
        atomic_write_text(save_dir / "metrics.json", json.dumps(metrics, indent=2))
    return metrics
