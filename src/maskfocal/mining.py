"""``maskfocal mine``: the false heads a model finds on its training images (hard negatives).

The model counts every training image of a config exactly as ``maskfocal count`` would (its
input scale and threshold); each head it finds at least ``min_distance`` px from every
annotated head (and, where the data has head boxes, outside each box grown by half) is a
false head: tree foliage, roof edges, gravel, clutter. The validation images the config holds
out are never mined, so choosing a model on them stays honest. Mining only far from annotated
heads is deliberate: dense annotations miss some real heads, and a detection beside an
annotated head may be one of those; teaching those as background would teach the model to
miss heads. The file is :mod:`maskfocal.data.hard_negatives`'s; ``data.hard_negatives``
names it in the next run's config.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

from maskfocal.data.hard_negatives import FORMAT, far_from_heads
from maskfocal.data.splits import build_splits
from maskfocal.fileio import atomic_write_text, dumps_json, writable_file
from maskfocal.inference import Predictor

MIN_DISTANCE = 32.0
"""Pixels (of the image) between a false head and the nearest annotated head: about the head
size of ShanghaiTech's nearer streets, so a detection on a head the annotators marked a little
off centre, or on its shoulders, is not taken for clutter."""


def mine(predictor: Predictor, config: Any, *, threshold: float | None = None,
         min_distance: float = MIN_DISTANCE, progress: bool = True) -> dict[str, Any]:
    """The hard-negatives document of ``predictor`` on ``config``'s training images (its
    ``data`` section and seed: the same images, without the ones held out for validation)."""
    train, _, _ = build_splits(config.data, seed=config.train.seed)
    images = [image for image in train if image.image_path is not None]  # not the textures
    threshold = predictor.threshold if threshold is None else threshold
    predictions = predictor.candidates(images, floor=threshold, progress=progress)
    found: dict[str, list[list[float]]] = {}
    total = 0
    for image, detections in zip(images, predictions.detections, strict=True):
        kept = detections.above(threshold)
        points, scores = kept.points.numpy(), kept.scores.numpy()
        far = far_from_heads(points, image, min_distance)
        if far.any():
            found[str(Path(image.image_path).resolve())] = [
                [round(float(x), 1), round(float(y), 1), round(float(s), 3)]
                for (x, y), s in zip(points[far], scores[far], strict=True)]
            total += int(far.sum())
    if progress:
        print(f"{total} false heads on {len(found)} of {len(images)} training images "
              f"(threshold {threshold:.2f}, at least {min_distance:g} px from every annotated "
              "head)", file=sys.stderr)
    return {"format": FORMAT, "threshold": threshold, "min_distance": min_distance,
            "input_scale": predictor.input_scale, "images_mined": len(images),
            "false_heads": total, "images": found}


def mine_to_file(checkpoint: str | Path, out: str | Path, *, config_path: str | None = None,
                 overrides: list[str] | None = None, threshold: float | None = None,
                 min_distance: float = MIN_DISTANCE, device: str = "auto",
                 overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """:func:`mine` with the model of ``checkpoint`` (a file or a shipped model's name) on the
    training images of ``config_path`` (default: the checkpoint's own config), written
    atomically to ``out`` (an existing file only with ``overwrite``); returns the document
    without its positions."""
    from maskfocal.config import load_config
    from maskfocal.errors import MaskfocalError
    from maskfocal.pretrained import checkpoint_or_shipped

    out = writable_file(out, "--out")  # before the model counts a thousand photos
    if out.exists() and not overwrite:
        raise MaskfocalError(f"{out} exists: --overwrite replaces it, or choose another --out")
    path = checkpoint_or_shipped(checkpoint, say=progress)
    predictor = Predictor.from_checkpoint(path, device=device)
    config = load_config(config_path, overrides or [],
                         base=None if config_path else predictor.config.to_dict())
    document = mine(predictor, config, threshold=threshold, min_distance=min_distance,
                    progress=progress)
    document = {"format": document.pop("format"), "model": str(checkpoint),
                "model_sha256": hashlib.sha256(path.read_bytes()).hexdigest(), **document}
    atomic_write_text(out, dumps_json(document) + "\n")
    return {key: value for key, value in document.items() if key != "images"}
