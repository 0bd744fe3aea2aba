"""Head-free training images: procedural textures and crops placed where no head is."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maskfocal.config import load_config
from maskfocal.data.negatives import TEXTURES, TextureImages, head_free_window, texture
from maskfocal.data.splits import build_splits
from maskfocal.data.training import AugmentOptions, TrainingSet
from maskfocal.structures import AnnotatedImage


@pytest.mark.parametrize("kind", TEXTURES)
def test_each_texture_is_an_image_with_structure_and_the_same_for_a_seed(kind):
    first = texture(kind, 64, 96, np.random.default_rng(3))
    again = texture(kind, 64, 96, np.random.default_rng(3))
    assert first.shape == (64, 96, 3) and first.dtype == np.uint8
    assert np.array_equal(first, again)
    assert first.std() > 8  # a texture, not a flat colour
    assert not np.array_equal(first, texture(kind, 64, 96, np.random.default_rng(4)))


def test_texture_images_have_no_heads_and_cycle_through_the_kinds():
    images = TextureImages(len(TEXTURES) + 1, size=64, seed=1)
    kinds = [images[i].meta["texture"] for i in range(len(images))]
    assert kinds == [*TEXTURES, TEXTURES[0]]
    assert all(len(images[i].points) == 0 for i in range(len(images)))
    assert images[0].load_image().shape == (64, 64, 3)
    with pytest.raises(IndexError):
        images[len(images)]


def test_head_free_window_keeps_its_margin_and_gives_up_when_full():
    rng = np.random.default_rng(0)
    points = np.array([[10.0, 10.0], [100.0, 100.0]], np.float32)
    for _ in range(20):
        found = head_free_window(points, 200, 200, 64, rng, margin=8)
        assert found is not None
        top, left = found
        x, y = points[:, 0], points[:, 1]
        assert not ((x > left - 8) & (x < left + 72) & (y > top - 8) & (y < top + 72)).any()
    grid = np.stack(np.meshgrid(np.arange(0, 200, 16), np.arange(0, 200, 16)), -1)
    assert head_free_window(grid.reshape(-1, 2).astype(np.float32), 200, 200, 64, rng) is None
    assert head_free_window(points, 50, 200, 64, rng) is None  # smaller than the window


def test_empty_crops_give_head_free_crops_where_there_is_room():
    pixels = np.zeros((400, 400, 3), np.uint8)
    points = np.array([[200.0, 200.0], [210.0, 190.0]], np.float32)  # heads in the middle
    image = AnnotatedImage(None, points, 400, 400, pixels=pixels)
    options = AugmentOptions(input_size=128, min_scale=1, max_scale=1, color_jitter=0)
    always = TrainingSet([image], AugmentOptions(**{**vars(options), "empty_crops": 1.0}))
    never = TrainingSet([image], options)
    assert all(len(always[(epoch, 0)].points) == 0 for epoch in range(10))
    counts = [len(never[(epoch, 0)].points) for epoch in range(40)]
    assert max(counts) > 0  # a random crop sometimes holds the heads


def test_negative_textures_join_training_only():
    config = load_config(overrides=["data.synthetic.train_images=4",
                                    "data.synthetic.val_images=2",
                                    "data.synthetic.test_images=0", "data.negative_textures=3",
                                    "data.input_size=64"])
    train, val, _ = build_splits(config.data)
    assert len(train) == 7 and len(val) == 2
    assert [len(image.points) for image in list(train)[4:]] == [0, 0, 0]
    sample = TrainingSet(train, config.data)[5]
    assert sample.image.shape == (3, 64, 64) and len(sample.points) == 0
    assert torch.isfinite(sample.image).all()
