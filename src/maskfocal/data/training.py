"""Torch datasets for training and evaluation, and the collate that pads to a stride."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from maskfocal.errors import DatasetError, MaskfocalError
from maskfocal.geometry import pseudo_boxes
from maskfocal.structures import AnnotatedImage

from .hard_negatives import MAX_WEIGHT, hard_negative_table
from .transforms import Sample, augment, to_tensor


def to_sample(annotated: AnnotatedImage) -> Sample:
    """Pixels and heads of an annotated image; point-only heads get pseudo boxes (MFL.md)."""
    image = to_tensor(annotated.load_image())
    points = torch.from_numpy(annotated.points.copy())
    if annotated.boxes is not None:
        boxes, has_boxes = torch.from_numpy(annotated.boxes.copy()), True
    else:
        boxes, has_boxes = torch.from_numpy(pseudo_boxes(annotated.points)), False
    return Sample(image, points, boxes, has_boxes)


@dataclass
class AugmentOptions:
    """The training augmentation. Declared once: the ``data`` section of the config is an
    :class:`AugmentOptions` (its keys are these fields)."""

    input_size: int = 512  # crop side, px
    min_scale: float = 0.7
    max_scale: float = 1.3
    flip: bool = True
    color_jitter: float = 0.3
    empty_crops: float = 0.0  # share of crops placed where no head is (when the image has room)
    hard_negatives: str | None = None  # a `maskfocal mine` file: false heads on training images
    hard_negative_crops: float = 0.0  # share of each epoch's crops placed around one of them
    cache_images: bool = False  # keep decoded training images in memory (each process)
    augment_on_device: bool = False  # keep them on the training device and augment there


def check_augment_options(options: AugmentOptions, workers: int) -> None:
    """Augmenting on the training device happens in the main process, beside the model."""
    if options.augment_on_device and workers > 0:
        raise MaskfocalError("data.augment_on_device keeps the images on the training device, "
                             "in the main process: set data.workers=0")


class TrainingSet(Dataset):
    """Augmented crops of annotated images; ``set_epoch`` changes the augmentation draw.

    With ``options.augment_on_device`` the decoded images are kept (8-bit) on ``device`` and
    scaled, cropped, flipped and jittered there: on a GPU the loader then costs little CPU
    (the random draws and the heads stay on the CPU, so a crop is the same on every device).
    """

    def __init__(self, images: Sequence[AnnotatedImage], options: AugmentOptions,
                 seed: int = 0, device: torch.device | str = "cpu") -> None:
        self.images = images
        self.options = options
        self.seed = seed
        self.device = torch.device(device) if options.augment_on_device else torch.device("cpu")
        self.epoch = 0
        self.reported: set[str] = set()
        self.cache: dict[int, Sample] = {}
        self.hard: list[tuple[int, np.ndarray]] = []  # (image position, false-head positions)
        self.extra = 0  # entries after the images: crops around a hard negative each
        if options.hard_negatives and options.hard_negative_crops > 0:
            self.hard = hard_negative_table(images, options.hard_negatives)
        if self.hard:
            share = options.hard_negative_crops
            self.extra = round(len(images) * share / (1 - share))
            weights = np.array([min(len(points), MAX_WEIGHT) for _, points in self.hard],
                               dtype=np.float64)
            self.hard_weights = weights / weights.sum()  # an image's share of those crops

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _sample(self, position: int) -> Sample:
        """Image ``position`` decoded; with ``cache_images`` its 8-bit pixels and heads are
        kept (a quarter of the float image's memory) and converted again on each use."""
        kept = self.cache.get(position)
        if kept is None:
            sample = to_sample(self.images[position])
            if not (self.options.cache_images or self.options.augment_on_device):
                return sample
            pixels = sample.image.mul(255).round_().to(torch.uint8).to(self.device)
            kept = Sample(pixels, sample.points, sample.boxes, sample.has_boxes)
            self.cache[position] = kept
        return Sample(kept.image.float().div_(255), kept.points, kept.boxes, kept.has_boxes)

    def __len__(self) -> int:
        return len(self.images) + self.extra

    def __getitem__(self, index: int | tuple[int, int]) -> Sample:
        """The augmented crop of image ``index``; an image that cannot be read (truncated,
        deleted since the dataset was read) is reported once and the next one stands in, so
        the epoch goes on. ``index`` may be ``(epoch, index)``: the augmentation of that epoch
        (what a persistent worker process, whose copy never sees :meth:`set_epoch`, needs)."""
        epoch = self.epoch
        if isinstance(index, tuple):
            epoch, index = index
        rng = np.random.default_rng([self.seed, epoch, index])
        focus, start = None, index
        if index >= len(self.images):  # a crop around a false head the model found
            start, points = self.hard[int(rng.choice(len(self.hard), p=self.hard_weights))]
            focus = tuple(points[int(rng.integers(len(points)))])
        for offset in range(len(self.images)):
            position = (start + offset) % len(self.images)
            try:
                sample = self._sample(position)
            except DatasetError as error:
                if str(error) not in self.reported:
                    self.reported.add(str(error))
                    print(f"warning: skipped in training: {error}", file=sys.stderr)
                continue
            o = self.options
            empty_crop = focus is None and o.empty_crops > 0 and rng.random() < o.empty_crops
            with _one_thread():
                return augment(sample, size=o.input_size, min_scale=o.min_scale,
                               max_scale=o.max_scale, flip=o.flip, jitter=o.color_jitter,
                               rng=rng, empty_crop=empty_crop,
                               focus=focus if position == start else None)
        raise DatasetError(self.images[start].image_path or "dataset",
                           "no training image could be read")


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run a crop's augmentation on one thread, as a loader worker process does: reductions such
    as the contrast jitter's mean round differently on 1 and N threads, so without this the
    crops of ``data.workers=0`` and of workers differ in the last bit and training drifts."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def pad_batch(images: Sequence[Tensor], multiple: int = 32, min_side: int = 0) -> Tensor:
    """Stack (3, H_i, W_i) images into (B, 3, H, W), zero-padded right and bottom so that H and
    W are the largest sizes (at least ``min_side``) rounded up to ``multiple``."""
    height = max(min_side, *(image.shape[1] for image in images))
    width = max(min_side, *(image.shape[2] for image in images))
    height, width = -(-height // multiple) * multiple, -(-width // multiple) * multiple
    return torch.stack([F.pad(image, (0, width - image.shape[2], 0, height - image.shape[1]))
                        for image in images])


def collate(samples: list[Sample]) -> tuple[Tensor, list[Sample]]:
    """(padded images (B, 3, H, W), the samples) for a DataLoader."""
    return pad_batch([sample.image for sample in samples]), samples


def detection_targets(samples: Sequence[Sample], device: torch.device | str = "cpu"
                      ) -> list[dict[str, Tensor]]:
    """The targets every detector takes in training (``model(images, targets)``), one dict per
    image: ``points`` (n, 2) and ``boxes`` (n, 4) in input pixels on ``device``, and
    ``real_boxes`` (a bool tensor: annotated boxes, or pseudo boxes around points)."""
    return [{"points": s.points.to(device), "boxes": s.boxes.to(device),
             "real_boxes": torch.tensor(s.has_boxes)} for s in samples]
