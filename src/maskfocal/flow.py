"""People flow: head tracks over consecutive frames, lines they cross (counted in and out,
each crossing once), and where people were over a clip.

**Tracks.** :class:`HeadTracker` connects a frame's heads to the last frame's with ByteTrack
(Roboflow's ``trackers`` package, ``pip install 'maskfocal[flow]'``) on head boxes (the model's
own when it predicts sizes, else a square as wide as the distance to the nearest other head),
and places each track at its head's point. It was chosen by measurement on synthetic moving
crowds against norfair's point tracker, SORT and OC-SORT (experiments/flow_trackers.py,
docs/flow.md): the best MOTA at both densities, with good heads and with the shipped model's,
and the smallest line-count error. norfair tracks points, the natural input, but pins numpy
below 2, which this project cannot install beside torch.

A lines file (JSON; the same file may hold ``zones`` and ``ground``, as zone files do)::

    {"lines": [{"name": "gate A", "points": [[x1, y1], [x2, y2], ...], "in": "left"}]}

- ``points``: a polyline in image pixels (x to the right, y down), at least two points, of
  non-zero length, inside the frame.
- ``in``: the side a head ends on when it comes **in**: ``"left"`` is the side on your left
  as you walk the line from its first point to its last, as the image shows it (walking from
  ``[0, 100]`` to ``[200, 100]``, left is up the image, towards y = 0); ``"right"`` the other.
  A crossing that ends on the other side is **out**; ``net = in - out``.

**The crossing rule (hysteresis).** A track is on a side of a line only once its point is at
least ``margin`` px (default 4) from the line; inside that band it keeps the side it had. A
crossing is counted when a track's side changes and its path since it was last on the old
side actually cuts the line (a head walking round the line's end is not a crossing). So a
head jittering on the line is never counted, however often its point changes side within the
band; a head that goes through, at least ``margin`` px past, and back again is counted in and
then out (net 0), as it did cross twice. A track first seen inside the band has no side until
it leaves the band.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from maskfocal.errors import MaskfocalError

__all__ = ["CANDIDATES", "MARGIN", "Crossing", "Flow", "FlowState", "HeadTracker", "Line",
           "LineCounter", "head_boxes", "lines_from_dict", "load_lines"]

MARGIN = 4.0  # px: how far past a line a head must be to be on its other side
CANDIDATES = 0.5
"""Heads scored from this share of the counting threshold up to it are the tracker's
candidates: ByteTrack's second association keeps tracks alive on them (a head half hidden for
a frame), but they start no track and are not counted (experiments/flow_trackers.py: MOTA
0.47 -> 0.54 and line-count error 12 -> 6 on dense synthetic crowds)."""
LINE_KEYS = ("name", "points", "in")
SIDES = ("left", "right")


@dataclass(frozen=True)
class Line:
    """A named polyline and the side a head ends on when it comes in."""

    name: str
    points: np.ndarray  # (k, 2) x, y; k >= 2
    inside: str  # "left" or "right"

    def side(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(distance to the line, side) of each (n, 2) point: side -1 on the line's left as
        the image shows it, +1 on its right (the nearest segment decides)."""
        points = np.asarray(points, np.float64).reshape(-1, 2)
        start, end = self.points[:-1], self.points[1:]  # (k - 1, 2) segments
        direction = end - start
        length2 = (direction ** 2).sum(1)
        offset = points[:, None, :] - start[None]  # (n, k - 1, 2)
        along = np.clip((offset * direction).sum(-1) / np.maximum(length2, 1e-12), 0, 1)
        nearest = start[None] + along[..., None] * direction[None]
        distance = np.linalg.norm(points[:, None, :] - nearest, axis=-1)
        segment = distance.argmin(1)
        rows = np.arange(len(points))
        cross = (direction[segment, 0] * offset[rows, segment, 1]
                 - direction[segment, 1] * offset[rows, segment, 0])
        return distance[rows, segment], np.where(cross < 0, -1, 1)  # y down: cross < 0 is left

    def cuts(self, start: np.ndarray, end: np.ndarray) -> bool:
        """Whether the path from ``start`` to ``end`` cuts the line."""
        import shapely

        return bool(shapely.LineString(self.points).intersects(
            shapely.LineString([start, end])))

    def check(self, height: int, width: int, where: str = "") -> None:
        """Every point inside a frame of this size, or a one-line error."""
        outside = [(x, y) for x, y in self.points if not (0 <= x <= width and 0 <= y <= height)]
        if outside:
            x, y = outside[0]
            raise MaskfocalError(f"{where}line {self.name!r}: point ({x:g}, {y:g}) is outside "
                                 f"the {width}x{height} frame")


@dataclass(frozen=True)
class Crossing:
    """One counted crossing: which track, which line, ``"in"`` or ``"out"``."""

    track: int
    line: str
    direction: str


@dataclass
class LineCounter:
    """Per-line in and out counts of tracked heads, each crossing counted once (the module's
    hysteresis rule). ``update`` takes each frame's tracks, ``{track id: (x, y)}``."""

    lines: list[Line]
    margin: float = MARGIN
    counts: dict[str, dict[str, int]] = field(init=False)
    _side: dict[tuple[str, int], int] = field(init=False, default_factory=dict)
    _anchor: dict[tuple[str, int], np.ndarray] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        if not self.margin >= 0:
            raise MaskfocalError(f"line margin must be >= 0 px, got {self.margin}")
        self.counts = {line.name: {"in": 0, "out": 0} for line in self.lines}

    def update(self, tracks: dict[int, tuple[float, float]]) -> list[Crossing]:
        """The crossings this frame's track positions complete."""
        if not tracks:
            return []
        ids = list(tracks)
        points = np.asarray([tracks[i] for i in ids], np.float64).reshape(-1, 2)
        crossings = []
        for line in self.lines:
            distance, side = line.side(points)
            for track, point, far, now in zip(ids, points, distance, side, strict=True):
                key = (line.name, track)
                if far < self.margin or far == 0:
                    continue  # in the band (or on the line): the side it had stands
                before = self._side.get(key)
                if before is not None and before != now and line.cuts(self._anchor[key],
                                                                       point):
                    direction = "in" if (now < 0) == (line.inside == "left") else "out"
                    self.counts[line.name][direction] += 1
                    crossings.append(Crossing(track, line.name, direction))
                self._side[key] = int(now)
                self._anchor[key] = point
        return crossings

    def totals(self) -> dict[str, dict[str, int]]:
        """``{line: {"in", "out", "net"}}`` so far."""
        return {name: {**c, "net": c["in"] - c["out"]} for name, c in self.counts.items()}


def load_lines(path: str | Path) -> list[Line]:
    """The lines of a JSON lines file (module docstring); a file that is not one is a
    one-line error naming it and what is wrong."""
    from maskfocal.zones import read_json_file

    return lines_from_dict(read_json_file(Path(path), "lines"), str(path))


def lines_from_dict(data, source: str) -> list[Line]:
    """Lines from a lines file's content (zone files' other keys, ``zones`` and ``ground``,
    may be there too)."""
    from maskfocal.zones import _all_numbers, named_entries

    lines = []
    for name, where, entry in named_entries(
            data, "line", LINE_KEYS, source,
            '{"name": ..., "points": [[x1, y1], [x2, y2]], "in": "left"}'):
        value = entry.get("points")
        points = (np.asarray(value, np.float64) if isinstance(value, list) and _all_numbers(value)
                  else np.zeros(0))
        if points.ndim != 2 or points.shape[1:] != (2,) or len(points) < 2 \
                or not np.isfinite(points).all():
            raise MaskfocalError(f"{where}: \"points\" must be at least two [x, y] numbers")
        if not (np.linalg.norm(np.diff(points, axis=0), axis=1) > 0).all():
            raise MaskfocalError(f"{where}: two consecutive points are the same (a "
                                 "zero-length segment has no sides)")
        if entry.get("in") not in SIDES:
            raise MaskfocalError(f"{where}: \"in\" must be \"left\" or \"right\" (the side a "
                                 "head ends on when it comes in), got "
                                 f"{entry.get('in')!r}")
        lines.append(Line(name, points, entry["in"]))
    return lines


def head_boxes(points: np.ndarray, boxes: np.ndarray | None = None) -> np.ndarray:
    """(n, 4) boxes of the heads at ``points``: ``boxes`` where the model gave them, else a
    square around each point as wide as the distance to its nearest neighbour (8 to 48 px;
    16 for a lone head)."""
    from maskfocal.geometry import pseudo_boxes

    points = np.asarray(points, np.float32).reshape(-1, 2)
    if boxes is not None and len(boxes) == len(points):
        return np.asarray(boxes, np.float32).reshape(-1, 4)
    return pseudo_boxes(points, k=1, min_size=8, max_size=48, fallback=16).astype(np.float32)


class HeadTracker:
    """Track ids for the heads of consecutive frames (ByteTrack on head boxes; module doc).

    ``update(points, scores, boxes)`` returns ``{track id: (x, y)}`` for the tracks confirmed
    in this frame (a new head gets an id once seen in two frames running). A track unseen
    for ``lost_seconds`` ends; its id is never given again.
    """

    def __init__(self, *, fps: float = 25.0, threshold: float = 0.3,
                 lost_seconds: float = 1.0, spacing_boxes: bool = False) -> None:
        try:
            import trackers
        except ImportError:
            raise MaskfocalError("tracking needs the flow extra: pip install "
                                 "'maskfocal[flow]'") from None
        fps = float(fps) if fps and fps > 0 else 25.0
        self.spacing_boxes = spacing_boxes  # True: ignore the model's boxes (head_boxes)
        # The score gates at the counter's own threshold: the defaults (0.6-0.7) are for
        # detectors whose scores run higher than a calibrated head threshold.
        self._tracker = trackers.ByteTrackTracker(
            frame_rate=fps, lost_track_buffer=max(1, round(lost_seconds * fps)),
            track_activation_threshold=threshold, high_conf_det_threshold=threshold)

    def update(self, points: np.ndarray, scores: np.ndarray, boxes: np.ndarray | None = None,
               time_s: float | None = None) -> dict[int, tuple[float, float]]:
        """This frame's confirmed tracks at their heads' points; ``time_s`` (the frame's
        time) keeps the motion model right when frames are skipped or the rate varies."""
        import supervision as sv

        points = np.asarray(points, np.float32).reshape(-1, 2)
        found = head_boxes(points, None if self.spacing_boxes else boxes)
        detections = sv.Detections(xyxy=found, confidence=np.asarray(scores, np.float32),
                                   class_id=np.zeros(len(found), int),
                                   data={"head": np.arange(len(found))})
        tracked = self._tracker.update(detections, timestamp=time_s)
        if tracked.tracker_id is None or not len(tracked):
            return {}
        return {int(track): (float(points[head, 0]), float(points[head, 1])) for track, head
                in zip(tracked.tracker_id, tracked.data["head"], strict=True) if track >= 0}


@dataclass
class FlowState:
    """One frame of a tracked clip (what :meth:`Counter.track` yields)."""

    frame: int  # index in the clip, from 0
    time_s: float
    result: object  # the frame's CountResult
    tracks: dict[int, tuple[float, float]]  # confirmed tracks here: id -> (x, y)
    crossings: list[Crossing]  # completed in this frame
    lines: dict[str, dict[str, int]]  # {line: {"in", "out", "net"}} so far


class Flow:
    """Tracks, line counts and occupancy over a clip, fed one counted frame at a time.

    ``lines`` (a lines file or :class:`Line` objects) are checked against the first frame's
    size; a later frame of another size is an error (tracks and lines are in its pixels).
    """

    def __init__(self, lines=None, *, fps: float = 25.0, threshold: float = 0.3,
                 source: str = "", cell: int = 4, trail: int = 25,
                 candidates: float = CANDIDATES) -> None:
        if isinstance(lines, str | Path):
            lines = load_lines(lines)
        self.lines = list(lines or [])
        self.source = source
        self.candidates = candidates  # share of the threshold (CANDIDATES)
        self.tracker = HeadTracker(fps=fps, threshold=threshold)
        self.counter = LineCounter(self.lines)
        self.cell = cell
        self.occupancy: np.ndarray | None = None  # tracked heads per cell, summed over frames
        self.frames = 0
        self.size: tuple[int, int] | None = None
        self.trails: dict[int, list[tuple[float, float]]] = {}
        self.trail = trail

    def update(self, frame: int, time_s: float, result, size: tuple[int, int],
               candidates=None) -> FlowState:
        """The state after one counted frame of ``size`` (height, width): ``result`` its
        counted heads, ``candidates`` (a superset, :data:`CANDIDATES`) what the tracker
        sees (default: the counted heads)."""
        if self.size is None:
            where = f"{self.source}: " if self.source else ""
            for line in self.lines:
                line.check(*size, where=where)
            self.size = size
            self.occupancy = np.zeros((-(-size[0] // self.cell), -(-size[1] // self.cell)))
        elif size != self.size:
            raise MaskfocalError(f"{self.source}: frame {frame} is {size[1]}x{size[0]}, the "
                                 f"clip began at {self.size[1]}x{self.size[0]}; tracks and "
                                 "lines need one frame size")
        seen = result if candidates is None else candidates
        tracks = self.tracker.update(seen.points, seen.scores, seen.boxes, time_s)
        crossings = self.counter.update(tracks)
        if tracks:
            where = np.asarray(list(tracks.values())) // self.cell
            rows = np.clip(where[:, 1].astype(int), 0, self.occupancy.shape[0] - 1)
            cols = np.clip(where[:, 0].astype(int), 0, self.occupancy.shape[1] - 1)
            np.add.at(self.occupancy, (rows, cols), 1)
        self.frames += 1
        for track, point in tracks.items():
            self.trails.setdefault(track, []).append(point)
            del self.trails[track][:-self.trail]
        for gone in set(self.trails) - set(tracks):
            del self.trails[gone]
        return FlowState(frame, time_s, result, tracks, crossings, self.counter.totals())

    def occupancy_density(self, sigma: float = 2.0) -> np.ndarray:
        """Heads per cell per frame, smoothed: where people were over the clip."""
        from scipy import ndimage

        if self.occupancy is None:
            return np.zeros((1, 1))
        return ndimage.gaussian_filter(self.occupancy / max(self.frames, 1), sigma)
