"""Synthetic moving crowds: identities that last, smooth paths, and their written truth."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from maskfocal.data.moving import MovingConfig, MovingSequence, default_lines
from maskfocal.data.readers import read_dataset

SMALL = MovingConfig(width=320, height=240, frames=30, people=20)


def test_same_seed_same_clip_and_identities_last():
    clip = MovingSequence(SMALL, seed=2)
    first, again = clip.frame(5), MovingSequence(SMALL, seed=2).frame(5)
    assert np.array_equal(first.pixels, again.pixels) and np.array_equal(first.ids, again.ids)
    assert not np.array_equal(first.pixels, MovingSequence(SMALL, seed=3).frame(5).pixels)
    a, b = clip.frame(10), clip.frame(11)
    shared, ia, ib = np.intersect1d(a.ids, b.ids, return_indices=True)
    assert len(shared) >= 0.7 * min(len(a.ids), len(b.ids)) > 5
    step = np.linalg.norm(a.points[ia] - b.points[ib], axis=1)
    radius = (a.boxes[ia, 3] - a.boxes[ia, 1]) / 2
    interior = ((a.boxes[ia, :2] > 0) & (a.boxes[ia, 2:] < [320, 240])).all(1)
    # at 25 fps a walker's head moves well under its own radius between frames
    assert (step[interior] < radius[interior]).all()
    assert np.isfinite(a.heads).all() and len(a.heads) == clip.people
    moved = np.linalg.norm(clip.frame(29).heads - a.heads, axis=1)
    assert (moved > 2).mean() > 0.6  # most people walk


def test_density_holds_over_the_clip():
    clip = MovingSequence(MovingConfig(width=320, height=240, frames=100, people=30), seed=0)
    counts = [len(clip.frame(i).ids) for i in (0, 50, 99)]
    assert all(15 <= c <= 45 for c in counts), counts


def test_written_sequence_reads_and_its_crossings_are_the_true_paths(tmp_path):
    from maskfocal.video import write_moving_crowds

    config = MovingConfig(width=320, height=240, frames=60, people=30)
    (summary,) = write_moving_crowds(tmp_path, config, seed=1)
    folder = tmp_path / "synth-flow-00"
    assert {p.name for p in folder.iterdir()} >= {"img1", "gt", "seqinfo.ini", "clip.mp4",
                                                  "lines.json", "crossings.json"}
    dataset = read_dataset("mot", tmp_path)
    assert len(dataset) == 60 and not dataset.report.skipped
    rows = np.loadtxt(folder / "gt" / "gt.txt", delimiter=",")
    assert len(np.unique(rows[:, 1])) < len(rows) / 10  # ids repeat: tracks, not heads
    assert json.loads((folder / "lines.json").read_text()) == default_lines(320, 240)
    # The gate crossings, counted here by plain geometry on every true head path: a path
    # going from one side of y = 0.55 H to the other between the line's ends.
    clip = MovingSequence(config, seed=1, sequence=0)
    heads = np.stack([frame.heads for frame in clip])  # (frames, people, 2)
    (gate,) = [line for line in default_lines(320, 240)["lines"] if line["name"] == "gate"]
    (x0, y), (x1, _) = gate["points"]
    counts = {"in": 0, "out": 0}
    for path in heads.transpose(1, 0, 2):
        for (ax, ay), (bx, by) in itertools.pairwise(path):
            if (ay - y) * (by - y) < 0 and x0 <= ax + (bx - ax) * (y - ay) / (by - ay) <= x1:
                counts["in" if by < y else "out"] += 1  # up the image is the gate's left
    truth = json.loads((folder / "crossings.json").read_text())
    assert truth["gate"]["in"] == counts["in"] and truth["gate"]["out"] == counts["out"]
    assert counts["in"] + counts["out"] > 0
    assert summary["crossings"] == truth


def test_bad_config():
    with pytest.raises(ValueError, match="at least 64"):
        MovingConfig(width=32)
    with pytest.raises(ValueError, match="frames >= 1"):
        MovingConfig(frames=0)


def test_data_synth_video_command(tmp_path, capsys):
    from maskfocal.cli import main

    out = tmp_path / "flow"
    assert main(["data", "synth", "--video", "--out", str(out), "--sequences", "2",
                 "--frames", "6", "--size", "96x64", "--people", "5"]) == 0
    printed = capsys.readouterr().out
    assert "synth-flow-01: 6 frames" in printed and "true crossings: gate in" in printed
    assert len(list((out / "synth-flow-01" / "img1").glob("*.jpg"))) == 6
    assert "frameRate=25" in (out / "synth-flow-00" / "seqinfo.ini").read_text()
    assert main(["data", "synth", "--video", "--out", str(out), "--sequences", "1",
                 "--frames", "3", "--size", "96x64"]) == 0  # again, shorter: no stale frames
    assert len(list((out / "synth-flow-00" / "img1").glob("*.jpg"))) == 3
    assert main(["data", "synth", "--video", "--out", str(out), "--size", "48x48"]) == 2
