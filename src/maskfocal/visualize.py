"""Pictures for people: heads drawn over an image, with the count in a corner."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from maskfocal.structures import AnnotatedImage


def draw_heads(image: np.ndarray, points: np.ndarray, boxes: np.ndarray | None = None, *,
               label: str | None = None, colour: tuple[int, int, int] = (40, 255, 90),
               ) -> Image.Image:
    """Boxes (or, without boxes, small circles at the points) over an (H, W, 3) uint8 image."""
    canvas = Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    if boxes is not None:
        for x1, y1, x2, y2 in np.asarray(boxes, dtype=float):
            draw.rectangle([x1, y1, x2, y2], outline=colour, width=1)
    else:
        radius = max(2.0, min(canvas.size) / 250)
        for x, y in np.asarray(points, dtype=float):
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], outline=colour,
                         width=1)
    if label:
        count_label(canvas, label)
    return canvas


def count_label(canvas: Image.Image, label: str, *, draw: bool = True
                ) -> tuple[float, float, float, float]:
    """The count in the top-left corner, white on black; its box (left, top, right, bottom),
    drawn or (``draw=False``) only measured."""
    pen = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=max(12, min(canvas.size) // 24))
    left, top, right, bottom = pen.textbbox((8, 6), label, font=font)
    box = (left - 4, top - 3, right + 4, bottom + 3)
    if draw:
        pen.rectangle(box, fill=(0, 0, 0))
        pen.text((8, 6), label, fill=(255, 255, 255), font=font)
    return box


def draw_annotated(annotated: AnnotatedImage, label: str | None = None) -> Image.Image:
    """An annotated image with its heads drawn and, by default, its count."""
    if label is None:
        label = heads_label(annotated.num_heads)
    return draw_heads(annotated.load_image(), annotated.points, annotated.boxes, label=label)


def blend_heatmap(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``heatmap`` (probabilities on any grid) resized to the image, coloured with matplotlib's
    ``inferno`` and blended in where it is high (opacity ``alpha * probability``)."""
    from matplotlib import colormaps

    height, width = image.shape[:2]
    resized = np.asarray(Image.fromarray(np.asarray(heatmap, dtype=np.float32))
                         .resize((width, height), Image.Resampling.BILINEAR)).clip(0, 1)
    colours = colormaps["inferno"](resized)[..., :3] * 255
    weight = (alpha * resized)[..., None]
    return (image * (1 - weight) + colours * weight).round().astype(np.uint8)


def heads_label(count: int) -> str:
    """``"1 head"``, ``"7 heads"``."""
    return f"{count} head" if count == 1 else f"{count} heads"


def draw_overlay(image: np.ndarray, result, *, heatmap_alpha: float = 0.5,
                 zones=None) -> Image.Image:
    """A :class:`~maskfocal.inference.CountResult` drawn over its image: the heatmap blended
    in when the result has one, boxes (or points), the count in the top-left corner, and with
    ``zones`` (:class:`~maskfocal.zones.Zones`) each zone's outline and its count."""
    pixels = np.asarray(image, dtype=np.uint8)
    if getattr(result, "heatmap", None) is not None:
        pixels = blend_heatmap(pixels, result.heatmap, heatmap_alpha)
    picture = draw_heads(pixels, result.points, result.boxes)
    label = heads_label(result.count)
    if zones is not None and result.zones is not None:
        draw_zones(picture, zones, result.zones, getattr(result, "density", None),
                   keep_clear=count_label(picture, label, draw=False))
    count_label(picture, label)  # last: nothing covers the total
    return picture


ZONE_COLOURS = ((255, 200, 0), (0, 200, 255), (255, 80, 200), (140, 255, 255), (255, 140, 60))


def draw_zones(picture: Image.Image, zones, counts: dict[str, int],
               density: dict[str, float] | None = None,
               keep_clear: tuple[float, float, float, float] | None = None) -> Image.Image:
    """Each zone's outline (a mask's edge pixels) and ``name: count`` (and people per m²) at
    its top-left corner, drawn onto ``picture`` in place; a label that would cover
    ``keep_clear`` (the total count's box) goes just below it."""
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=max(11, min(picture.size) // 40))
    width = max(2, min(picture.size) // 300)
    for number, zone in enumerate(zones.zones):
        colour = ZONE_COLOURS[number % len(ZONE_COLOURS)]
        if zone.polygon is not None:
            corners = [tuple(map(float, corner)) for corner in zone.polygon]
            draw.line([*corners, corners[0]], fill=colour, width=width, joint="curve")
            anchor = zone.polygon.min(axis=0)
        else:
            mask = zone.mask
            edge = mask & ~(np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1)
                            & np.roll(mask, -1, 1))
            ys, xs = np.nonzero(edge)
            pixels = np.asarray(picture)
            pixels = pixels.copy()
            pixels[ys, xs] = colour
            picture.paste(Image.fromarray(pixels))
            draw = ImageDraw.Draw(picture)
            anchor = np.array([xs.min(), ys.min()], dtype=float)
        text = f"{zone.name}: {counts[zone.name]}"
        if density is not None:
            text += f" ({density[zone.name]:.2f}/m2)"
        position = (float(anchor[0]) + 4, float(anchor[1]) + 4)
        left, top, right, bottom = draw.textbbox(position, text, font=font)
        if keep_clear is not None and _overlap((left - 3, top - 2, right + 3, bottom + 2),
                                               keep_clear):
            position = (position[0], keep_clear[3] + 4 + (position[1] - top))
            left, top, right, bottom = draw.textbbox(position, text, font=font)
        draw.rectangle([left - 3, top - 2, right + 3, bottom + 2], fill=(0, 0, 0))
        draw.text(position, text, fill=colour, font=font)
    return picture


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def contact_sheet(items: list[tuple[Image.Image, str]], *, thumb: int = 320,
                  columns: int = 4) -> Image.Image:
    """Thumbnails (longer side ``thumb`` px) in a grid, each captioned underneath."""
    columns = max(1, min(columns, len(items)))
    rows = -(-len(items) // columns)
    caption = 18
    font = ImageFont.load_default(size=12)
    sheet = Image.new("RGB", (columns * (thumb + 8) + 8, rows * (thumb + caption + 8) + 8),
                      (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for number, (picture, text) in enumerate(items):
        small = picture.copy()
        small.thumbnail((thumb, thumb))
        left = 8 + (number % columns) * (thumb + 8)
        top = 8 + (number // columns) * (thumb + caption + 8)
        sheet.paste(small, (left + (thumb - small.width) // 2, top + (thumb - small.height) // 2))
        draw.text((left, top + thumb + 3), text[:48], fill=(235, 235, 235), font=font)
    return sheet
