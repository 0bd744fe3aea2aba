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
        font = ImageFont.load_default(size=max(12, min(canvas.size) // 24))
        left, top, right, bottom = draw.textbbox((8, 6), label, font=font)
        draw.rectangle([left - 4, top - 3, right + 4, bottom + 3], fill=(0, 0, 0))
        draw.text((8, 6), label, fill=(255, 255, 255), font=font)
    return canvas


def draw_annotated(annotated: AnnotatedImage, label: str | None = None) -> Image.Image:
    """An annotated image with its heads drawn and, by default, its count."""
    if label is None:
        label = f"{annotated.num_heads} heads"
    return draw_heads(annotated.load_image(), annotated.points, annotated.boxes, label=label)
