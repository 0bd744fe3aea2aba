"""Joint image + heads transforms: random scale, crop, flip, colour jitter; resize for eval.

Every random choice comes from a numpy Generator passed in, so an epoch's augmentation is a
pure function of (seed, epoch, index) and a resumed run sees the same images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .negatives import head_free_window


@dataclass
class Sample:
    """One image ready for a model: (3, H, W) float in [0, 1], heads in its pixels."""

    image: Tensor
    points: Tensor  # (N, 2)
    boxes: Tensor  # (N, 4), real or pseudo
    has_boxes: bool


def to_tensor(pixels: np.ndarray) -> Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1]."""
    pixels = np.require(pixels, dtype=np.uint8, requirements=["C", "W"])  # copies only if needed
    return torch.from_numpy(pixels).permute(2, 0, 1).float().div_(255)


def resize(image: Tensor, scale: float) -> Tensor:
    height, width = image.shape[-2:]
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False,
                         antialias=scale < 1)[0]


def random_crop(sample: Sample, size: int, rng: np.random.Generator,
                at: tuple[int, int] | None = None) -> Sample:
    """A ``size`` x ``size`` window (zero-padded where the image is smaller), at random or
    with its top-left corner ``at`` (top, left); heads whose centre leaves the window are
    dropped, boxes are clipped to it."""
    _, height, width = sample.image.shape
    if at is None:
        top = int(rng.integers(0, max(height - size, 0) + 1))
        left = int(rng.integers(0, max(width - size, 0) + 1))
    else:
        top, left = at
    canvas = sample.image.new_zeros(3, size, size)
    window = sample.image[:, top:top + size, left:left + size]
    canvas[:, :window.shape[1], :window.shape[2]] = window
    shift = torch.tensor([left, top], dtype=torch.float32)
    points = sample.points - shift
    limit = torch.tensor([window.shape[2], window.shape[1]], dtype=torch.float32)
    keep = ((points >= 0) & (points < limit)).all(dim=1)
    boxes = (sample.boxes - shift.repeat(2))[keep]
    boxes = torch.minimum(boxes.clamp(min=0), limit.repeat(2))
    return Sample(canvas, points[keep], boxes, sample.has_boxes)


def window_around(x: float, y: float, height: int, width: int, size: int,
                  rng: np.random.Generator) -> tuple[int, int]:
    """The top-left corner (top, left) of a ``size`` window in a ``height`` x ``width`` image
    that holds (x, y) in its middle half where the image allows (shifted inside otherwise)."""
    top = round(y - size * float(rng.uniform(0.25, 0.75)))
    left = round(x - size * float(rng.uniform(0.25, 0.75)))
    return (int(min(max(top, 0), max(height - size, 0))),
            int(min(max(left, 0), max(width - size, 0))))


def hflip(sample: Sample) -> Sample:
    width = sample.image.shape[-1]
    points = sample.points.clone()
    points[:, 0] = width - points[:, 0]
    boxes = sample.boxes[:, [2, 1, 0, 3]].clone()
    boxes[:, [0, 2]] = width - boxes[:, [0, 2]]
    points[:, 0] = points[:, 0].clamp(max=np.nextafter(np.float32(width), np.float32(0)))
    return Sample(sample.image.flip(-1), points, boxes, sample.has_boxes)


def color_jitter(image: Tensor, strength: float, rng: np.random.Generator) -> Tensor:
    """Brightness, contrast and saturation each scaled by a factor in [1 - s, 1 + s]."""
    import torchvision.transforms.v2.functional as TF

    low, high = max(0.0, 1 - strength), 1 + strength
    image = TF.adjust_brightness(image, float(rng.uniform(low, high)))
    image = TF.adjust_contrast(image, float(rng.uniform(low, high)))
    return TF.adjust_saturation(image, float(rng.uniform(low, high)))


def augment(sample: Sample, *, size: int, min_scale: float, max_scale: float, flip: bool,
            jitter: float, rng: np.random.Generator, empty_crop: bool = False,
            focus: tuple[float, float] | None = None) -> Sample:
    """Training augmentation: scale, crop to ``size``, flip, colour jitter; heads follow.
    ``empty_crop``: a window with no head in it, where the image has one
    (:func:`~maskfocal.data.negatives.head_free_window`; otherwise a random one).
    ``focus``: a point (x, y, in the image's pixels) that the window holds, somewhere in its
    middle half (a hard negative's crop)."""
    scale = float(rng.uniform(min_scale, max_scale))
    image = resize(sample.image, scale)
    sample = Sample(image, sample.points * scale, sample.boxes * scale, sample.has_boxes)
    at = None
    if empty_crop:
        at = head_free_window(sample.points.numpy(), image.shape[1], image.shape[2], size, rng)
    elif focus is not None:
        at = window_around(focus[0] * scale, focus[1] * scale, image.shape[1], image.shape[2],
                           size, rng)
    sample = random_crop(sample, size, rng, at)
    if flip and rng.random() < 0.5:
        sample = hflip(sample)
    if jitter > 0:
        sample.image = color_jitter(sample.image, jitter, rng)
    return sample


def fit_pixels(pixels: np.ndarray, max_side: int, scale: float = 1.0) -> tuple[Tensor, float]:
    """:func:`fit_image` of an (H, W, 3) uint8 photo, shrunk while still 8-bit where it is
    shrunk: the float copy of an 8000 x 6000 photo alone is 576 MB, and antialiased bilinear
    resizing of uint8 (channels-last, as the photo lies) is torch's fast path. Within one
    grey level of resizing the float image, so the same heads to within that rounding."""
    height, width = pixels.shape[:2]
    scale = min(scale, max_side / max(height, width))
    if scale >= 1:  # enlarged or as it is: no float copy to save
        return fit_image(to_tensor(pixels), max_side, scale)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    batch = torch.from_numpy(np.require(pixels, np.uint8, ["C"])).permute(2, 0, 1)[None]
    small = F.interpolate(batch, size=size, mode="bilinear", align_corners=False,
                          antialias=True)[0]
    return small.float().div_(255), scale


def fit_image(image: Tensor, max_side: int, scale: float = 1.0) -> tuple[Tensor, float]:
    """A (3, H, W) image scaled by ``scale`` (test-time scale), and further down if its longer
    side would exceed ``max_side``; and the factor used (input pixels per original pixel)."""
    _, height, width = image.shape
    scale = min(scale, max_side / max(height, width))
    return (resize(image, scale) if scale != 1 else image), scale
