"""``maskfocal eval``: score a checkpoint on a dataset, per image and overall."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from maskfocal.data.readers import read_dataset
from maskfocal.data.splits import build_splits
from maskfocal.engine.evaluate import predict, score
from maskfocal.errors import MaskfocalError
from maskfocal.inference import Counter
from maskfocal.io import OutputFolder, atomic_write_text, dumps_json

OUTPUTS = ("per_image.csv", "metrics.json")


SYNTHETIC_SPLITS = ("train", "val", "test")


def evaluate_checkpoint(checkpoint: str | Path, format: str, root: str | None, *,
                        split: str | None = None, save_dir: str | Path | None = None,
                        overwrite: bool = False, device: str = "auto",
                        progress: bool = False) -> dict[str, Any]:
    """MAE, RMSE, NAE and localisation P/R/F1 of a checkpoint at its calibrated threshold.

    ``format="synthetic"`` scores a split (default ``test``) of the scenes the checkpoint's
    config draws. ``save_dir`` gets ``per_image.csv`` and ``metrics.json``; files there that
    ``maskfocal eval`` did not write are replaced only with ``overwrite``. Every option is
    checked before the model is loaded.
    """
    if format == "synthetic":
        if root is not None:
            raise MaskfocalError("--root is not used with --format synthetic (the scenes come "
                                 "from the checkpoint's config)")
        if split not in (None, *SYNTHETIC_SPLITS):
            raise MaskfocalError(f"--split {split!r}: synthetic splits are "
                                 f"{', '.join(SYNTHETIC_SPLITS)}")
    elif root is None:
        raise MaskfocalError(f"--root is required for --format {format}")
    outputs = None
    if save_dir is not None:
        outputs = OutputFolder(save_dir, "eval", option="--save-dir", overwrite=overwrite)
        for name in OUTPUTS:
            outputs.check(name)
    counter = Counter.from_checkpoint(checkpoint, device=device)
    if format == "synthetic":
        images = build_splits(counter.config.data, seed=counter.config.train.seed)[
            SYNTHETIC_SPLITS.index(split or "test")]
    else:
        images = [i for i in read_dataset(format, root, split=split).images if i.labelled]
    if not images:
        raise MaskfocalError("no labelled images to evaluate")
    predictions = predict(counter.family, counter.model, images, device=counter.device,
                          max_side=counter.config.data.max_eval_side,
                          scale=counter.config.decode.input_scale, progress=progress)
    metrics: dict[str, Any] = {"images": len(images), **score(predictions, counter.threshold)}
    if outputs is not None:
        per_image, metrics_json = outputs.claim_all(OUTPUTS)
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["image", "true_count", "predicted_count", "error"])
        counts = predictions.counts(counter.threshold)
        for name, true, predicted in zip(predictions.names, predictions.gt_counts, counts,
                                         strict=True):
            writer.writerow([name, int(true), int(predicted), int(predicted - true)])
        atomic_write_text(per_image, buffer.getvalue())
        atomic_write_text(metrics_json, dumps_json(metrics, indent=2))
    return metrics
