"""Regions of interest: heads counted per named zone, and people per square metre.

A zone file (JSON; an example is ``docs/zones_example.json``)::

    {"zones": [{"name": "gate A", "polygon": [[x, y], [x, y], [x, y], ...]},
               {"name": "pen", "mask": "pen.png"}],
     "ground": {"pixels_per_metre": 42.0}}

- A **polygon** is in image pixels (x right, y down), at least three corners, simple (its
  edges do not cross) and inside the image. A head counts in it when its point lies inside or
  **on its boundary** (edges and corners included: shapely's ``covers``).
- A **mask** names a PNG (relative to the zone file) of the image's size; the head counts when
  the pixel holding its point (``floor(x), floor(y)``) is not black.
- Zones may overlap or nest: a head counts in every zone that holds it. A head found a
  fraction of a pixel past the image's border is counted on the border.
- **ground** (optional) turns counts into people per m²: ``pixels_per_metre`` (a camera looking
  straight down, or a flat scene at one depth), or ``{"image": four [x, y], "metres": four
  [X, Y]}``, four image points with their positions on the ground in metres (a homography).
  Both assume a flat ground, and heads as if they stood on it: a head's point is about 1.6 m
  above its feet, so with an oblique camera each person is placed a little farther away than
  where they stand; the zone's area is measured on the ground plane.
- Keys other than these are errors (``"grund"`` is not ignored), and coordinates are numbers
  (``"0"`` is not one). ``"lines"`` may be in the same file, for people flow in video: one
  file serves both, and zones ignore it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maskfocal.errors import MaskfocalError

__all__ = ["Ground", "Zone", "Zones", "check_images", "load_zones", "zones_from_dict",
           "zones_from_json"]


@dataclass(frozen=True)
class Ground:
    """The ground plane's scale: ``pixels_per_metre``, or a homography image -> metres."""

    pixels_per_metre: float | None = None
    homography: np.ndarray | None = None  # (3, 3): image pixels -> ground metres

    def area(self, polygon: np.ndarray | None = None, mask: np.ndarray | None = None) -> float:
        """Square metres of a polygon ((n, 2) image corners) or a mask (per-pixel)."""
        if self.homography is None:
            pixels = _shoelace(polygon) if polygon is not None else float(mask.sum())
            return pixels / self.pixels_per_metre ** 2
        if polygon is not None:
            return _shoelace(_apply(self.homography, polygon))
        ys, xs = np.nonzero(mask)  # each pixel's area on the ground: |det J| at its centre
        return float(np.abs(_jacobian_det(self.homography, xs + 0.5, ys + 0.5)).sum())


@dataclass(frozen=True)
class Zone:
    """One named region: a simple polygon or a mask."""

    name: str
    polygon: np.ndarray | None = None  # (n, 2) x, y
    mask: np.ndarray | None = None  # (H, W) bool

    def contains(self, points: np.ndarray) -> np.ndarray:
        """(n,) bool: which (n, 2) points lie in the zone (polygon boundary included)."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if self.mask is not None:
            height, width = self.mask.shape
            xs, ys = np.floor(points[:, 0]).astype(int), np.floor(points[:, 1]).astype(int)
            xs[xs == width], ys[ys == height] = width - 1, height - 1  # on the far border
            inside = (xs >= 0) & (ys >= 0) & (xs < width) & (ys < height)
            found = np.zeros(len(points), bool)
            found[inside] = self.mask[ys[inside], xs[inside]]
            return found
        import shapely

        return shapely.covers(shapely.Polygon(self.polygon), shapely.points(points))

    def check(self, height: int, width: int, source: str) -> None:
        """A one-line error when this zone does not fit an image of this size."""
        if self.mask is not None:
            if self.mask.shape != (height, width):
                raise MaskfocalError(f"{source}: zone {self.name!r}: its mask is "
                                     f"{self.mask.shape[1]}x{self.mask.shape[0]}, the image "
                                     f"{width}x{height}")
            return
        xs, ys = self.polygon[:, 0], self.polygon[:, 1]
        if xs.min() < 0 or ys.min() < 0 or xs.max() > width or ys.max() > height:
            raise MaskfocalError(f"{source}: zone {self.name!r} reaches outside the "
                                 f"{width}x{height} image (x {xs.min():g}..{xs.max():g}, "
                                 f"y {ys.min():g}..{ys.max():g})")


@dataclass(frozen=True)
class Zones:
    """The zones of one file, in its order, and the ground scale if it gives one."""

    zones: tuple[Zone, ...]
    ground: Ground | None = None
    source: str = "zones"

    @property
    def names(self) -> list[str]:
        return [zone.name for zone in self.zones]

    def check(self, height: int, width: int, where: str | None = None) -> None:
        """A one-line error when a zone does not fit an image of this size (``where``: what
        the message names, default the zone file)."""
        for zone in self.zones:
            zone.check(height, width, where or self.source)

    def count(self, points: np.ndarray, height: int, width: int) -> dict[str, int]:
        """Heads in each zone, for points of an image of this size. A point a fraction of a
        pixel past the image's border (a head on the edge, as a decoder may place it) is
        moved onto the border first, so a zone that covers the image counts every head."""
        self.check(height, width)
        points = np.clip(np.asarray(points, np.float64).reshape(-1, 2), 0, [width, height])
        return {zone.name: int(zone.contains(points).sum()) for zone in self.zones}

    def density(self, counts: dict[str, int]) -> dict[str, float] | None:
        """People per m² of each zone (None without a ground scale)."""
        if self.ground is None:
            return None
        return {zone.name: counts[zone.name] / self.ground.area(zone.polygon, zone.mask)
                for zone in self.zones}

    def areas(self) -> dict[str, float] | None:
        """Square metres of each zone on the ground (None without a ground scale)."""
        if self.ground is None:
            return None
        return {zone.name: self.ground.area(zone.polygon, zone.mask) for zone in self.zones}


def check_images(zones: Zones, paths) -> None:
    """A one-line error, before any counting, when a zone does not fit one of these image
    files (their upright size is read from the header; unreadable files are left to the
    caller, which skips them)."""
    from PIL import Image

    for path in paths:
        try:
            with Image.open(path) as image:
                width, height = image.size
                if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # turned a quarter
                    width, height = height, width
        except (OSError, ValueError, SyntaxError):
            continue
        zones.check(height, width, f"{zones.source} on {path}")


def load_zones(path: str | Path) -> Zones:
    """The zones of a JSON zone file (module docstring); a file that is not one is a
    one-line error naming it and what is wrong."""
    path = Path(path)
    return zones_from_dict(read_json_file(path, "zone"), str(path), path.parent)


def read_json_file(path: Path, kind: str):
    """The content of a JSON ``kind`` file (zone, lines); one that is missing or not JSON is
    a one-line error naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MaskfocalError(f"{path}: no such {kind} file") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise MaskfocalError(f"{path}: not a JSON {kind} file ({error})") from None


def zones_from_json(text: str, source: str = "zones") -> Zones:
    """Zones from the text of a zone file (the web service's form field): polygons only, as
    there is no folder for mask files to be in."""
    try:
        data = json.loads(text)
    except ValueError as error:
        raise MaskfocalError(f"{source}: not JSON ({error})") from None
    return zones_from_dict(data, source, None)


FILE_KEYS = ("zones", "ground", "lines")
"""What a zone file may hold: the zones, the ground scale, and the lines of people flow (one
file drawn once serves ``--zones`` and ``--lines``; each reads its own key)."""
ZONE_KEYS = ("name", "polygon", "mask")
GROUND_KEYS = ("pixels_per_metre", "image", "metres")


def _known(entry: dict, keys: tuple[str, ...], where: str) -> None:
    """An unknown key is an error (a misspelt ``"grund"`` would otherwise be ignored)."""
    unknown = [key for key in entry if key not in keys]
    if unknown:
        raise MaskfocalError(f"{where}: unknown key {unknown[0]!r}; the keys here are "
                             f"{', '.join(keys)}")


def _all_numbers(value) -> bool:
    """Whether ``value`` is a number or nested lists of numbers only (``"0"`` is not one)."""
    if isinstance(value, list):
        return all(_all_numbers(item) for item in value)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def named_entries(data, kind: str, keys: tuple[str, ...], source: str, example: str
                  ) -> Iterator[tuple[str, str, dict]]:
    """(name, where, entry) of each entry of a zone file's ``kind + "s"`` list (``zones``,
    ``lines``): a non-empty list of objects, each with a non-empty ``name`` used once and no
    key but ``keys``; ``example`` shows the expected shape in the error."""
    if isinstance(data, dict):
        _known(data, FILE_KEYS, source)
    entries = data.get(f"{kind}s") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise MaskfocalError(f'{source}: expected {{"{kind}s": [{example}, ...]}} with at '
                             f"least one {kind}")
    seen = set()
    for number, entry in enumerate(entries, 1):
        where = f"{source}: {kind} {number}"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) \
                or not entry["name"].strip():
            raise MaskfocalError(f"{where}: needs a non-empty \"name\"")
        _known(entry, keys, f"{source}: {kind} {entry['name']!r}")
        name = entry["name"]
        if name in seen:
            raise MaskfocalError(f"{where}: the name {name!r} is used twice")
        seen.add(name)
        yield name, f"{source}: {kind} {name!r}", entry


def zones_from_dict(data, source: str, folder: Path | None) -> Zones:
    """Zones from a zone file's content; ``folder`` holds its mask files (None: no masks)."""
    zones = []
    for name, where, entry in named_entries(data, "zone", ZONE_KEYS, source,
                                            '{"name": ..., "polygon": [[x, y], ...]}'):
        if ("polygon" in entry) == ("mask" in entry):
            raise MaskfocalError(f"{where}: give either \"polygon\" or \"mask\"")
        if "polygon" in entry:
            zones.append(Zone(name, polygon=_polygon(entry["polygon"], where)))
        elif folder is None:
            raise MaskfocalError(f"{where}: mask zones need a zone file beside the mask; give "
                                 "polygons here")
        else:
            zones.append(Zone(name, mask=_mask(folder, entry["mask"], where)))
    ground = _ground(data.get("ground"), f"{source}: ground") if "ground" in data else None
    return Zones(tuple(zones), ground, source)


def _polygon(value, where: str) -> np.ndarray:
    import shapely

    try:
        corners = np.asarray(value, dtype=np.float64) if _all_numbers(value) else np.zeros(0)
    except (TypeError, ValueError):
        corners = np.zeros((0,))
    if corners.ndim != 2 or corners.shape[1] != 2 or not np.isfinite(corners).all():
        raise MaskfocalError(f"{where}: \"polygon\" must be a list of [x, y] numbers")
    if len(corners) > 1 and np.array_equal(corners[0], corners[-1]):
        corners = corners[:-1]  # a closed ring written out: the same polygon
    if len(corners) < 3:
        raise MaskfocalError(f"{where}: a polygon needs at least 3 corners, got {len(corners)}")
    polygon = shapely.Polygon(corners)
    if np.linalg.matrix_rank(corners - corners[0], tol=1e-9) < 2:
        raise MaskfocalError(f"{where}: the polygon is empty (its corners lie on one line)")
    if not polygon.is_valid:
        reason = shapely.is_valid_reason(polygon)
        raise MaskfocalError(f"{where}: the polygon crosses itself ({reason}); list its "
                             "corners in order around it")
    return corners


def _mask(folder: Path, name, where: str) -> np.ndarray:
    from PIL import Image

    if not isinstance(name, str):
        raise MaskfocalError(f"{where}: \"mask\" must name a PNG file")
    file = folder / name
    try:
        with Image.open(file) as image:
            mask = np.asarray(image.convert("L")) > 0
    except FileNotFoundError:
        raise MaskfocalError(f"{where}: no such mask file {file}") from None
    except OSError as error:
        raise MaskfocalError(f"{where}: cannot read the mask {file} ({error})") from None
    if not mask.any():
        raise MaskfocalError(f"{where}: the mask {file} is empty (all black)")
    return mask


def _ground(value, where: str) -> Ground:
    if isinstance(value, dict):
        _known(value, GROUND_KEYS, where)
    if isinstance(value, dict) and "pixels_per_metre" in value:
        scale = value["pixels_per_metre"]
        if not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
            raise MaskfocalError(f"{where}: pixels_per_metre must be a number > 0")
        return Ground(pixels_per_metre=float(scale))
    if isinstance(value, dict) and {"image", "metres"} <= set(value):
        try:
            if not (_all_numbers(value["image"]) and _all_numbers(value["metres"])):
                raise ValueError("not numbers")
            image = np.asarray(value["image"], dtype=np.float64)
            metres = np.asarray(value["metres"], dtype=np.float64)
        except (TypeError, ValueError):
            image = metres = np.zeros(0)
        if image.shape != (4, 2) or metres.shape != (4, 2) or not (
                np.isfinite(image).all() and np.isfinite(metres).all()):
            raise MaskfocalError(f"{where}: \"image\" and \"metres\" must each be four [x, y]")
        return Ground(homography=_homography(image, metres, where))
    raise MaskfocalError(f'{where}: expected {{"pixels_per_metre": number}} or '
                         '{"image": four [x, y], "metres": four [X, Y]}')


def _homography(source: np.ndarray, target: np.ndarray, where: str) -> np.ndarray:
    """The 3x3 H with target ~ H @ [source, 1] from four correspondences (direct linear
    transform, h33 = 1)."""
    rows, values = [], []
    for (x, y), (u, v) in zip(source, target, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        values += [u, v]
    matrix = np.asarray(rows)
    if abs(np.linalg.det(matrix)) < 1e-9:
        raise MaskfocalError(f"{where}: three of the four points lie on one line (no "
                             "homography through them)")
    return np.append(np.linalg.solve(matrix, np.asarray(values)), 1.0).reshape(3, 3)


def _apply(homography: np.ndarray, points: np.ndarray) -> np.ndarray:
    mapped = np.c_[points, np.ones(len(points))] @ homography.T
    return mapped[:, :2] / mapped[:, 2:]


def _jacobian_det(h: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """det of the homography's Jacobian at (x, y): the ground area of one pixel there."""
    w = h[2, 0] * x + h[2, 1] * y + h[2, 2]
    return np.linalg.det(h) / w ** 3


def _shoelace(corners: np.ndarray) -> float:
    x, y = corners[:, 0], corners[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)
