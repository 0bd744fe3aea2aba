"""What every reader shares: the read report, image sizes, point and box cleaning, splits."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import scipy.io
from PIL import Image

from maskfocal.errors import DatasetError, MaskfocalError
from maskfocal.structures import AnnotatedImage

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")
T = TypeVar("T")


@dataclass
class ReadReport:
    """What a reader dropped, repaired or skipped; nothing is dropped silently.

    ``counts`` maps a description ("points outside the image dropped") to how many. ``skipped``
    lists damaged files as (path, reason). With ``strict=True`` a damaged file raises instead.
    """

    strict: bool = False
    counts: Counter[str] = field(default_factory=Counter)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warn: bool = True

    def note(self, what: str, amount: int = 1) -> None:
        if amount:
            self.counts[what] += int(amount)

    def skip(self, error: DatasetError) -> None:
        if self.strict:
            raise error
        self.skipped.append((str(error.path), error.reason))
        if self.warn:
            print(f"warning: skipped {error.path}: {error.reason}", file=sys.stderr)

    def guard(self, read: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """``read(*args, **kwargs)`` for one file; a :class:`DatasetError` skips that file
        (or raises, when strict) and gives None."""
        try:
            return read(*args, **kwargs)
        except DatasetError as error:
            self.skip(error)
            return None


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image header, without decoding the pixels."""
    try:
        with Image.open(path) as image:
            return image.size
    except FileNotFoundError:
        raise DatasetError(path, "image file is missing") from None
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DatasetError(path, f"cannot read image ({error})") from None


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS
                  and p.is_file())


def find_image(folder: Path, stem: str) -> Path | None:
    """The image named ``stem`` with any usual extension inside ``folder``, if there is one."""
    for extension in IMAGE_EXTENSIONS + tuple(e.upper() for e in IMAGE_EXTENSIONS):
        candidate = folder / f"{stem}{extension}"
        if candidate.is_file():
            return candidate
    return None


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DatasetError(path, "file is missing") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(path, f"cannot read text ({error})") from None


def load_mat(path: Path, key: str, dataset: str) -> Any:
    """``scipy.io.loadmat(path)[key]``, with each failure a :class:`DatasetError` naming it."""
    if not path.is_file():
        raise DatasetError(path, "annotation file is missing")
    try:
        return scipy.io.loadmat(path)[key]
    except KeyError:
        raise DatasetError(path, f"no {key!r} key; not a {dataset} annotation") from None
    except Exception as error:  # scipy raises many types on damaged .mat files
        raise DatasetError(path, f"cannot read .mat ({type(error).__name__}: {error})") from None


def parse_number_rows(path: Path, *, min_columns: int, max_columns: int | None = None,
                      delimiter: str | None = None) -> np.ndarray:
    """A text file of numeric rows as a (rows, columns) float64 array; empty files give 0 rows.

    Every row must have the same number of columns, between ``min_columns`` and ``max_columns``.
    """
    rows: list[list[float]] = []
    for line_number, line in enumerate(read_text(path).splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(delimiter) if delimiter else line.replace(",", " ").split()
        try:
            values = [float(value) for value in fields if value.strip() != ""]
        except ValueError:
            raise DatasetError(path, f"line {line_number}: not numbers: {line[:60]!r}") from None
        upper = max_columns if max_columns is not None else len(values)
        if not min_columns <= len(values) <= upper:
            expected = (f"{min_columns}" if max_columns == min_columns
                        else f"{min_columns} to {max_columns or 'more'}")
            raise DatasetError(path, f"line {line_number}: {len(values)} columns, "
                                     f"expected {expected}")
        if rows and len(values) != len(rows[0]):
            raise DatasetError(path, f"line {line_number}: {len(values)} columns, earlier "
                                     f"lines have {len(rows[0])}")
        rows.append(values)
    if not rows:
        return np.zeros((0, min_columns), dtype=np.float64)
    return np.asarray(rows, dtype=np.float64)


def as_points(values: Any, path: Path, what: str = "points") -> np.ndarray:
    """Coerce parsed annotation values to an (N, 2) float array, or raise naming the file."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise DatasetError(path, f"{what} are not numbers") from None
    if array.size == 0:
        return np.zeros((0, 2), dtype=np.float64)
    if array.ndim != 2 or array.shape[1] < 2:
        raise DatasetError(path, f"{what} must be N x 2 (x, y), got shape {array.shape}")
    return array[:, :2]


def as_boxes(values: Any, path: Path) -> np.ndarray | None:
    """Optional box values as an (N, 4) float array (None when absent or empty), or raise
    naming the file."""
    if values is None:
        return None
    try:
        boxes = np.asarray(values, dtype=np.float64)
        return boxes.reshape(-1, 4) if boxes.size else None
    except (TypeError, ValueError):
        raise DatasetError(path, "boxes are not N x 4 numbers") from None


def make_image(path: Path, points: np.ndarray, *, annotation: Path, report: ReadReport,
               boxes: np.ndarray | None = None, attributes: dict[str, np.ndarray] | None = None,
               meta: dict[str, Any] | None = None, size: tuple[int, int] | None = None,
               ) -> AnnotatedImage:
    """Check and clean one image's heads, then build the :class:`AnnotatedImage`.

    NaN or infinite coordinates raise a :class:`DatasetError` naming ``annotation``. Points up to
    one pixel outside the image are clipped to it (1-indexed tools write x = width); points
    farther out are dropped. Zero-area boxes are dropped, swapped corners are repaired, and boxes
    are clipped to the image. Everything changed is counted in ``report``.
    """
    width, height = size if size is not None else image_size(path)
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    attributes = {k: np.asarray(v) for k, v in (attributes or {}).items()}
    if not np.isfinite(points).all() or (boxes is not None and not np.isfinite(boxes).all()):
        raise DatasetError(annotation, "NaN or infinite coordinates")
    keep = np.ones(len(points), dtype=bool)
    if boxes is not None:
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
        swapped = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
        report.note("boxes with swapped corners repaired", int(swapped.sum()))
        boxes = np.concatenate([np.minimum(boxes[:, :2], boxes[:, 2:]),
                                np.maximum(boxes[:, :2], boxes[:, 2:])], axis=1)
        zero_area = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
        report.note("zero-area boxes dropped", int(zero_area.sum()))
        keep &= ~zero_area
    size_limit = np.array([width, height], dtype=np.float64)
    inside = ((points >= 0) & (points < size_limit)).all(axis=1)
    near = ((points >= -1) & (points <= size_limit + 1)).all(axis=1) & ~inside
    report.note("points within 1 px outside the image clipped to it", int((near & keep).sum()))
    report.note("points outside the image dropped", int((~inside & ~near & keep).sum()))
    keep &= inside | near
    # The largest float32 below the size, so that the point stays inside after the cast.
    upper = np.nextafter(size_limit.astype(np.float32), np.float32(0)).astype(np.float64)
    points = np.clip(points, 0, upper)[keep]
    if boxes is not None:
        boxes = boxes[keep]
        clipped = np.clip(boxes, 0, np.tile(size_limit, 2))
        report.note("boxes clipped to the image", int((clipped != boxes).any(axis=1).sum()))
        boxes = clipped
    attributes = {k: v[keep] for k, v in attributes.items()}
    return AnnotatedImage(image_path=path, points=points, boxes=boxes, width=int(width),
                          height=int(height), attributes=attributes, meta=dict(meta or {}))


def require_root(root: str | Path) -> Path:
    root = Path(root)
    if not root.exists():
        raise MaskfocalError(f"{root}: dataset root does not exist")
    return root


def choose_splits(found: dict[str, T], split: str | None, root: Path) -> dict[str, T]:
    """The splits to read: all of ``found`` when ``split`` is None, else just that one."""
    if not found:
        raise MaskfocalError(f"{root}: found no dataset files in the expected layout")
    if split is None:
        return found
    if split not in found:
        raise MaskfocalError(f"{root}: no split {split!r}; found: {', '.join(found)}")
    return {split: found[split]}


def read_split_list(path: Path) -> list[str]:
    """Image ids from a split file: the first whitespace-separated field of each line."""
    return [line.split()[0] for line in read_text(path).splitlines() if line.strip()]


def collect(items: Iterable[T | None]) -> list[T]:
    return [item for item in items if item is not None]
