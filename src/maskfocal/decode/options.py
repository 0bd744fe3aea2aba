"""How raw outputs become heads: CenterNet's peak window, the box detectors' NMS, the cap.
Declared here; the config's ``decode`` section is a :class:`DecodeOptions` (plus the
inference options it stores), and a saved model carries one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from maskfocal.options import AT_LEAST_ONE, FRACTION, Range

__all__ = ["DecodeOptions"]


@dataclass
class DecodeOptions:
    peak_window: int = 3
    nms_threshold: float = 0.5
    max_detections: int = 10000

    RANGES: ClassVar[dict[str, Range]] = {
        "peak_window": AT_LEAST_ONE,
        "nms_threshold": FRACTION,
        "max_detections": Range(10000),
    }
