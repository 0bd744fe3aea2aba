"""Hard negatives: where a model found heads on a training image far from every annotated head.

``maskfocal mine`` (:mod:`maskfocal.mining`) runs a model over the training images and writes
the false heads it finds (tree foliage, roof edges, gravel, clutter) into a JSON file;
``data.hard_negatives`` names that file and ``data.hard_negative_crops`` is the share of each
epoch's training crops placed around one of them, so that training spends its images where
the model fails. The crops keep every annotated head in them as a head: only the places with
no head nearby are taught as background.

The file (``maskfocal-hard-negatives/1``)::

    {"format": "maskfocal-hard-negatives/1", "model": ..., "threshold": 0.29,
     "min_distance": 32, "images": {"/abs/path/IMG_1.jpg": [[x, y, score], ...], ...}}

Positions are in the image's own pixels. It is derived from the dataset's images and
annotations, so it stays beside the run (``runs/``), never in the repository.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from maskfocal.errors import MaskfocalError
from maskfocal.structures import AnnotatedImage

FORMAT = "maskfocal-hard-negatives/1"
MAX_WEIGHT = 10
"""An image's share of the hard-negative crops grows with its false heads up to this many, so
that one texture-like photo with hundreds of them does not take every such crop."""


def read_hard_negatives(path: str | Path) -> dict[Path, np.ndarray]:
    """``{resolved image path: (K, 2) float32 positions}`` of a ``maskfocal mine`` file."""
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise MaskfocalError(f"{path}: data.hard_negatives file not found (write it with "
                             "`maskfocal mine`)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MaskfocalError(f"{path}: not a hard-negatives file ({error})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise MaskfocalError(f"{path}: not a hard-negatives file (its 'format' is not "
                             f"{FORMAT!r}; write it with `maskfocal mine`)")
    images = document.get("images")
    if not isinstance(images, dict):
        raise MaskfocalError(f"{path}: 'images' must map image paths to [[x, y, score], ...]")
    found = {}
    for name, rows in images.items():
        try:
            positions = np.asarray(rows, dtype=np.float32).reshape(-1, 3)[:, :2]
        except (TypeError, ValueError):
            raise MaskfocalError(f"{path}: the positions of {name!r} are not "
                                 "[[x, y, score], ...]") from None
        if not np.isfinite(positions).all():
            raise MaskfocalError(f"{path}: the positions of {name!r} are not all finite")
        if len(positions):
            found[Path(name).resolve()] = positions
    return found


def hard_negative_table(images: Sequence[AnnotatedImage], path: str | Path
                        ) -> list[tuple[int, np.ndarray]]:
    """``(position in images, (K, 2) positions)`` of each training image the file names; the
    file's images that are not among them (held out for validation, another dataset) are
    left out."""
    mined = read_hard_negatives(path)
    table = []
    for position, image in enumerate(images):
        if image.image_path is not None:
            points = mined.get(Path(image.image_path).resolve())
            if points is not None:
                table.append((position, points))
    return table


def far_from_heads(points: np.ndarray, image: AnnotatedImage, min_distance: float
                   ) -> np.ndarray:
    """Which of ``points`` (K, 2) lie at least ``min_distance`` px from every annotated head
    centre of ``image`` and, where it has head boxes, outside every box grown by half its
    size around its centre (a big head's forehead is not far from its centre)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if not len(points) or not image.num_heads:
        return np.ones(len(points), dtype=bool)
    from scipy.spatial import cKDTree

    distance, _ = cKDTree(image.points).query(points)
    keep = distance >= min_distance
    if image.boxes is not None and keep.any():
        boxes = image.boxes.astype(np.float64)
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2
        half = (boxes[:, 2:] - boxes[:, :2]) * 0.75  # half of 1.5x the box
        inside = (np.abs(points[:, None, :] - centre[None]) <= half[None]).all(axis=2)
        keep &= ~inside.any(axis=1)
    return keep
