"""``maskfocal eval``: score a checkpoint on a dataset, per image and overall."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from maskfocal.data.readers import read_dataset
from maskfocal.data.splits import build_splits
from maskfocal.errors import MaskfocalError
from maskfocal.fileio import OutputFolder, atomic_write_text, csv_safe, dumps_json
from maskfocal.inference import Predictor, score

OUTPUTS = ("per_image.csv", "metrics.json")
SUBMISSIONS = {"nwpu": ("nwpu_counts.txt", "nwpu_loc.txt")}
"""The files ``--submit`` writes, by leaderboard."""

PROTOCOLS = ("maskfocal", "nwpu-official", "jhu")
"""``maskfocal``: float points and radii (every dataset). ``nwpu-official``: the NWPU-Crowd
leaderboard's integer protocol and breakdowns (:mod:`maskfocal.metrics.protocols`), added to
the report. ``jhu``: JHU-Crowd++ errors per density level and weather, added to the report."""

SYNTHETIC_SPLITS = ("train", "val", "test")


def default_split(images) -> list:
    """Without ``--split``: the test split where the dataset has one (a dataset's train and
    test images may share names, and scoring them together mixes the two), else every image.
    """
    import sys

    splits = sorted({str(image.meta.get("split")) for image in images
                     if image.meta.get("split") is not None})
    if "test" in splits and len(splits) > 1:
        print(f"scoring the test split (found: {', '.join(splits)}; --split chooses another)",
              file=sys.stderr)
        return [image for image in images if image.meta.get("split") == "test"]
    return images


def image_ids(images) -> list[int]:
    """NWPU ids: each image's file name when that is a number, else its position (from 1)."""
    stems = [Path(str(image.image_path)).stem if image.image_path else "" for image in images]
    ids = [int(stem) if stem.isdigit() else k + 1 for k, stem in enumerate(stems)]
    if len(set(ids)) != len(ids):
        raise MaskfocalError("NWPU files need one numeric id per image (file names like "
                             "3110.jpg); these images repeat ids")
    return ids


def nwpu_truths(images, gt_loc: str | Path | None = None) -> dict:
    """The integer ground truth of ``images`` by id: from NWPU's ``val_gt_loc.txt`` when
    given, else from their boxes (:func:`~maskfocal.metrics.protocols.nwpu_truth_from_boxes`)."""
    from maskfocal.metrics.protocols import nwpu_truth_from_boxes, read_nwpu_gt

    ids = image_ids(images)
    if gt_loc is not None:
        truths = read_nwpu_gt(gt_loc)
        missing = [i for i in ids if i not in truths]
        if missing:
            raise MaskfocalError(f"{gt_loc}: no line for image ids {missing[:5]}")
    else:
        unboxed = [image.name for image in images if image.boxes is None]
        if unboxed:
            raise MaskfocalError(f"nwpu-official needs head boxes (for the radii) or --gt-loc; "
                                 f"{len(unboxed)} images have none, e.g. {unboxed[0]}")
        truths = {i: nwpu_truth_from_boxes(image.boxes)
                  for i, image in zip(ids, images, strict=True)}
    return {i: truths[i] for i in ids}


def protocol_report(protocol: str, images, predictions, threshold: float,
                    truths: dict | None = None) -> dict[str, Any]:
    """The extra figures of ``nwpu-official`` (``truths`` from :func:`nwpu_truths`) or
    ``jhu`` for predictions of ``images``."""
    from maskfocal.metrics.protocols import (
        jhu_report,
        nwpu_counting,
        nwpu_localization,
        round_points,
    )

    counts = predictions.counts(threshold)
    if protocol == "jhu":
        return {"jhu": jhu_report(counts, predictions.gt_counts,
                                  weather=[i.meta.get("weather") for i in images])}
    ids = list(truths)
    points = {i: round_points(d.above(threshold).points.numpy())
              for i, d in zip(ids, predictions.detections, strict=True)}
    levels = [image.meta.get("scene_level") for image in images]
    illuminations = [image.meta.get("illumination") for image in images]
    labelled = all(v is not None for v in (*levels, *illuminations))
    counting = nwpu_counting(
        {i: float(len(points[i])) for i in ids}, {i: float(truths[i].count) for i in ids},
        levels=dict(zip(ids, levels, strict=True)) if labelled else None,
        illuminations=dict(zip(ids, illuminations, strict=True)) if labelled else None)
    return {"nwpu_official": {"localization": nwpu_localization(points, truths, ids),
                              "counting": counting}}


def write_submission(checkpoint: str | Path, leaderboard: str, format: str, root: str, *,
                     split: str | None = "test", out: str | Path, overwrite: bool = False,
                     device: str = "auto", progress: bool = False,
                     backend: str | None = None) -> dict[str, Any]:
    """Count every image of ``split`` (labelled or not) and write the leaderboard's files:
    NWPU-Crowd's counting file (``id count``) and localisation file (``id n x1 y1 ...``,
    integers), sorted by id. Returns ``{"images", "files"}``."""
    from maskfocal.metrics.protocols import write_nwpu_counts, write_nwpu_loc

    if leaderboard not in SUBMISSIONS:
        raise MaskfocalError(f"--submit {leaderboard!r}: choose one of "
                             f"{', '.join(SUBMISSIONS)}")
    folder = OutputFolder(out, "eval", option="--out", overwrite=overwrite)
    for name in SUBMISSIONS[leaderboard]:
        folder.check(name)
    images = read_dataset(format, root, split=split).images
    if not images:
        raise MaskfocalError(f"{root}: no images in split {split!r}")
    predictor = Predictor.from_checkpoint(checkpoint, device=device, backend=backend)
    predictions = predictor.candidates(images, progress=progress)
    ids = image_ids(images)
    points = {i: d.above(predictor.threshold).points.numpy()
              for i, d in zip(ids, predictions.detections, strict=True)}
    counts_path, loc_path = folder.claim_all(SUBMISSIONS[leaderboard])
    write_nwpu_counts(counts_path, {i: len(p) for i, p in points.items()})
    write_nwpu_loc(loc_path, points)
    return {"images": len(images), "files": [str(counts_path), str(loc_path)]}


def evaluate_checkpoint(checkpoint: str | Path, format: str, root: str | None, *,
                        split: str | None = None, save_dir: str | Path | None = None,
                        overwrite: bool = False, device: str = "auto",
                        progress: bool = False, protocol: str = "maskfocal",
                        gt_loc: str | Path | None = None, **options) -> dict[str, Any]:
    """MAE, RMSE, NAE and localisation P/R/F1 of a checkpoint at its calibrated threshold.

    ``format="synthetic"`` scores a split (default ``test``) of the scenes the checkpoint's
    config draws. ``save_dir`` gets ``per_image.csv`` and ``metrics.json``; files there that
    ``maskfocal eval`` did not write are replaced only with ``overwrite``. ``protocol`` adds a
    leaderboard's figures (:data:`PROTOCOLS`); ``gt_loc`` is NWPU's official ground-truth
    localisation file for ``nwpu-official``. ``options``: the inference options, as
    :meth:`maskfocal.Counter.from_checkpoint` takes them (``threshold``, ``scale``,
    ``max_eval_side``, ``tile_above`` ...; default: the model's own), so that ``eval`` scores
    exactly what ``count`` counts. Every option is checked before the model is loaded.
    """
    if protocol not in PROTOCOLS:
        raise MaskfocalError(f"--protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    if gt_loc is not None and protocol != "nwpu-official":
        raise MaskfocalError("--gt-loc is for --protocol nwpu-official")
    if gt_loc is not None and not Path(gt_loc).is_file():
        raise MaskfocalError(f"{gt_loc}: no such file")
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
    predictor = Predictor.from_checkpoint(checkpoint, device=device, **options)
    threshold = predictor.threshold
    if format == "synthetic":
        images = build_splits(predictor.config.data, seed=predictor.config.train.seed)[
            SYNTHETIC_SPLITS.index(split or "test")]
    else:
        images = [i for i in read_dataset(format, root, split=split).images if i.labelled]
        if split is None:
            images = default_split(images)
    if not images:
        raise MaskfocalError("no labelled images to evaluate")
    truths = nwpu_truths(images, gt_loc) if protocol == "nwpu-official" else None
    predictions = predictor.candidates(images, progress=progress)
    metrics: dict[str, Any] = {"images": len(images), **score(predictions, threshold)}
    if protocol != "maskfocal":
        metrics.update(protocol_report(protocol, images, predictions, threshold, truths))
    if outputs is not None:
        per_image, metrics_json = outputs.claim_all(OUTPUTS)
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["image", "split", "true_count", "predicted_count", "error"])
        counts = predictions.counts(threshold)
        for image, true, predicted in zip(images, predictions.gt_counts, counts, strict=True):
            writer.writerow([csv_safe(image.name), image.meta.get("split", ""), int(true),
                             int(predicted), int(predicted - true)])
        atomic_write_text(per_image, buffer.getvalue())
        atomic_write_text(metrics_json, dumps_json(metrics, indent=2))
    return metrics
