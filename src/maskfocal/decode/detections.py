"""The heads found in one image: what every decoder returns and every consumer reads."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

SCORE_FLOOR = 0.05
"""The lowest score any decoder keeps (and threshold calibration considers): candidates below
it are never counted."""


@dataclass
class Detections:
    """Heads found in one image, in input-image pixels.

    points: (n, 2) x, y; scores: (n,); boxes: (n, 4) x1 y1 x2 y2, or None without a size head.
    """

    points: Tensor
    scores: Tensor
    boxes: Tensor | None

    @property
    def count(self) -> int:
        return len(self.scores)

    def above(self, threshold: float) -> Detections:
        keep = self.scores >= threshold
        return Detections(self.points[keep], self.scores[keep],
                          None if self.boxes is None else self.boxes[keep])

    def scaled(self, factor: float | tuple[float, float]) -> Detections:
        """The same heads with coordinates multiplied by ``factor`` (or x by one factor and y
        by another)."""
        fx, fy = (factor, factor) if isinstance(factor, (int, float)) else factor
        xy = self.points.new_tensor([fx, fy])
        return Detections(self.points * xy, self.scores,
                          None if self.boxes is None else self.boxes * xy.repeat(2))
