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


def _track_colour(track: int) -> tuple[int, int, int]:
    """A bright colour per track id, the same id always the same colour."""
    import colorsys

    red, green, blue = colorsys.hsv_to_rgb((track * 0.61803398875) % 1.0, 0.85, 1.0)
    return int(red * 255), int(green * 255), int(blue * 255)


def draw_flow(picture: Image.Image, flow, state) -> Image.Image:
    """Tracks (each head's recent path, one colour per track) and each line with an arrow to
    its "in" side and its in/out counts so far, drawn onto ``picture`` in place
    (:class:`~maskfocal.flow.Flow` and its :class:`~maskfocal.flow.FlowState`)."""
    draw = ImageDraw.Draw(picture)
    width = max(1, min(picture.size) // 400)
    for track in state.tracks:
        trail = flow.trails.get(track, [])
        colour = _track_colour(track)
        if len(trail) > 1:
            draw.line(trail, fill=colour, width=width)
        x, y = trail[-1] if trail else state.tracks[track]
        radius = 1.5 + width
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour)
    font = ImageFont.load_default(size=max(11, min(picture.size) // 40))
    thick = max(2, min(picture.size) // 250)
    for number, line in enumerate(flow.lines):
        colour = ZONE_COLOURS[number % len(ZONE_COLOURS)]
        points = [tuple(map(float, point)) for point in line.points]
        draw.line(points, fill=colour, width=thick, joint="curve")
        start, end = line.points[0], line.points[1]  # the arrow: off the first segment's middle
        middle, along = (start + end) / 2, (end - start) / np.linalg.norm(end - start)
        left = np.array([along[1], -along[0]])  # the walker's left, in y-down pixels
        tip = middle + (left if line.inside == "left" else -left) * 6 * thick
        draw.line([tuple(middle), tuple(tip)], fill=colour, width=thick)
        draw.ellipse([tip[0] - thick, tip[1] - thick, tip[0] + thick, tip[1] + thick],
                     fill=colour)
        totals = state.lines[line.name]
        label = f"{line.name}: in {totals['in']}  out {totals['out']}"
        x, y = points[0]
        box = draw.textbbox((x, y), label, font=font)
        x = min(max(x, 0), picture.size[0] - (box[2] - box[0]) - 4)
        y = min(max(y - (box[3] - box[1]) - 6, 0), picture.size[1] - (box[3] - box[1]) - 4)
        box = draw.textbbox((x + 2, y + 2), label, font=font)
        draw.rectangle([box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2], fill=(0, 0, 0))
        draw.text((x + 2, y + 2), label, fill=colour, font=font)
    return picture


def draw_occupancy(image: np.ndarray, density: np.ndarray, label: str = "occupancy"
                   ) -> Image.Image:
    """Where heads were over a clip: ``density`` (heads per cell per frame, on any grid over
    the image) as a heat map over ``image`` (the first frame), ``label`` in the corner."""
    from matplotlib import colormaps

    pixels = np.asarray(image, dtype=np.uint8)
    height, width = pixels.shape[:2]
    busy = density[density > 0]  # one standing person should not make the rest invisible
    top = float(np.quantile(busy, 0.98)) if busy.size else 0.0
    scaled = np.asarray(Image.fromarray((density / top if top > 0 else density)
                                        .astype(np.float32)).resize((width, height),
                                                                    Image.BILINEAR))
    colours = colormaps["inferno"](np.clip(scaled, 0, 1))[..., :3] * 255
    alpha = (0.75 * np.clip(scaled, 0, 1) ** 0.5)[..., None]
    blended = pixels * (1 - alpha) * 0.8 + colours * alpha  # the frame dimmed under the map
    picture = Image.fromarray(np.clip(blended, 0, 255).astype(np.uint8))
    count_label(picture, label)
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
