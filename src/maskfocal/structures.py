"""Typed containers for annotated images.

An :class:`AnnotatedImage` is one image and its heads, as read from a dataset or produced by the
synthetic generator. Pixels are loaded lazily; an image with no heads (``num_heads == 0``) is a
normal value everywhere in the project.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from maskfocal.errors import DatasetError

__all__ = ["AnnotatedImage", "load_rgb"]


def load_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as a (H, W, 3) uint8 RGB array, honouring EXIF orientation."""
    from PIL import ImageOps

    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            return np.array(image.convert("RGB"))  # a writable copy
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DatasetError(path, f"cannot read image ({error})") from None


def _as_array(values: Any, columns: int, name: str) -> np.ndarray:
    array = np.asarray(values if values is not None else [], dtype=np.float32)
    if array.size == 0:
        return np.zeros((0, columns), dtype=np.float32)
    if array.ndim != 2 or array.shape[1] != columns:
        raise ValueError(f"{name} must have shape (N, {columns}), got {array.shape}")
    return array


@dataclass(eq=False)
class AnnotatedImage:
    """One image and its annotated heads.

    Attributes:
        image_path: the image file; ``None`` for images held in memory (``pixels``).
        points: (N, 2) float32 head centres, x then y, in pixels, 0-indexed.
        boxes: (N, 4) float32 head boxes x1, y1, x2, y2 in pixels, or ``None`` for point-only
            data. Row i is the box of point i.
        width, height: image size in pixels.
        attributes: per-head arrays of length N (``occlusion``, ``blur``, ``visibility``, ...).
        meta: per-image facts (split, sequence, frame, scene labels, ...).
        labelled: ``False`` for images whose annotations are withheld (NWPU-Crowd test).
        pixels: (H, W, 3) uint8 RGB held in memory, when there is no file.
    """

    image_path: Path | None
    points: np.ndarray
    width: int
    height: int
    boxes: np.ndarray | None = None
    attributes: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    labelled: bool = True
    pixels: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.points = _as_array(self.points, 2, "points")
        if self.boxes is not None:
            self.boxes = _as_array(self.boxes, 4, "boxes")
            if len(self.boxes) != len(self.points):
                raise ValueError(
                    f"{len(self.boxes)} boxes for {len(self.points)} points; need one per head"
                )
        for key, values in self.attributes.items():
            if len(values) != len(self.points):
                raise ValueError(f"attribute {key!r} has {len(values)} values for "
                                 f"{len(self.points)} heads")
        if self.image_path is not None:
            self.image_path = Path(self.image_path)

    @property
    def num_heads(self) -> int:
        return len(self.points)

    @property
    def name(self) -> str:
        if self.image_path is not None:
            return self.image_path.name
        return str(self.meta.get("name", "<memory>"))

    def load_image(self) -> np.ndarray:
        """The pixels as a (H, W, 3) uint8 RGB array."""
        if self.pixels is not None:
            return self.pixels
        if self.image_path is None:
            raise ValueError("an AnnotatedImage needs image_path or pixels")
        return load_rgb(self.image_path)

    def select(self, keep: np.ndarray) -> AnnotatedImage:
        """A copy that keeps the heads where the boolean (N,) array ``keep`` is true."""
        keep = np.asarray(keep, dtype=bool)
        return AnnotatedImage(
            image_path=self.image_path,
            points=self.points[keep],
            width=self.width,
            height=self.height,
            boxes=None if self.boxes is None else self.boxes[keep],
            attributes={key: np.asarray(value)[keep] for key, value in self.attributes.items()},
            meta=dict(self.meta),
            labelled=self.labelled,
            pixels=self.pixels,
        )
