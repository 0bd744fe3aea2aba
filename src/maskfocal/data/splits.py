"""The train, validation and test images that a config's ``data`` section names."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from maskfocal.errors import MaskfocalError
from maskfocal.structures import AnnotatedImage

from .readers import extra_source, read_dataset
from .synthetic import SyntheticCrowds

DataConfig = Any  # maskfocal.config.DataConfig, not imported: the config imports this package

Splits = tuple[Sequence[AnnotatedImage], Sequence[AnnotatedImage], Sequence[AnnotatedImage]]


def build_splits(data: DataConfig, *, seed: int = 0) -> Splits:
    """(train, val, test) images; val is carved from train (``data.val_fraction``, drawn with
    ``seed``) when the dataset has no validation split. The training split of each
    ``data.extra_train`` source joins train; when validation is carved, the same share of
    each source is held out too (the threshold is calibrated on every kind of scene). Test
    images come from ``data.root`` alone. ``data.negative_textures`` head-free texture images
    join train."""
    if data.format == "synthetic":
        splits, carved = _synthetic_splits(data), False
    else:
        splits, carved = _read_splits(data, seed)
        splits = tuple(_rescaled(images, data.read_scale) for images in splits)
    if data.negative_textures:
        from .negatives import TextureImages

        textures = TextureImages(data.negative_textures, size=max(data.input_size, 256) * 2,
                                 seed=seed)
        splits = ([*splits[0], *(textures[i] for i in range(len(textures)))], *splits[1:])
    if not data.extra_train:
        return splits
    train, val = list(splits[0]), list(splits[1])
    for source in data.extra_train:
        format, root = extra_source(source)
        images = read_dataset(format, root, split=data.train_split).images
        images = _rescaled(images, data.read_scale)
        if carved:
            held, images = _carve(images, data.val_fraction, seed)
            val += held
        train += [image for image in images if image.labelled]
    return train, val, splits[2]


def _rescaled(images: Sequence[AnnotatedImage], factor: float) -> Sequence[AnnotatedImage]:
    """``images`` resized by ``factor`` when read (``data.read_scale``)."""
    return images if factor == 1 else [image.rescaled(factor) for image in images]


def source_roots(data: DataConfig) -> list[str | None]:
    """``data.root`` and the root of each ``data.extra_train`` source, in that order."""
    return [data.root, *(extra_source(source)[1] for source in data.extra_train)]


def sources(data: DataConfig, images: Sequence[AnnotatedImage]) -> list[str]:
    """The source of each image: the root (``data.root`` or one of ``data.extra_train``'s)
    whose folder holds its file, ``"other"`` for images without one (textures, synthetic
    scenes). Selection and calibration over several sources weigh each source the same
    (:func:`maskfocal.inference.scoring.balanced_threshold`)."""
    folders = [(str(root), Path(root).resolve()) for root in source_roots(data)
               if root is not None]
    return [next((root for root, folder in folders if image.image_path is not None
                  and Path(image.image_path).resolve().is_relative_to(folder)), "other")
            for image in images]


def _carve(images: Sequence[AnnotatedImage], fraction: float, seed: int
           ) -> tuple[list[AnnotatedImage], list[AnnotatedImage]]:
    """(held out, kept): ``fraction`` of ``images`` drawn with ``seed``, order kept."""
    order = np.random.default_rng(seed).permutation(len(images))
    held = max(1, round(len(images) * fraction))
    return ([images[i] for i in sorted(order[:held])],
            [images[i] for i in sorted(order[held:])])


def _synthetic_splits(data: DataConfig) -> Splits:
    s = data.synthetic
    splits = (SyntheticCrowds(s.train_images, seed=s.seed, config=s),
              SyntheticCrowds(s.val_images, seed=s.seed, config=s, offset=s.train_images),
              SyntheticCrowds(s.test_images, seed=s.seed, config=s,
                              offset=s.train_images + s.val_images))
    if s.cache:
        return tuple([crowds[i] for i in range(len(crowds))] for crowds in splits)
    return splits


def _read_splits(data: DataConfig, seed: int) -> tuple[Splits, bool]:
    """The splits of ``data.root``, and whether validation was carved from train."""
    train = read_dataset(data.format, data.root, split=data.train_split).images
    val: list[AnnotatedImage] = []
    if data.val_split is not None:
        try:
            val = read_dataset(data.format, data.root, split=data.val_split).images
        except MaskfocalError as error:
            if "no split" not in str(error):
                raise
            print(f"no {data.val_split!r} split; carving {data.val_fraction:.0%} of train "
                  "for validation", file=sys.stderr)
    carved = not val and data.val_fraction > 0
    if carved:
        val, train = _carve(train, data.val_fraction, seed)
    test: list[AnnotatedImage] = []
    if data.test_split is not None:
        test = read_dataset(data.format, data.root, split=data.test_split).images
    train = [image for image in train if image.labelled]
    if not train:
        raise MaskfocalError(f"{data.root}: no labelled training images")
    return (train, val, test), carved
