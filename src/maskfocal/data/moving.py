"""Synthetic *moving* crowds: people walking on the ground plane, with identities that last.

The ground truth for tracking and for counting people through lines. A sequence is one fixed
camera over one scene (ground, distractors, lighting: drawn once) in which people walk: each
keeps one look (clothes, skin, hair, hat) and one identity from the first frame to the last,
walks at their own speed (0.6-2.0 m/s) and heading (most along two crossing flows, each both
ways, some wandering, some standing), bobs and sways a little as they step, and passes behind
and in front of others as their depths cross (drawn far to near, as in still scenes). People
walk in and out of view at the edges. Each frame's annotation is what a still scene's is (a
head whose visible part is at least ``min_visible`` of it), plus the person's track id; the
true head point of every person, seen or hidden, is kept for counting line crossings.

Every sequence is a pure function of ``(seed, sequence)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from maskfocal.data.synthetic import (
    HEAD_HEIGHT_M,
    HEAD_RADIUS_X_M,
    HEAD_RADIUS_Y_M,
    SyntheticConfig,
    _background,
    _Camera,
    _Canvas,
    _draw_distractor,
    _finish,
    _Look,
    _paint_person,
)

__all__ = ["MovingConfig", "MovingFrame", "MovingSequence", "default_lines", "mean_in_view"]


@dataclass
class MovingConfig:
    """How a moving crowd is drawn: frame size, length, rate and how many people are in view
    on average (the density: people come and go at the edges, the mean stays)."""

    width: int = 640
    height: int = 480
    frames: int = 150
    fps: float = 25.0
    people: int = 40  # in view at a time, on average
    standing: float = 0.1  # share of people who stand (and sway) rather than walk
    min_visible: float = 0.4
    min_head_radius: float = 2.0  # px; smaller heads are drawn but not annotated
    noise: float = 4.0
    max_blur: float = 0.6

    def __post_init__(self) -> None:
        if self.width < 64 or self.height < 64:
            raise ValueError(f"frame size must be at least 64 x 64, got {self.width} x "
                             f"{self.height}")
        if self.frames < 1 or not self.fps > 0 or self.people < 0:
            raise ValueError("need frames >= 1, fps > 0 and people >= 0")

    def still(self) -> SyntheticConfig:
        return SyntheticConfig(width=self.width, height=self.height, noise=self.noise,
                               max_blur=self.max_blur, min_visible=self.min_visible,
                               min_head_radius=self.min_head_radius)


@dataclass
class MovingFrame:
    """One frame: pixels, the annotated heads (track ids from 1, boxes, visibility) and the
    true head point of every person (``heads[k]`` is track ``k + 1``, seen or not)."""

    index: int  # from 0
    pixels: np.ndarray  # (H, W, 3) uint8
    ids: np.ndarray  # (n,) int
    boxes: np.ndarray  # (n, 4) x1, y1, x2, y2
    visibility: np.ndarray  # (n,)
    heads: np.ndarray  # (people, 2) true head points of everyone, in view or not

    @property
    def points(self) -> np.ndarray:
        return (self.boxes[:, :2] + self.boxes[:, 2:]) / 2


def default_lines(width: int, height: int) -> dict:
    """The lines a synthetic sequence is made with (the lines file's format, flow.py): a gate
    across the frame (people walking up the image, away from the camera, come in) and one
    down the middle (people walking to the right come in)."""
    return {"lines": [
        {"name": "gate", "points": [[round(width * 0.06), round(height * 0.55)],
                                    [round(width * 0.94), round(height * 0.55)]], "in": "left"},
        {"name": "middle", "points": [[round(width * 0.5), round(height * 0.12)],
                                      [round(width * 0.5), round(height * 0.95)]],
         "in": "left"},
    ]}


class MovingSequence:
    """Sequence ``sequence`` of the stream ``seed``: iterate it for its frames.

    >>> clip = MovingSequence(MovingConfig(people=30), seed=0)
    >>> for frame in clip: ...   # MovingFrame, 150 of them
    """

    def __init__(self, config: MovingConfig | None = None, *, seed: int = 0,
                 sequence: int = 0) -> None:
        self.config = config = config or MovingConfig()
        self.seed, self.sequence = seed, sequence
        rng = np.random.default_rng([seed, sequence, 1])
        width, height = config.width, config.height
        # A camera looking down at the ground from above (no horizon in the frame), heads of
        # 9-16 px radius at the bottom row of a 640 x 480 frame.
        horizon = rng.uniform(-0.9, -0.3) * height
        focal = width * rng.uniform(0.8, 1.2)
        bottom_radius = rng.uniform(9, 16) * min(width, height) / 480
        lift = HEAD_RADIUS_Y_M * (height - horizon) / bottom_radius
        self.camera = _Camera(focal=focal, height=HEAD_HEIGHT_M + lift, horizon=horizon,
                              cx=width / 2)
        z_near = focal * lift / (height - horizon)
        z_far = min(focal * lift / -horizon, focal * HEAD_RADIUS_Y_M / 2.5)
        self.view = (z_near, max(z_far, z_near * 1.2))
        self.half_width = (width / 2) / focal  # lateral extent in view per metre of depth
        self._place_people(np.random.default_rng([seed, sequence, 2]))
        self.background = _background(config.still(), self.camera,
                                      np.random.default_rng([seed, sequence, 3]))
        count = int(rng.integers(0, 6))  # a few head-like distractors stand on the ground
        dz = np.sqrt(rng.uniform(z_near**2, self.view[1] ** 2, count))
        self.distractors = np.stack([rng.uniform(-1, 1, count) * self.half_width * dz, dz], 1)

    def _place_people(self, rng: np.random.Generator) -> None:
        """Everyone's ground position at the clip's middle, velocity, look and sway. People
        are spread over the view grown by the distance the fastest walk in half the clip, at
        the density that puts ``people`` in view on average."""
        config = self.config
        duration = config.frames / config.fps
        reach = 2.0 * duration / 2
        z_near, z_far = self.view
        grown = (max(z_near - reach, 0.5), z_far + reach)
        view_area = self.half_width * (z_far**2 - z_near**2)
        area = (self.half_width * (grown[1] ** 2 - grown[0] ** 2)
                + 2 * reach * (grown[1] - grown[0]))
        total = round(config.people * area / view_area)
        z = np.sqrt(rng.uniform(grown[0] ** 2, grown[1] ** 2, total))
        x = rng.uniform(-1, 1, total) * (self.half_width * z + reach)
        flow = rng.random(total)  # two crossing flows, each both ways, and some wandering
        heading = np.select([flow < 0.3, flow < 0.6, flow < 0.75, flow < 0.9],
                            [np.pi / 2, -np.pi / 2, 0.0, np.pi],
                            rng.uniform(0, 2 * np.pi, total))
        heading = heading + rng.normal(0, 0.25, total)
        speed = np.clip(rng.normal(1.3, 0.3, total), 0.6, 2.0)
        speed[rng.random(total) < config.standing] = 0.0
        self.middle = np.stack([x, z], 1)
        self.velocity = np.stack([np.cos(heading), np.sin(heading)], 1) * speed[:, None]
        self.stature = HEAD_HEIGHT_M + rng.normal(0, 0.06, total)
        self.size = rng.uniform(0.92, 1.08, (total, 2))
        self.phase = rng.uniform(0, 2 * np.pi, total)
        self.looks = [_Look.draw(np.random.default_rng([self.seed, self.sequence, 4, k]))
                      for k in range(total)]

    def __len__(self) -> int:
        return self.config.frames

    @property
    def people(self) -> int:
        return len(self.middle)

    def positions(self, index: int) -> np.ndarray:
        """(people, 3) ground x, depth z and head height of everyone at frame ``index``."""
        t = index / self.config.fps - self.config.frames / self.config.fps / 2
        walking = np.linalg.norm(self.velocity, axis=1) > 0
        step = 2 * np.pi * 1.8 * t + self.phase  # ~1.8 steps a second
        ground = self.middle + self.velocity * t
        sideways = np.stack([-self.velocity[:, 1], self.velocity[:, 0]], 1)
        sideways /= np.maximum(np.linalg.norm(sideways, axis=1, keepdims=True), 1e-9)
        sway = np.where(walking, 0.025, 0.01)[:, None] * np.sin(step / 2)[:, None]
        ground = ground + sideways * sway + (~walking)[:, None] * 0.01 * np.stack(
            [np.sin(step / 3), np.cos(step / 4)], 1)
        bob = np.where(walking, 0.02 * np.abs(np.sin(step)), 0.0)
        return np.column_stack([ground, self.stature + bob])

    def frame(self, index: int) -> MovingFrame:
        config = self.config
        width, height = config.width, config.height
        camera = self.camera
        x, z, up = self.positions(index).T
        ahead = z > 0.3
        u, v = camera.project(x, np.where(ahead, z, 1.0), up)
        rx = np.where(ahead, camera.focal * HEAD_RADIUS_X_M / np.maximum(z, 0.3), 0) * \
            self.size[:, 0]
        ry = np.where(ahead, camera.focal * HEAD_RADIUS_Y_M / np.maximum(z, 0.3), 0) * \
            self.size[:, 1]
        canvas = _Canvas(self.background.copy())
        objects = [(z[k], "person", k) for k in np.flatnonzero(ahead)]
        objects += [(dz, "distractor", k) for k, dz in enumerate(self.distractors[:, 1])]
        areas = np.zeros(self.people, np.float32)
        for _, kind, k in sorted(objects, key=lambda item: -item[0]):  # far to near
            if kind == "person":
                areas[k] = _paint_person(canvas, k, u[k], v[k], rx[k], ry[k], self.looks[k])
            else:
                du, dv = camera.project(self.distractors[k, 0], self.distractors[k, 1], 0.0)
                _draw_distractor(canvas, du, dv, camera.focal / self.distractors[k, 1],
                                 np.random.default_rng([self.seed, self.sequence, 5, k]))
        pixels = _finish(canvas.image, config.still(),
                         np.random.default_rng([self.seed, self.sequence, 6]),
                         noise=np.random.default_rng([self.seed, self.sequence, 7, index]))
        visible = np.bincount(canvas.owner[canvas.owner >= 0], minlength=self.people)
        centres = np.stack([u, v], 1)
        inside = ahead & ((centres >= 0) & (centres < [width, height])).all(axis=1)
        shown = visible >= config.min_visible * np.maximum(areas, 1)
        keep = np.flatnonzero(inside & shown & (rx >= config.min_head_radius) & (areas > 0))
        radii = np.stack([rx, ry], 1)[keep]
        boxes = np.clip(np.concatenate([centres[keep] - radii, centres[keep] + radii], 1),
                        0, [width, height, width, height]).astype(np.float32)
        visibility = np.clip(visible[keep] / np.maximum(areas[keep], 1), 0, 1)
        heads = np.where(ahead[:, None], centres, np.nan).astype(np.float32)
        return MovingFrame(index, pixels, keep + 1, boxes, visibility.astype(np.float32),
                           heads)

    def __iter__(self) -> Iterator[MovingFrame]:
        for index in range(len(self)):
            yield self.frame(index)


def mean_in_view(sequence: MovingSequence, every: int = 10) -> float:
    """The mean number of annotated heads per frame over every ``every``-th frame."""
    return float(np.mean([len(sequence.frame(i).ids) for i in range(0, len(sequence), every)]))

