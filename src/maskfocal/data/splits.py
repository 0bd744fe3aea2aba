"""The train, validation and test images that a config's ``data`` section names."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from maskfocal.errors import MaskfocalError
from maskfocal.structures import AnnotatedImage

from .readers import read_dataset
from .synthetic import SyntheticCrowds

if TYPE_CHECKING:
    from maskfocal.config import DataConfig

Splits = tuple[Sequence[AnnotatedImage], Sequence[AnnotatedImage], Sequence[AnnotatedImage]]


def build_splits(data: DataConfig, *, seed: int = 0) -> Splits:
    """(train, val, test) images; val is carved from train (``data.val_fraction``, drawn with
    ``seed``) when the dataset has no validation split."""
    if data.format == "synthetic":
        s = data.synthetic
        splits = (SyntheticCrowds(s.train_images, seed=s.seed, config=s),
                  SyntheticCrowds(s.val_images, seed=s.seed, config=s, offset=s.train_images),
                  SyntheticCrowds(s.test_images, seed=s.seed, config=s,
                                  offset=s.train_images + s.val_images))
        if s.cache:
            return tuple([crowds[i] for i in range(len(crowds))] for crowds in splits)
        return splits
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
    if not val and data.val_fraction > 0:
        order = np.random.default_rng(seed).permutation(len(train))
        held = max(1, round(len(train) * data.val_fraction))
        val = [train[i] for i in sorted(order[:held])]
        train = [train[i] for i in sorted(order[held:])]
    test: list[AnnotatedImage] = []
    if data.test_split is not None:
        test = read_dataset(data.format, data.root, split=data.test_split).images
    train = [image for image in train if image.labelled]
    if not train:
        raise MaskfocalError(f"{data.root}: no labelled training images")
    return train, val, test
