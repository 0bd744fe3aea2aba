"""Procedural crowd scenes with exact head boxes: the built-in default dataset.

GTA_Head, the synthetic dataset of the MFL paper, cannot be downloaded here, so the toolkit
ships this stand-in. A scene is a ground plane seen by a pinhole camera placed ``camera_height``
metres up; people stand on it, so heads grow towards the bottom of the frame. Counts per image
run from 0 to over 1,000 (log-uniform by default), laid out as even spreads, groups and queues.
People are drawn far to near (painter's order) with bodies, shoulders, skin, hair and hats, so
near people occlude far ones; distractors that look like heads (balls, lamps, round signs) are
drawn among them; then lighting gradients, sensor noise and blur. Only heads whose visible part
is at least ``min_visible`` of their area are annotated.

Every image is a pure function of ``(seed, index)``: the same pair gives the same bytes.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from maskfocal.structures import AnnotatedImage

__all__ = ["SyntheticConfig", "SyntheticCrowds", "generate_scene", "write_mot"]

HEAD_HEIGHT_M = 1.60  # height of a head centre above the ground
HEAD_RADIUS_X_M = 0.085
HEAD_RADIUS_Y_M = 0.11
SHOULDER_HALF_WIDTH_M = 0.23

SKIN = np.array([[255, 219, 172], [241, 194, 125], [224, 172, 105], [198, 134, 66],
                 [141, 85, 36], [92, 58, 34], [236, 188, 180]], dtype=np.float32)
HAIR = np.array([[20, 17, 15], [35, 28, 24], [60, 42, 30], [95, 66, 45], [140, 100, 60],
                 [200, 170, 110], [170, 170, 170], [120, 50, 30], [10, 10, 12]],
                dtype=np.float32)
CLOTHES = np.array([[30, 30, 35], [200, 200, 205], [40, 60, 120], [150, 30, 35],
                    [50, 100, 60], [210, 180, 60], [90, 90, 95], [120, 80, 140],
                    [230, 120, 40], [60, 140, 170], [110, 70, 50], [240, 240, 240]],
                   dtype=np.float32)
GROUND = np.array([[105, 105, 108], [130, 125, 115], [85, 120, 70], [160, 150, 130],
                   [120, 95, 75], [175, 170, 165], [70, 72, 78]], dtype=np.float32)
WALL = np.array([[150, 160, 175], [190, 185, 175], [120, 110, 100], [175, 200, 225],
                 [90, 95, 105]], dtype=np.float32)


COUNT_DISTRIBUTIONS = ("loguniform", "uniform")
"""How the number of people in a scene is drawn between ``min_count`` and ``max_count``."""


@dataclass
class SyntheticConfig:
    """How scenes are drawn. Every field has a working default. Declared once: the config's
    ``data.synthetic`` section is a :class:`SyntheticConfig` (its keys are these fields)."""

    width: int = 640
    height: int = 480
    min_count: int = 0
    max_count: int = 1500
    count_distribution: str = "loguniform"  # a value of COUNT_DISTRIBUTIONS
    empty_fraction: float = 0.03  # share of images with nobody at all
    max_distractors: int = 12
    min_visible: float = 0.4  # share of a head's area that must show for it to be annotated
    min_head_radius: float = 1.5  # px; smaller heads are drawn but not annotated
    noise: float = 6.0  # maximum std of the sensor noise, in grey levels
    max_blur: float = 1.0  # maximum Gaussian blur sigma, px

    def __post_init__(self) -> None:
        if self.width < 16 or self.height < 16:
            raise ValueError(f"image size must be at least 16 x 16, got {self.width} x "
                             f"{self.height}")
        if not 0 <= self.min_count <= self.max_count:
            raise ValueError("need 0 <= min_count <= max_count")
        if self.count_distribution not in COUNT_DISTRIBUTIONS:
            raise ValueError(f"count_distribution must be one of {COUNT_DISTRIBUTIONS}")


@dataclass
class _Camera:
    focal: float  # px
    height: float  # m above the ground
    horizon: float  # image row of the horizon (may be above the frame)
    cx: float

    def project(self, x: np.ndarray, z: np.ndarray, up: float | np.ndarray) -> tuple:
        """Image (u, v) of world points at lateral x, depth z and height ``up`` (metres)."""
        return self.cx + self.focal * x / z, self.horizon + self.focal * (self.height - up) / z


def _sample_count(config: SyntheticConfig, rng: np.random.Generator) -> int:
    if rng.random() < config.empty_fraction or config.max_count == 0:
        return 0
    low = max(config.min_count, 1)
    if config.count_distribution == "uniform":
        return int(rng.integers(low, config.max_count + 1))
    return round(math.exp(rng.uniform(math.log(low), math.log(config.max_count + 0.5))))


def _ground_positions(count: int, z_range: tuple[float, float],
                      half_width: float, rng: np.random.Generator) -> np.ndarray:
    """(count, 2) ground positions (x, z) mixing even spreads, groups and queues."""
    z_near, z_far = z_range
    shares = rng.dirichlet([1.0, 1.0, 0.6])
    counts = np.floor(shares * count).astype(int)
    counts[0] += count - counts.sum()
    parts = []
    # Even spread: a jittered grid thinned at random, uniform over the visible ground.
    if counts[0]:
        area = half_width * (z_far**2 - z_near**2)  # ground area in view, m^2
        spacing = max(0.45, 0.9 * math.sqrt(area / counts[0]))
        zs = np.arange(z_near, z_far, spacing)
        grid = []
        for z in zs:  # one row of the grid per depth step, so a loop over rows, not heads
            w = half_width * z
            xs = np.arange(-w, w, spacing) + rng.uniform(0, spacing)
            grid.append(np.stack([xs, np.full_like(xs, z)], axis=1))
        grid = np.concatenate(grid) if grid else np.zeros((0, 2))
        grid += rng.normal(0, 0.18 * spacing, grid.shape)
        take = rng.permutation(len(grid))[: counts[0]]
        parts.append(grid[take])
        if len(take) < counts[0]:
            counts[1] += counts[0] - len(take)
    # Groups: people gathered around a few centres.
    if counts[1]:
        groups = int(rng.integers(1, max(2, counts[1] // 15) + 1))
        centre_z = np.sqrt(rng.uniform(z_near**2, z_far**2, groups))
        centres = np.stack([rng.uniform(-1, 1, groups) * half_width * centre_z, centre_z], 1)
        member = rng.integers(0, groups, counts[1])
        spread = rng.uniform(0.5, 3.0, groups)[member, None]
        parts.append(centres[member] + rng.normal(0, 1, (counts[1], 2)) * spread)
    # Queues: lines of people roughly 0.6 m apart.
    if counts[2]:
        queues = int(rng.integers(1, max(2, counts[2] // 25) + 1))
        member = np.sort(rng.integers(0, queues, counts[2]))
        rank = np.arange(counts[2]) - np.searchsorted(member, member)
        start_z = np.sqrt(rng.uniform(z_near**2, z_far**2, queues))
        start = np.stack([rng.uniform(-1, 1, queues) * half_width * start_z, start_z], 1)
        angle = rng.uniform(0, 2 * np.pi, queues)
        direction = np.stack([np.cos(angle), np.sin(angle)], 1)
        step = rng.uniform(0.5, 0.8, queues)
        along = (rank * step[member])[:, None] * direction[member]
        parts.append(start[member] + along + rng.normal(0, 0.08, (counts[2], 2)))
    positions = np.concatenate(parts) if parts else np.zeros((0, 2))
    positions[:, 1] = np.clip(positions[:, 1], z_near * 0.98, None)
    return positions


def _background(config: SyntheticConfig, camera: _Camera, rng: np.random.Generator):
    """(H, W, 3) float32 textured ground under the horizon, walls and windows above it."""
    height, width = config.height, config.width
    rows = np.arange(height, dtype=np.float32)[:, None]
    cols = np.arange(width, dtype=np.float32)[None, :]
    ground_colour = GROUND[rng.integers(len(GROUND))] * rng.uniform(0.8, 1.15)
    below = np.maximum(rows - camera.horizon, 0.5)
    z = camera.focal * camera.height / below  # depth of each ground pixel (H, 1)
    x = (cols - camera.cx) * z / camera.focal  # lateral position (H, W)
    tile = rng.uniform(0.5, 2.0)
    pattern_kind = rng.integers(3)
    if pattern_kind == 0:  # paving tiles
        pattern = ((np.floor(x / tile) + np.floor(z / tile)) % 2) * 2 - 1
    elif pattern_kind == 1:  # stripes
        pattern = np.sin(z / tile * np.pi) * np.ones_like(x)
    else:  # plain with grain
        pattern = np.zeros_like(x)
    contrast = rng.uniform(3, 14) * np.clip(30 / (z + 1e-3), 0, 1)  # fades with distance
    image = np.broadcast_to(ground_colour, (height, width, 3)).astype(np.float32).copy()
    image += (pattern * contrast)[..., None]
    # Low-frequency stains and wear: a coarse random field upsampled.
    coarse = rng.normal(0, 1, (max(2, height // 24), max(2, width // 24), 1))
    coarse = coarse * (1 + rng.normal(0, 0.15, (1, 1, 3)))  # mostly brightness, a little hue
    image += ndimage.zoom(coarse, (height / coarse.shape[0], width / coarse.shape[1], 1),
                          order=1)[:height, :width] * rng.uniform(4, 12)
    if camera.horizon > 0:  # a wall or facade behind the crowd, with windows
        top = int(min(height, math.ceil(camera.horizon)))
        wall = WALL[rng.integers(len(WALL))] * rng.uniform(0.8, 1.1)
        facade = np.broadcast_to(wall, (top, width, 3)).astype(np.float32).copy()
        window_w, window_h = rng.uniform(12, 40), rng.uniform(10, 30)
        wx = (cols % (window_w * 1.8)) < window_w
        wy = (rows[:top] % (window_h * 1.9)) < window_h
        glass = np.array([60, 75, 95], np.float32) * rng.uniform(0.6, 1.3)
        windows = (wx & wy)[..., None]
        facade = np.where(windows, glass, facade)
        image[:top] = facade
    return image


def _ellipse_alpha(xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, rx: float,
                   ry: float, power: float = 2.0) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of an axis-aligned (super)ellipse over a pixel patch.

    ``power`` 2 is an ellipse; 4 is a rounded box (shoulders and torso).
    """
    d = (np.abs((xx - cx) / rx) ** power + np.abs((yy - cy) / ry) ** power) ** (1 / power)
    return np.clip((1 - d) * min(rx, ry) + 0.5, 0, 1)


class _Canvas:
    """A float image plus an owner map recording which head, if any, each pixel shows."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = image
        self.owner = np.full(image.shape[:2], -1, dtype=np.int32)
        self.height, self.width = image.shape[:2]

    def patch(self, x0: float, y0: float, x1: float, y1: float):
        ix0, iy0 = max(math.floor(x0), 0), max(math.floor(y0), 0)
        ix1, iy1 = min(math.ceil(x1) + 1, self.width), min(math.ceil(y1) + 1, self.height)
        if ix0 >= ix1 or iy0 >= iy1:
            return None
        yy, xx = np.mgrid[iy0:iy1, ix0:ix1].astype(np.float32) + 0.5
        return (slice(iy0, iy1), slice(ix0, ix1)), xx, yy

    def paint(self, region, alpha: np.ndarray, colour: np.ndarray, owner: int = -1,
              shade: np.ndarray | None = None) -> None:
        if shade is not None:
            colour = colour * shade[..., None]
        target = self.image[region]
        target += (colour - target) * alpha[..., None]
        self.owner[region][alpha > 0.5] = owner


@dataclass(frozen=True)
class _Look:
    """How one person looks: clothes, skin, hair and its style (a person keeps it while they
    walk through a clip)."""

    clothes: np.ndarray
    neck: np.ndarray | None = None
    light: float = 0.0  # where the light falls on the head, -1 left .. 1 right
    skin: np.ndarray | None = None
    hair: np.ndarray | None = None
    style: float = 0.0  # < 0.25 seen from behind, < 0.85 a hair cap, else a hat
    cap_lift: float = 0.0
    hat: np.ndarray | None = None

    @classmethod
    def draw(cls, rng: np.random.Generator, *, neck: bool = True, head: bool = True) -> _Look:
        """A look drawn from ``rng``; without ``neck`` or ``head`` (off the canvas) their
        colours are not drawn, so a still scene's random stream is what it always was."""
        clothes = CLOTHES[rng.integers(len(CLOTHES))] * rng.uniform(0.7, 1.15)
        neck_colour = SKIN[rng.integers(len(SKIN))] * 0.8 if neck else None
        if not head:
            return cls(clothes, neck_colour)
        light = rng.uniform(-0.6, 0.6)
        skin = SKIN[rng.integers(len(SKIN))] * rng.uniform(0.85, 1.1)
        hair = HAIR[rng.integers(len(HAIR))]
        style = rng.random()
        cap_lift = rng.uniform(0.25, 0.45) if 0.25 <= style < 0.85 else 0.0
        hat = CLOTHES[rng.integers(len(CLOTHES))] if style >= 0.85 else None
        return cls(clothes, neck_colour, light, skin, hair, style, cap_lift, hat)


def _person_patches(canvas: _Canvas, u: float, v: float, rx: float, ry: float):
    """The body's and the head's pixel patches (None where off the canvas)."""
    shoulder = rx * SHOULDER_HALF_WIDTH_M / HEAD_RADIUS_X_M
    torso_top = v + ry * 1.1
    body = canvas.patch(u - shoulder * 1.3, torso_top, u + shoulder * 1.3, torso_top + ry * 9)
    return body, canvas.patch(u - rx * 1.5, v - ry * 1.6, u + rx * 1.5, v + ry * 1.2)


def _draw_person(canvas: _Canvas, index: int, u: float, v: float, rx: float, ry: float,
                 rng: np.random.Generator) -> float:
    """Draw one person with a look drawn from ``rng``; returns the head's drawn area in px."""
    body, head = _person_patches(canvas, u, v, rx, ry)
    look = _Look.draw(rng, neck=body is not None, head=head is not None)
    return _paint_person(canvas, index, u, v, rx, ry, look, (body, head))


def _paint_person(canvas: _Canvas, index: int, u: float, v: float, rx: float, ry: float,
                  look: _Look, patches=None) -> float:
    """Paint body, shoulders and head of one person; returns the head's drawn area in px."""
    body, got = patches or _person_patches(canvas, u, v, rx, ry)
    # Body: shoulders and torso as a wide ellipse below the head, legs as a darker column.
    shoulder = rx * SHOULDER_HALF_WIDTH_M / HEAD_RADIUS_X_M
    clothes = look.clothes
    torso_top = v + ry * 1.1
    if body is not None:
        region, xx, yy = body
        torso = _ellipse_alpha(xx, yy, u, torso_top + ry * 2.4, shoulder, ry * 2.4, power=3.5)
        legs = ((np.abs(xx - u) < shoulder * 0.6) & (yy > torso_top + ry * 3.5)).astype(
            np.float32)
        shade = 1 - 0.25 * np.clip((xx - u) / (shoulder + 1e-6), -1, 1)
        canvas.paint(region, legs, clothes * 0.55)
        canvas.paint(region, torso, clothes, shade=shade)
        neck = _ellipse_alpha(xx, yy, u, torso_top, rx * 0.45, ry * 0.35)
        canvas.paint(region, neck, look.neck)
    # Head: skin ellipse, hair cap (or full hair seen from behind), maybe a hat.
    if got is None:
        return 0.0
    region, xx, yy = got
    head = _ellipse_alpha(xx, yy, u, v, rx, ry)
    shade = 1.05 - 0.35 * np.clip(((xx - u - look.light * rx) / rx) ** 2
                                  + ((yy - v) / ry) ** 2, 0, 1)
    canvas.paint(region, head, look.skin, owner=index, shade=shade)
    area = float((head > 0.5).sum())
    if look.style < 0.25:  # seen from behind: hair covers the head
        canvas.paint(region, head * 0.97, look.hair, owner=index, shade=shade)
    elif look.style < 0.85:  # hair cap on the top of the head
        cap = _ellipse_alpha(xx, yy, u, v - ry * look.cap_lift, rx * 1.05, ry * 0.8)
        canvas.paint(region, cap * head, look.hair, owner=index, shade=shade)
        if rx > 3:  # a face hint: eyes and a darker brow band
            for side in (-1, 1):
                eye = _ellipse_alpha(xx, yy, u + side * rx * 0.38, v + ry * 0.05,
                                     max(rx * 0.13, 0.6), max(ry * 0.08, 0.5))
                canvas.paint(region, eye * head * 0.8, np.array([30, 25, 25], np.float32),
                             owner=index)
    else:  # a hat: a coloured crown and brim over the top half
        crown = _ellipse_alpha(xx, yy, u, v - ry * 0.45, rx * 1.08, ry * 0.7)
        canvas.paint(region, crown * (yy < v + ry * 0.05), look.hat, owner=index, shade=shade)
        brim = _ellipse_alpha(xx, yy, u, v - ry * 0.1, rx * 1.45, ry * 0.18)
        canvas.paint(region, brim, look.hat * 0.85, owner=index)
    return area


def _draw_distractor(canvas: _Canvas, u: float, v_ground: float, scale: float,
                     rng: np.random.Generator) -> None:
    """A ball on the ground, a lamp on a pole, or a round sign on a post; none are heads."""
    kind = rng.integers(3)
    if kind == 0:  # ball lying on the ground, head-sized or a little larger
        r = scale * rng.uniform(0.09, 0.16)
        got = canvas.patch(u - r, v_ground - 2 * r, u + r, v_ground)
        if got is not None:
            region, xx, yy = got
            colour = np.concatenate([SKIN, HAIR, CLOTHES])[rng.integers(28)]
            shade = 1.1 - 0.4 * np.clip(((xx - u) / r) ** 2 + ((yy - v_ground + r) / r) ** 2,
                                        0, 1)
            canvas.paint(region, _ellipse_alpha(xx, yy, u, v_ground - r, r, r), colour,
                         shade=shade)
        return
    pole_height = scale * rng.uniform(1.8, 3.5)
    r = scale * rng.uniform(0.1, 0.22)
    top = v_ground - pole_height
    got = canvas.patch(u - r * 1.2, top - r * 1.2, u + r * 1.2, v_ground)
    if got is None:
        return
    region, xx, yy = got
    pole = ((np.abs(xx - u) < max(scale * 0.04, 0.6)) & (yy > top)).astype(np.float32)
    canvas.paint(region, pole, np.array([60, 60, 65], np.float32))
    if kind == 1:  # lamp: a bright globe
        colour = np.array([250, 240, 200], np.float32)
    else:  # round sign: red, blue or white disc
        colour = np.array([[200, 30, 30], [30, 70, 180], [235, 235, 235]],
                          np.float32)[rng.integers(3)]
    canvas.paint(region, _ellipse_alpha(xx, yy, u, top, r, r), colour)


def _finish(image: np.ndarray, config: SyntheticConfig, rng: np.random.Generator,
            noise: np.random.Generator | None = None) -> np.ndarray:
    """Lighting gradient, blur and sensor noise (its pixels from ``noise``, by default from
    ``rng``); returns uint8."""
    height, width = image.shape[:2]
    angle = rng.uniform(0, 2 * np.pi)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = (np.cos(angle) * cols / width + np.sin(angle) * rows / height)
    image *= (rng.uniform(0.75, 1.1) + rng.uniform(0, 0.35) * (ramp - ramp.mean()))[..., None]
    sigma = rng.uniform(0, config.max_blur)
    if sigma > 0.2:
        image = ndimage.gaussian_filter(image, (sigma, sigma, 0))
    image += (noise or rng).normal(0, rng.uniform(0, config.noise),
                               image.shape).astype(np.float32)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def generate_scene(config: SyntheticConfig, seed: int, index: int = 0,
                   count: int | None = None) -> AnnotatedImage:
    """Draw scene ``index`` of the stream ``seed``; pixels are in ``.pixels`` (H, W, 3) uint8.

    ``count`` fixes how many people are placed (before occlusion removes some from the
    annotation); by default it is drawn from the configured distribution.
    """
    rng = np.random.default_rng([seed, index])
    height, width = config.height, config.width
    people = _sample_count(config, rng) if count is None else count
    # Camera: the horizon anywhere from well above the frame (looking down) to its upper part.
    horizon = rng.uniform(-0.7, 0.25) * height
    focal = width * rng.uniform(0.7, 1.4)
    half_width = (width / 2 + 20) / focal  # visible lateral extent per metre of depth
    # The camera height sets the scale: depths scale with lift = camera height - head height,
    # ground areas with its square. Draw the head size at the bottom row, then shrink it only
    # as far as needed to fit this many people at no more than the maximum density.
    max_density = rng.uniform(2.0, 4.5)  # people per m^2 in the densest scenes
    top_row = max(horizon + 1.0, -height * 0.02)

    def visible_area(lift: float) -> tuple[float, float, float]:
        z_near = focal * lift / (height * 1.02 - horizon)
        # Farther than this a head is under ~2 px in radius: nobody is placed there.
        z_far = min(focal * lift / (top_row - horizon), focal * HEAD_RADIUS_Y_M / 2.2)
        return z_near, z_far, half_width * max(z_far**2 - z_near**2, 1e-6)

    min_lift = math.sqrt(max(people, 1) / max_density / visible_area(1.0)[2])
    largest = HEAD_RADIUS_Y_M * (height - horizon) / min_lift
    scale = min(height, width) / 480
    bottom_radius = math.exp(rng.uniform(math.log(5 * scale), math.log(45 * scale)))
    bottom_radius = float(np.clip(min(bottom_radius, largest), 2.5, 60 * scale))
    lift = HEAD_RADIUS_Y_M * (height - horizon) / bottom_radius
    density = max_density
    camera = _Camera(focal=focal, height=HEAD_HEIGHT_M + lift, horizon=horizon,
                     cx=width * rng.uniform(0.35, 0.65))
    z_near, z_far, area = visible_area(lift)
    if people and people / area > density:  # too many for the ground: crowd the near part
        z_far = math.sqrt(min(z_far**2, z_near**2 + people / density / half_width))
    positions = _ground_positions(people, (z_near, max(z_far, z_near * 1.01)),
                                  half_width, rng)
    # Distractors stand on the same ground.
    num_distractors = int(rng.integers(0, config.max_distractors + 1))
    dz = np.sqrt(rng.uniform(z_near**2, max(z_far, z_near * 1.5) ** 2, num_distractors))
    dx = rng.uniform(-1, 1, num_distractors) * half_width * dz
    objects = [(z, "person", i) for i, z in enumerate(positions[:, 1])]
    objects += [(z, "distractor", i) for i, z in enumerate(dz)]
    objects.sort(key=lambda item: -item[0])  # far to near: near objects occlude far ones

    canvas = _Canvas(_background(config, camera, rng))
    centres = np.zeros((len(positions), 2), np.float32)
    radii = np.zeros((len(positions), 2), np.float32)
    areas = np.zeros(len(positions), np.float32)
    for z, kind, i in objects:  # one iteration per object: each paints a small patch
        if kind == "person":
            x = positions[i, 0]
            u, v = camera.project(np.float64(x), np.float64(z), HEAD_HEIGHT_M
                                  + rng.normal(0, 0.05))
            rx, ry = focal * HEAD_RADIUS_X_M / z, focal * HEAD_RADIUS_Y_M / z
            rx, ry = rx * rng.uniform(0.9, 1.1), ry * rng.uniform(0.9, 1.1)
            centres[i], radii[i] = (u, v), (rx, ry)
            areas[i] = _draw_person(canvas, i, u, v, rx, ry, rng)
        else:
            u, v_ground = camera.project(dx[i], z, 0.0)
            _draw_distractor(canvas, u, v_ground, focal / z, rng)
    pixels = _finish(canvas.image, config, rng)

    visible = np.bincount(canvas.owner[canvas.owner >= 0], minlength=len(positions))
    inside = ((centres >= 0) & (centres < [width, height])).all(axis=1)
    shown = visible[: len(positions)] >= config.min_visible * np.maximum(areas, 1)
    keep = inside & shown & (radii[:, 0] >= config.min_head_radius) & (areas > 0)
    boxes = np.concatenate([centres - radii, centres + radii], axis=1)[keep]
    boxes = np.clip(boxes, 0, [width, height, width, height])
    visibility = np.clip(visible[: len(positions)] / np.maximum(areas, 1), 0, 1)[keep]
    return AnnotatedImage(
        image_path=None, points=centres[keep], boxes=boxes, width=width, height=height,
        attributes={"visibility": visibility.astype(np.float32)},
        meta={"name": f"synthetic-{seed}-{index:06d}", "seed": seed, "index": index,
              "people_placed": people},
        pixels=pixels)


class SyntheticCrowds:
    """An indexable stream of synthetic scenes, drawn on the fly: ``crowds[i]`` is scene i.

    >>> crowds = SyntheticCrowds(num_images=100, seed=0)
    >>> scene = crowds[3]   # AnnotatedImage with .pixels, .points, .boxes
    """

    def __init__(self, num_images: int, *, seed: int = 0,
                 config: SyntheticConfig | None = None, offset: int = 0) -> None:
        if num_images < 0:
            raise ValueError("num_images must be >= 0")
        self.num_images = num_images
        self.seed = seed
        self.config = config or SyntheticConfig()
        self.offset = offset

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> AnnotatedImage:
        if not -self.num_images <= index < self.num_images:
            raise IndexError(index)
        return generate_scene(self.config, self.seed, self.offset + index % self.num_images)


def clear_mot(folder: str | Path) -> int:
    """Remove what :func:`write_mot` wrote into one split folder earlier: its sequences'
    frames (``synth-*/img1/NNNNNN.jpg``), ``gt/gt.txt`` and ``seqinfo.ini``, and the folders
    they leave empty. Anything else stays. Returns how many files went.

    A second, smaller set written into the same place would otherwise sit beside the first
    one's extra frames, which no ``gt.txt`` row describes (people read as background)."""
    import re

    removed = 0
    for sequence in sorted(Path(folder).glob("synth-*")):
        if not sequence.is_dir():
            continue
        ours = [path for path in (sequence / "img1").glob("*.jpg")
                if re.fullmatch(r"\d{6}\.jpg", path.name)]
        ours += [path for path in (sequence / "gt" / "gt.txt", sequence / "seqinfo.ini")
                 if path.is_file()]
        for path in ours:
            path.unlink()
            removed += 1
        for empty in (sequence / "img1", sequence / "gt", sequence):
            if empty.is_dir() and not any(empty.iterdir()):
                empty.rmdir()
    return removed


def write_mot(root: str | Path, splits: dict[str, int], *, seed: int = 0,
              config: SyntheticConfig | None = None, frames_per_sequence: int = 50,
              quality: int = 95, progress: bool = False) -> dict[str, int]:
    """Write synthetic scenes in the GTA_Head / MOTChallenge layout that the ``mot`` reader reads.

    ``splits`` maps a split name to its number of images, e.g. ``{"train": 32, "val": 8}``.
    Split k's images are scenes of the stream ``seed`` numbered after those of splits before it,
    so no scene appears twice. Files: ``<root>/<split>/synth-<split>-<nn>/img1/<frame>.jpg``,
    ``gt/gt.txt`` (``frame,id,left,top,width,height,1,1,visibility``) and ``seqinfo.ini``.
    Each file is written to a temporary name and renamed. Returns the heads per split.
    """
    from tqdm import tqdm

    from maskfocal.fileio import atomic_write_bytes

    config = config or SyntheticConfig()
    root = Path(root)
    offset = 0
    heads: dict[str, int] = {}
    total = sum(splits.values())
    with tqdm(total=total, desc="synthesising", unit="img", disable=not progress) as bar:
        for split, num_images in splits.items():
            heads[split] = 0
            for start in range(0, num_images, frames_per_sequence):
                length = min(frames_per_sequence, num_images - start)
                sequence = root / split / f"synth-{split}-{start // frames_per_sequence:02d}"
                (sequence / "img1").mkdir(parents=True, exist_ok=True)
                (sequence / "gt").mkdir(exist_ok=True)
                rows = []
                for frame in range(1, length + 1):
                    scene = generate_scene(config, seed, offset + start + frame - 1)
                    buffer = io.BytesIO()
                    Image.fromarray(scene.pixels).save(buffer, format="JPEG", quality=quality)
                    atomic_write_bytes(sequence / "img1" / f"{frame:06d}.jpg", buffer.getvalue())
                    boxes = scene.boxes if scene.boxes is not None else np.zeros((0, 4))
                    for head, (box, seen) in enumerate(zip(boxes, scene.attributes["visibility"],
                                                           strict=True), start=1):
                        rows.append(f"{frame},{head},{box[0]:.2f},{box[1]:.2f},"
                                    f"{box[2] - box[0]:.2f},{box[3] - box[1]:.2f},1,1,{seen:.3f}")
                    heads[split] += scene.num_heads
                    bar.update(1)
                atomic_write_bytes(sequence / "gt" / "gt.txt", ("\n".join(rows) + "\n").encode())
                info = (f"[Sequence]\nname={sequence.name}\nimDir=img1\nframeRate=1\n"
                        f"seqLength={length}\nimWidth={config.width}\nimHeight={config.height}\n"
                        f"imExt=.jpg\n")
                atomic_write_bytes(sequence / "seqinfo.ini", info.encode())
            offset += num_images
    return heads
