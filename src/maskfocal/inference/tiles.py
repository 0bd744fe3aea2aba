"""Sliding-window tiles for images too large to run whole, and merging heads across tiles.

Each tile overlaps its neighbours by at least ``overlap`` pixels, so a head near a tile border
is seen whole by one of them. Every pixel belongs to exactly one tile's *core* (the tile
minus half of each overlap): a tile keeps only the heads whose point lies in its core, so
a head seen by two tiles is kept once. A head whose predicted point moves across the core
border between the two tiles' views would still be kept twice; :func:`merge_across_tiles`
removes such pairs (points from different tiles closer than a radius; the higher score
stays).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

ALIGN = 4  # tile origins on multiples of the output stride, so heatmaps stitch exactly
# scaled pixels: a longer side above this is counted in tiles. Off by default: on SCUT-HEAD B's
# 11 test photos over 2,048 px (phone photos, large heads) the shipped model counted MAE 5.45
# scaled down to data.max_eval_side, 44.1 in tiles at its input scale (docs/usage.md)
TILE_ABOVE: int | None = None
TILE_SIZE = 1024  # scaled pixels: the side of a tile as the network sees it
TILE_OVERLAP = 128  # scaled pixels: the least overlap of neighbouring tiles
MERGE_RADIUS = 8.0  # original pixels: heads of two tiles closer than this are one


@dataclass(frozen=True)
class Tile:
    """A window ``[x0, x1) x [y0, y1)`` and its core ``[cx0, cx1) x [cy0, cy1)``."""

    x0: int
    y0: int
    x1: int
    y1: int
    cx0: int
    cy0: int
    cx1: int
    cy1: int


def tile_spans(length: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """(start, end, core start, core end) of windows covering ``[0, length)`` along one axis.

    Windows are ``tile`` long (the last may be up to ``ALIGN - 1`` longer), start on multiples
    of ``ALIGN`` and overlap by at least ``overlap``; cores split each overlap in the middle.
    """
    if overlap < 0:
        raise ValueError(f"tile overlap {overlap} must be >= 0")
    if tile <= overlap:
        raise ValueError(f"tile size {tile} must exceed the overlap {overlap}")
    step = tile - overlap - ALIGN  # ALIGN spare: flooring a start may take up to ALIGN - 1
    if step <= 0:  # refused for every length, not only for those that need a second tile
        raise ValueError(f"tile size {tile} must exceed the overlap {overlap} by more than "
                         f"{ALIGN}")
    if length <= tile:
        return [(0, length, 0, length)]
    count = int(np.ceil((length - tile) / step)) + 1
    last = (length - tile) // ALIGN * ALIGN
    starts = sorted({round(i * last / (count - 1)) // ALIGN * ALIGN for i in range(count)})
    ends = [min(start + tile, length) for start in starts]
    ends[-1] = length
    cores = [0] + [(starts[i] + ends[i - 1]) // 2 for i in range(1, len(starts))] + [length]
    return [(starts[i], ends[i], cores[i], cores[i + 1]) for i in range(len(starts))]


def plan_tiles(height: int, width: int, tile: int, overlap: int) -> list[Tile]:
    """Tiles covering an image, row by row."""
    return [Tile(x0, y0, x1, y1, cx0, cy0, cx1, cy1)
            for y0, y1, cy0, cy1 in tile_spans(height, tile, overlap)
            for x0, x1, cx0, cx1 in tile_spans(width, tile, overlap)]


def in_core(points: np.ndarray, tile: Tile) -> np.ndarray:
    """Which image-pixel points lie in the tile's core."""
    x, y = points[:, 0], points[:, 1]
    return (x >= tile.cx0) & (x < tile.cx1) & (y >= tile.cy0) & (y < tile.cy1)


def merge_across_tiles(points: np.ndarray, scores: np.ndarray, tile_ids: np.ndarray,
                       radius: float) -> np.ndarray:
    """Indices of heads kept after merging pairs from different tiles within ``radius`` px.

    Greedy by score, like NMS on points: a head is dropped when a kept head of another tile
    lies within the radius. Heads of the same tile are never merged (the model separated them).
    """
    if len(points) < 2 or radius <= 0:
        return np.arange(len(points))
    pairs = cKDTree(points).query_pairs(radius, output_type="ndarray")
    pairs = pairs[tile_ids[pairs[:, 0]] != tile_ids[pairs[:, 1]]]
    if len(pairs) == 0:
        return np.arange(len(points))
    neighbours: dict[int, list[int]] = {}
    for a, b in pairs:
        neighbours.setdefault(int(a), []).append(int(b))
        neighbours.setdefault(int(b), []).append(int(a))
    dropped = np.zeros(len(points), dtype=bool)
    for index in np.argsort(-scores, kind="stable"):
        if dropped[index]:
            continue
        for other in neighbours.get(int(index), ()):
            dropped[other] = True
    return np.flatnonzero(~dropped)
