"""Typed containers for annotated images.

An :class:`AnnotatedImage` is one image and its heads, as read from a dataset or produced by the
synthetic generator. Pixels are loaded lazily; an image with no heads (``num_heads == 0``) is a
normal value everywhere in the project.
"""

from __future__ import annotations

import contextlib
import math
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from maskfocal.errors import DatasetError, MaskfocalError

__all__ = ["AnnotatedImage", "as_rgb", "load_rgb", "read_rgb"]


MAX_PIXELS = 300_000_000
"""Images with more pixels are refused before decoding (decompression bombs). An 8000x6000
photo is 48 million; raise it (``maskfocal.structures.MAX_PIXELS = ...``) for larger ones."""

_HIGH_DEPTH = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535}


def load_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as a (H, W, 3) uint8 RGB array, upright by its EXIF orientation.

    Grayscale, palette, RGBA/LA (alpha dropped), CMYK and YCbCr become RGB; 16-bit and 32-bit
    integer or float images are scaled into 8 bits (not clipped). Unreadable, truncated or
    oversized (more than :data:`MAX_PIXELS`; Pillow's own smaller limit is lifted for this
    read) files raise :class:`DatasetError`.
    """
    return read_rgb(path)[0]


def read_rgb(path: str | Path, min_side: Callable[[int, int], int | None] | None = None
             ) -> tuple[np.ndarray, tuple[int, int]]:
    """:func:`load_rgb`'s array, and the image's own upright ``(height, width)``.

    ``min_side(height, width)``: where it gives a longer side, the photo is shrunk to at
    least that anyway, and a JPEG is decoded at 1/2, 1/4 or 1/8 of its size where its longer
    side stays at least that (libjpeg's DCT scaling, Pillow's draft mode): an 8000x6000
    photo counted whole by the shipped models is read at 4000x3000, a quarter of the memory.
    Other formats are read whole.
    """
    from PIL import ImageOps

    try:
        with _pillow_bomb_limit(), Image.open(path) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise DatasetError(path, f"image of {width}x{height} has more "
                                         f"than maskfocal.structures.MAX_PIXELS = "
                                         f"{MAX_PIXELS:,} pixels (a decompression bomb?)")
            side = min_side(height, width) if min_side is not None else None
            if side is not None and image.format in ("JPEG", "MPO"):
                factor = side / max(width, height)
                image.draft("RGB", (math.ceil(width * factor), math.ceil(height * factor)))
            image.load()
            orientation = image.getexif().get(0x0112, 1)
            if orientation in (5, 6, 7, 8):  # turned a quarter
                width, height = height, width
            if orientation != 1:
                image = ImageOps.exif_transpose(image)
            return _to_rgb_array(image), (height, width)
    except DatasetError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise DatasetError(path, f"cannot read image ({error})") from None


_PILLOW_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _pillow_bomb_limit():
    """Pillow refuses images over twice ``Image.MAX_IMAGE_PIXELS`` (179 M by default) while
    opening them; :data:`MAX_PIXELS` is ours, so Pillow's check is set to it for one read."""
    with _PILLOW_LIMIT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # errors only above twice this; ours comes first
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def as_rgb(image: Any) -> np.ndarray:
    """A PIL image, (H, W), (H, W, 1|3|4) array or (1|3|4, H, W) tensor as (H, W, 3) uint8.

    Every numeric type is scaled by its range, as files are: uint8 as it is, other unsigned
    integers by their type's maximum (uint16: 65535), signed integers must hold 0..255, floats
    must hold [0, 1] (torchvision's convention). Anything else (an empty image, NaN, a float
    image in 0..255, booleans, a wrong shape) is a :class:`MaskfocalError` saying what was
    expected; never a silent clip.
    """
    if isinstance(image, Image.Image):
        if image.width == 0 or image.height == 0:
            raise MaskfocalError(f"the image is empty ({image.width}x{image.height})")
        return np.ascontiguousarray(_to_rgb_array(image))
    tensor = type(image).__module__.startswith("torch")
    if tensor:
        if image.ndim == 3:  # (C, H, W) -> (H, W, C)
            image = image.permute(1, 2, 0)
        image = image.detach().cpu()
        if image.dtype == _bfloat16():  # numpy has no bfloat16
            image = image.float()
        array = image.numpy()
    else:
        array = np.asarray(image)
    layout = "(C, H, W) tensor with C in 1, 3, 4" if tensor else "(H, W) or (H, W, C) array " \
                                                                  "with C in 1, 3, 4"
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise MaskfocalError(f"expected a {layout}, got shape {tuple(np.shape(image))}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise MaskfocalError(f"the image is empty ({array.shape[1]}x{array.shape[0]})")
    array = array[..., :3] if array.shape[2] >= 3 else np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(_scaled_to_uint8(array))


def _bfloat16():
    import torch

    return torch.bfloat16


def _scaled_to_uint8(array: np.ndarray) -> np.ndarray:
    kind = array.dtype
    if kind == np.uint8:
        return array
    if np.issubdtype(kind, np.unsignedinteger):
        top = np.iinfo(kind).max
        if array.size and int(array.max()) <= 255:  # 8-bit values in a wider type
            warnings.warn(f"a {kind} image holding only 0..255 is read as 8-bit values (its "
                          f"type's range would make it black: 255 of {top})", stacklevel=3)
            return array.astype(np.uint8)
        return (array.astype(np.float64) * (255 / top)).round().astype(np.uint8)
    if np.issubdtype(kind, np.signedinteger):
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise MaskfocalError(f"{kind} image values span [{low}, {high}]; signed integers "
                                 "must hold 0..255 (give uint16 for 16-bit images, or floats "
                                 "in [0, 1])")
        return array.astype(np.uint8)
    if np.issubdtype(kind, np.floating):
        values = array.astype(np.float32)
        if not np.isfinite(values).all():
            raise MaskfocalError("the image holds NaN or infinite values")
        low, high = float(values.min()), float(values.max())
        if low < 0 or high > 1:
            raise MaskfocalError(f"float image values span [{low:g}, {high:g}]; floats must "
                                 "hold [0, 1] (divide 0..255 values by 255)")
        return (values * 255).round().astype(np.uint8)
    raise MaskfocalError(f"unsupported image type {kind} (use uint8, uint16 or floats in "
                         "[0, 1])")


def _to_rgb_array(image: Image.Image) -> np.ndarray:
    if image.mode in _HIGH_DEPTH or image.mode in ("I", "F"):
        values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0,
                               neginf=0.0)
        scaled = np.clip(_unit_range(values, image.mode) * 255, 0, 255).round()
        return np.repeat(scaled.astype(np.uint8)[..., None], 3, axis=2)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return _rows_to_array(image)


def _rows_to_array(image: Image.Image, band_bytes: int = 1 << 22) -> np.ndarray:
    """``np.asarray(image)`` of an RGB image, a band of rows (about 4 MB) at a time: Pillow's
    array interface goes through ``tobytes()``, which holds the whole image twice more
    (an 8000x6000 JPEG read at a peak about 95 MB lower, measured)."""
    width, height = image.size
    pixels = np.empty((height, width, 3), np.uint8)
    rows = max(1, band_bytes // (3 * width))
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        pixels[top:bottom] = np.asarray(image.crop((0, top, width, bottom)))
    return pixels


def _unit_range(values: np.ndarray, mode: str) -> np.ndarray:
    """A one-channel high-depth image (``I;16``, ``I`` int32, ``F`` float) in [0, 1], scaled,
    never clipped: 16-bit by 65535; int32 by the range its values fit (255, 65535, else their
    own maximum); float as [0, 1], as [-1, 1] when negative values stay within it, else by
    its own minimum and maximum. int32 with negative values likewise by its own range."""
    low, high = float(values.min(initial=0)), float(values.max(initial=0))
    if mode in _HIGH_DEPTH:
        return values / _HIGH_DEPTH[mode]
    if mode == "F" and low >= -1 and high <= 1:
        return (values + 1) / 2 if low < 0 else values
    if low >= 0:
        if mode == "F":
            top = max(high, 1.0)
        else:
            top = 255 if high <= 255 else 65535 if high <= 65535 else high
        return values / top
    return (values - low) / max(high - low, 1e-12)


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
        read_scale: the file's pixels are resized by this when loaded (:meth:`rescaled`: the
            heads, boxes and size above are already in the resized pixels).
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
    read_scale: float = 1.0

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
        pixels = load_rgb(self.image_path)
        if self.read_scale == 1.0:
            return pixels
        return np.asarray(Image.fromarray(pixels).resize((self.width, self.height),
                                                         Image.Resampling.BILINEAR))

    def rescaled(self, factor: float) -> AnnotatedImage:
        """The same image and heads resized by ``factor`` (its pixels when loaded): a
        reduced-resolution dataset with nothing written to disk."""
        width, height = max(1, round(self.width * factor)), max(1, round(self.height * factor))
        pixels = None
        if self.pixels is not None:
            pixels = np.asarray(Image.fromarray(self.pixels).resize(
                (width, height), Image.Resampling.BILINEAR))
        return AnnotatedImage(
            image_path=self.image_path, points=self.points * factor, width=width,
            height=height, boxes=None if self.boxes is None else self.boxes * factor,
            attributes=dict(self.attributes), meta=dict(self.meta), labelled=self.labelled,
            pixels=pixels, read_scale=self.read_scale * factor)

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
            read_scale=self.read_scale,
        )
