"""One result record: a count becomes ``count``'s JSON and CSV row, a video's CSV row, the web
service's answer and a ``count-archive`` Parquet row through :class:`CountRecord`, so that
points, zones, density, errors, model and threshold are written the same way everywhere.

>>> record = CountRecord(result, width=640, height=480, model="crowd-r18", threshold=0.3)
>>> record.to_json(points=True)          # {"count": ..., "points": [[x, y], ...], "zones": ...}
>>> record.zone_values(["left", "right"], dense=True)  # [left, right, per m² left, right]
>>> record.to_row(points=False)           # count-archive's Parquet row
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from maskfocal.fileio import csv_safe

__all__ = ["CountRecord", "zone_columns"]

POINT_DIGITS = 2  # pixels: points and boxes
SCORE_DIGITS = 4
DENSITY_DIGITS = 4  # people per m²


def zone_columns(names: list[str], dense: bool) -> list[str]:
    """The CSV columns of zones: ``zone NAME`` for each, then ``per_m2 NAME`` for each where
    the zones have a ground scale (names made safe for spreadsheets)."""
    return [*(csv_safe(f"zone {name}") for name in names),
            *(csv_safe(f"per_m2 {name}") for name in names if dense)]


def _rounded(array: np.ndarray, digits: int) -> list:
    return np.round(np.asarray(array, np.float64), digits).tolist()


@dataclass
class CountRecord:
    """One image's (or frame's) count as every output writes it.

    Args:
        result: the :class:`~maskfocal.inference.CountResult`; ``None`` where the image could
            not be counted (``error`` says why).
        width, height: the image's size in pixels.
        model: the model's name (a shipped name or a file's).
        threshold: the score threshold counted at.
        error: why the image could not be read or counted.
    """

    result: Any = None
    width: int | None = None
    height: int | None = None
    model: str | None = None
    threshold: float | None = None
    error: str | None = None

    @property
    def count(self) -> int | None:
        return None if self.result is None else int(self.result.count)

    def zones(self) -> dict[str, int] | None:
        return None if self.result is None else self.result.zones

    def density(self) -> dict[str, float] | None:
        if self.result is None or self.result.density is None:
            return None
        return {name: round(float(value), DENSITY_DIGITS)
                for name, value in self.result.density.items()}

    def to_json(self, *, points: bool = True, scores: bool = False, boxes: bool = False,
                size: bool = False, provenance: bool = False) -> dict[str, Any]:
        """The JSON form: ``count``, then on request ``points``, ``scores``, ``boxes``
        (``null`` for a model without sizes), ``width``/``height``, ``model``/``threshold``;
        then ``zones`` and ``density`` where the count has them, and ``error`` where set."""
        record: dict[str, Any] = {"count": self.count}
        result = self.result
        if result is not None:
            if points:
                record["points"] = _rounded(result.points, POINT_DIGITS)
            if scores:
                record["scores"] = _rounded(result.scores, SCORE_DIGITS)
            if boxes:
                record["boxes"] = (None if result.boxes is None
                                   else _rounded(result.boxes, POINT_DIGITS))
        if size:
            record.update(width=self.width, height=self.height)
        if provenance:
            record.update(model=self.model, threshold=self.threshold)
        if self.zones() is not None:
            record["zones"] = self.zones()
            if self.density() is not None:
                record["density"] = self.density()
        if self.error is not None:
            record["error"] = self.error
        return record

    def zone_values(self, names: list[str], dense: bool) -> list:
        """The cells of :func:`zone_columns`: heads per zone, then people per m²."""
        zones, density = self.zones() or {}, self.density() or {}
        return [*(zones.get(name) for name in names),
                *(density.get(name) for name in names if dense)]

    def to_row(self, *, points: bool) -> dict[str, Any]:
        """``count-archive``'s Parquet row (its schema: maskfocal.archive): maps as lists of
        (name, value) pairs, points as float32 pairs where asked for."""
        zones, density = self.zones(), self.density()
        return {"count": self.count, "width": self.width, "height": self.height,
                "threshold": self.threshold, "model": self.model, "error": self.error,
                "points": (self.result.points.astype(np.float32).tolist()
                           if points and self.result is not None else None),
                "zones": None if zones is None else list(zones.items()),
                "density": None if density is None else list(density.items())}
