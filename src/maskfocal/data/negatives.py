"""Images with nobody in them, for training a counter to say zero.

Two sources (``data.negative_textures`` and ``data.empty_crops``):

- :class:`TextureImages`: procedural textures that make head detectors see heads where there
  are none: grass, gravel, foliage, spots (leopard print, polka dots), stripes and brick. Each
  is drawn from a seed, so the set is the same in every run and process.
- :func:`head_free_window`: a crop window of a training image that holds no head (with a
  margin), for the share of training crops that ``data.empty_crops`` asks for.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from maskfocal.structures import AnnotatedImage

TEXTURES = ("grass", "gravel", "foliage", "spots", "stripes", "brick")


def _smooth_noise(shape: tuple[int, int], cell: float, rng: np.random.Generator) -> np.ndarray:
    """Low-frequency noise in about [-1, 1], features of ``cell`` px."""
    coarse = rng.normal(0, 1, (max(2, int(shape[0] / cell)) + 1, max(2, int(shape[1] / cell)) + 1))
    zoomed = ndimage.zoom(coarse, (shape[0] / coarse.shape[0] + 1e-3,
                                   shape[1] / coarse.shape[1] + 1e-3), order=1)
    return np.clip(zoomed[:shape[0], :shape[1]] / 2, -1, 1)


def _stamp_ellipses(image: np.ndarray, count: int, radius: tuple[float, float],
                    colours: np.ndarray, rng: np.random.Generator, *,
                    elongation: tuple[float, float] = (1.0, 1.0)) -> None:
    """Paint ``count`` random ellipses (rotated) into ``image`` (H, W, 3) in place."""
    height, width = image.shape[:2]
    for _ in range(count):
        r = rng.uniform(*radius)
        ry, rx = r, r * rng.uniform(*elongation)
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        angle = rng.uniform(0, np.pi)
        half = int(np.ceil(max(rx, ry))) + 1
        y0, y1 = max(0, int(cy) - half), min(height, int(cy) + half + 1)
        x0, x1 = max(0, int(cx) - half), min(width, int(cx) + half + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dy, dx = yy - cy, xx - cx
        u = dx * np.cos(angle) + dy * np.sin(angle)
        v = -dx * np.sin(angle) + dy * np.cos(angle)
        inside = (u / rx) ** 2 + (v / ry) ** 2 <= 1
        image[y0:y1, x0:x1][inside] = colours[rng.integers(len(colours))] * rng.uniform(0.8,
                                                                                       1.2)


STAMPED = {  # base colour, its brightness range, palette (None: from the base), pixels per
    # ellipse, radius range (px), elongation range
    "grass": ((60, 110, 40), (0.6, 1.3), [[40, 90, 30], [90, 150, 60], [120, 160, 70],
                                          [30, 60, 20], [150, 170, 90]], 12, (3.0, 7.0),
              (0.15, 0.35)),
    "gravel": ((130, 125, 115), (0.7, 1.2), None, 40, (2, 5), (0.6, 1.4)),
    "foliage": ((40, 70, 30), (0.6, 1.3), [[50, 100, 40], [80, 130, 50], [30, 60, 25],
                                           [110, 150, 60], [140, 120, 50]], 120, (4, 9),
                (0.4, 0.7)),
    "spots": ((200, 160, 90), (0.5, 1.2), [[30, 25, 20], [60, 40, 25], [240, 240, 240],
                                            [20, 20, 60]], 250, (3, 8), (0.7, 1.3)),
}


def texture(kind: str, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A (height, width, 3) uint8 texture of ``kind`` (one of :data:`TEXTURES`)."""
    shape = (height, width)
    scale = rng.uniform(0.6, 1.6)  # texture size relative to the defaults below
    area = height * width
    stamped = STAMPED.get(kind)
    if stamped is not None:  # a base colour under many small random ellipses
        base_colour, base_range, palette, per_pixel, radius, elongation = stamped
        base = np.array(base_colour, np.float32) * rng.uniform(*base_range)
        if palette is None:  # stones: shades of the ground itself
            palette = base[None] * rng.uniform(0.5, 1.5, (8, 1)) + rng.normal(0, 10, (8, 3))
        image = np.broadcast_to(base, (*shape, 3)).copy()
        _stamp_ellipses(image, int(area / (per_pixel * scale**2)),
                        (radius[0] * scale, radius[1] * scale), np.asarray(palette, np.float32),
                        rng, elongation=elongation)
    elif kind == "stripes":
        period = rng.uniform(6, 30) * scale
        angle = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        phase = (xx * np.cos(angle) + yy * np.sin(angle)) / period
        colours = rng.uniform(20, 235, (2, 3)).astype(np.float32)
        band = (np.sin(2 * np.pi * phase) > 0)[..., None]
        image = np.where(band, colours[0], colours[1])
    elif kind == "brick":
        brick_h = rng.uniform(6, 18) * scale
        brick_w = brick_h * rng.uniform(2, 3)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        row = np.floor(yy / brick_h)
        shifted = xx + (row % 2) * brick_w / 2
        mortar = ((yy % brick_h) < 1.5) | ((shifted % brick_w) < 1.5)
        brick = np.array([150, 70, 50], np.float32) * rng.uniform(0.6, 1.3)
        tint = rng.uniform(0.8, 1.2, (int(height / brick_h) + 2, int(width / brick_w) + 3))
        per_brick = tint[row.astype(int), np.floor(shifted / brick_w).astype(int)]
        image = np.where(mortar[..., None], np.array([190, 185, 175], np.float32),
                         brick * per_brick[..., None])
    else:
        raise ValueError(f"unknown texture {kind!r}; one of {TEXTURES}")
    image = image * (1 + 0.25 * _smooth_noise(shape, 40 * scale, rng))[..., None]  # light
    image += rng.normal(0, rng.uniform(2, 8), image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


class TextureImages:
    """``count`` head-free texture images of ``size`` x ``size``, cycling through
    :data:`TEXTURES`; ``images[i]`` is an :class:`AnnotatedImage` with no heads."""

    def __init__(self, count: int, *, size: int = 512, seed: int = 0) -> None:
        self.count = count
        self.size = size
        self.seed = seed

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> AnnotatedImage:
        if not 0 <= index < self.count:
            raise IndexError(index)
        kind = TEXTURES[index % len(TEXTURES)]
        rng = np.random.default_rng([self.seed, 7919, index])
        pixels = texture(kind, self.size, self.size, rng)
        return AnnotatedImage(None, np.zeros((0, 2), np.float32), self.size, self.size,
                              meta={"texture": kind}, pixels=pixels)


def head_free_window(points: np.ndarray, height: int, width: int, size: int,
                     rng: np.random.Generator, *, margin: float = 8.0,
                     tries: int = 20) -> tuple[int, int] | None:
    """(top, left) of a ``size`` x ``size`` window inside the image with no head within
    ``margin`` px of it, drawn at random (``tries`` draws); None when none was found (a dense
    image, or one smaller than the window)."""
    if height < size or width < size:
        return None
    for _ in range(tries):
        top = int(rng.integers(0, height - size + 1))
        left = int(rng.integers(0, width - size + 1))
        x, y = points[:, 0], points[:, 1]
        inside = ((x > left - margin) & (x < left + size + margin) &
                  (y > top - margin) & (y < top + size + margin))
        if not inside.any():
            return top, left
    return None
