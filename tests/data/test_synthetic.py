from __future__ import annotations

import hashlib

import numpy as np
import pytest

from maskfocal.data.readers import read_dataset
from maskfocal.data.synthetic import SyntheticConfig, SyntheticCrowds, generate_scene, write_mot

SMALL = SyntheticConfig(width=160, height=120, max_count=300)


def test_same_seed_same_scene_different_seed_differs():
    first = generate_scene(SMALL, seed=3, index=5)
    again = generate_scene(SMALL, seed=3, index=5)
    other = generate_scene(SMALL, seed=4, index=5)
    assert np.array_equal(first.pixels, again.pixels)
    assert np.array_equal(first.boxes, again.boxes)
    assert not np.array_equal(first.pixels, other.pixels)


def test_annotations_are_consistent():
    for index in range(12):
        scene = generate_scene(SMALL, seed=0, index=index)
        assert scene.pixels.shape == (120, 160, 3) and scene.pixels.dtype == np.uint8
        assert scene.num_heads <= scene.meta["people_placed"]
        centres = (scene.boxes[:, :2] + scene.boxes[:, 2:]) / 2
        inside = (scene.points >= 0).all() and (scene.points < [160, 120]).all()
        assert inside
        # boxes are clipped at the border, so centres agree away from it
        interior = ((scene.boxes[:, :2] > 0) & (scene.boxes[:, 2:] < [160, 120])).all(axis=1)
        np.testing.assert_allclose(centres[interior], scene.points[interior], atol=1e-3)
        assert (scene.attributes["visibility"] >= SMALL.min_visible - 1e-6).all()


def test_counts_span_sparse_to_dense_and_empty():
    config = SyntheticConfig(width=320, height=240)
    counts = [generate_scene(config, 0, i).num_heads for i in range(60)]
    assert min(counts) == 0
    assert max(counts) > 150
    assert generate_scene(config, 0, 0, count=0).num_heads == 0


def test_perspective_heads_grow_towards_the_bottom():
    scene = generate_scene(SyntheticConfig(), seed=1, index=0, count=600)
    heights = scene.boxes[:, 3] - scene.boxes[:, 1]
    rows = scene.points[:, 1]
    assert np.corrcoef(rows, heights)[0, 1] > 0.5


def test_occlusion_hides_some_heads():
    scene = generate_scene(SyntheticConfig(min_visible=0.0), seed=2, index=1, count=800)
    visible = generate_scene(SyntheticConfig(), seed=2, index=1, count=800)
    assert visible.num_heads < scene.num_heads


def test_crowds_sequence():
    crowds = SyntheticCrowds(4, seed=1, config=SMALL)
    assert len(crowds) == 4
    assert np.array_equal(crowds[-1].pixels, crowds[3].pixels)
    with pytest.raises(IndexError):
        crowds[4]


def test_write_mot_round_trip_and_bytes(tmp_path):
    heads = write_mot(tmp_path / "a", {"train": 3, "val": 2}, seed=7, config=SMALL,
                      frames_per_sequence=2)
    write_mot(tmp_path / "b", {"train": 3, "val": 2}, seed=7, config=SMALL,
              frames_per_sequence=2)
    dataset = read_dataset("mot", tmp_path / "a")
    assert len(dataset) == 5 and not dataset.report.counts and not dataset.report.skipped
    assert sum(i.num_heads for i in dataset.images if i.meta["split"] == "train") == \
        heads["train"]
    scene = generate_scene(SMALL, 7, 3)  # the first val image follows the 3 train ones
    val = next(i for i in dataset.images if i.meta["split"] == "val")
    np.testing.assert_allclose(val.boxes, scene.boxes, atol=0.01)

    def digest(root):
        return [hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
                if p.is_file()]

    assert digest(tmp_path / "a") == digest(tmp_path / "b")
