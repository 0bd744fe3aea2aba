"""Dataset readers: each reads one dataset format's own files into :class:`AnnotatedImage`.

>>> dataset = read_dataset("shanghaitech", "data/part_B", split="test")
>>> dataset.images[0].points.shape
(N, 2)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from maskfocal.errors import MaskfocalError
from maskfocal.structures import AnnotatedImage

from .coco import read_coco
from .common import ReadReport
from .jhu import read_jhu
from .mot import read_mot
from .nwpu import read_nwpu
from .points import read_points
from .shanghaitech import read_shanghaitech
from .ucf import read_ucf
from .voc import read_voc

Reader = Callable[[Path, str | None, ReadReport], list[AnnotatedImage]]

READERS: dict[str, Reader] = {
    "shanghaitech": read_shanghaitech,
    "ucf": read_ucf,
    "jhu": read_jhu,
    "nwpu": read_nwpu,
    "voc": read_voc,
    "mot": read_mot,
    "coco": read_coco,
    "points": read_points,
}

__all__ = ["READERS", "Dataset", "ReadReport", "extra_source", "read_dataset"]


@dataclass
class Dataset:
    """The images one reader found, and the report of what it dropped, repaired or skipped."""

    images: list[AnnotatedImage]
    report: ReadReport

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> AnnotatedImage:
        return self.images[index]


def read_dataset(format: str, root: str | Path, *, split: str | None = None,
                 strict: bool = False, warn: bool = True) -> Dataset:
    """Read a dataset in ``format`` from ``root``; every split found when ``split`` is None.

    Damaged files are skipped and listed in the report (``strict=True`` raises instead).
    Raises :class:`MaskfocalError` for an unknown format, a missing root, or an unknown split.
    """
    if format not in READERS:
        raise MaskfocalError(f"unknown format {format!r}; choose one of: {', '.join(READERS)}")
    report = ReadReport(strict=strict, warn=warn)
    images = READERS[format](Path(root), split, report)
    return Dataset(images=images, report=report)


def extra_source(text: str) -> tuple[str, str]:
    """``"voc:../data/SCUT"`` -> ``("voc", "../data/SCUT")`` (an entry of
    ``data.extra_train``)."""
    format, _, root = text.partition(":")
    if format not in READERS or not root:
        raise MaskfocalError(f"data.extra_train: {text!r} is not FORMAT:ROOT with FORMAT one "
                             f"of {', '.join(READERS)}")
    return format, root
