"""What decides the heads a model finds in a photo, besides its weights: the score threshold,
the input scale, the size cap and the tiling. A checkpoint, a ``.safetensors`` file and an ONNX
export each carry one :class:`InferenceOptions` (in their saved config: ``decode.threshold``,
``decode.input_scale``, ``decode.scale_target``, ``data.max_eval_side``); every counting
command takes each of them as a flag, and :class:`~maskfocal.inference.Counter` as a keyword.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, ClassVar

from maskfocal.errors import MaskfocalError
from maskfocal.options import POSITIVE, PROBABILITY, Range, check_ranges, coerce

from .tiles import ALIGN, TILE_ABOVE, TILE_OVERLAP, TILE_SIZE

__all__ = ["AUTO_TARGET", "KEEP", "InferenceOptions", "check_tiling"]

AUTO_TARGET = 18.0
"""Median spacing of neighbouring heads (px at the network's input) that ``scale="auto"`` aims
for, where the model has no ``scale_target`` of its own: crowd-lite0's, chosen on its
validation photos (experiments/results/crowd_lite0/auto_scale.json)."""

class _Keep:
    def __repr__(self) -> str:
        return "KEEP"


KEEP = _Keep()
"""An option left at the model's own (where ``None`` has a meaning: ``tile_above=None`` is
never tile)."""

SAVED_KEYS = {"threshold": ("decode", "threshold"), "input_scale": ("decode", "input_scale"),
              "scale_target": ("decode", "scale_target"),
              "max_eval_side": ("data", "max_eval_side")}
"""Where each option lives in a saved config (the keys a training config sets)."""


def check_tiling(tile_above: int | None, tile_size: int, tile_overlap: int) -> None:
    """Tiling options that cover every pixel, or a one-line error before any work."""
    if tile_above is not None and tile_above < 0:
        raise MaskfocalError(f"tile threshold {tile_above} px must be >= 0")
    if tile_size < 64:
        raise MaskfocalError(f"tile size {tile_size} px must be at least 64")
    if tile_overlap < 0:
        raise MaskfocalError(f"tile overlap {tile_overlap} px must be >= 0 (a negative "
                             "overlap leaves gaps between tiles)")
    if tile_size - tile_overlap <= ALIGN:
        raise MaskfocalError(f"tile size {tile_size} px must exceed the overlap "
                             f"{tile_overlap} px by more than {ALIGN}")


@dataclass(frozen=True)
class InferenceOptions:
    """Args:
        threshold: the score a head needs (the calibrated one, chosen on validation).
        input_scale: every photo is resized by this before the network sees it.
        scale_target: when set, each photo's scale is chosen from its heads instead
            (``scale="auto"``): the median spacing of neighbouring heads aimed at, px.
        max_eval_side: a photo counted whole is scaled down until its longer side fits this.
        tile_above: photos whose longer side (at the input scale) exceeds this are counted in
            tiles; ``None``: never.
        tile_size, tile_overlap: the tiles' side and least overlap, px at the input scale.
    """

    threshold: float = 0.3
    input_scale: float = 1.0
    scale_target: float | None = None
    max_eval_side: int = 2048
    tile_above: int | None = TILE_ABOVE
    tile_size: int = TILE_SIZE
    tile_overlap: int = TILE_OVERLAP

    RANGES: ClassVar[dict[str, Range]] = {
        "threshold": PROBABILITY,
        "input_scale": POSITIVE,
        "scale_target": POSITIVE,
        "max_eval_side": Range(64),
    }

    def __post_init__(self) -> None:
        check_ranges(self)
        check_tiling(self.tile_above, self.tile_size, self.tile_overlap)

    @classmethod
    def from_saved(cls, config: dict[str, Any]) -> InferenceOptions:
        """The options a saved config (a checkpoint's, a ``.safetensors``' or an ONNX export's
        metadata) stores; the tiling, which no config stores, at its defaults."""
        hints = typing.get_type_hints(cls)
        values = {}
        for name, (section, key) in SAVED_KEYS.items():
            stored = config.get(section) or {}
            if isinstance(stored, dict) and key in stored:
                value = coerce(stored[key], hints[name], f"{section}.{key}")
                valid = cls.RANGES[name]
                if value is not None and value not in valid:
                    raise MaskfocalError(f"{section}.{key} must be {valid}, got {value!r}")
                values[name] = value
        return cls(**values)

    def replace(self, **changes: Any) -> InferenceOptions:
        """These options with some changed: :data:`KEEP`, or ``None`` for any option but
        ``tile_above`` (whose ``None`` means never tile), leaves one as it is; ``scale``
        (``"auto"`` or a number) sets the input scale (see :meth:`with_scale`)."""
        scale = changes.pop("scale", None)
        options = self if scale is None or scale is KEEP else self.with_scale(scale)
        kept = {k: v for k, v in changes.items()
                if v is not KEEP and (v is not None or k == "tile_above")}
        try:
            return dataclasses.replace(options, **kept) if kept else options
        except TypeError as error:
            raise MaskfocalError(f"unknown inference option ({error})") from None

    def with_scale(self, scale: float | str) -> InferenceOptions:
        """``"auto"``: a scale per photo (the model's ``scale_target``, or
        :data:`AUTO_TARGET`); a number: that scale for every photo."""
        if scale == "auto":
            return dataclasses.replace(self, scale_target=self.scale_target or AUTO_TARGET)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)):
            raise MaskfocalError(f"input scale must be a number > 0 or auto, got {scale!r}")
        return dataclasses.replace(self, input_scale=float(scale), scale_target=None)
