"""People flow's lines: the file, its mistakes, and the crossing rule (each crossing counted
once; jitter on the line never)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from maskfocal.errors import MaskfocalError
from maskfocal.flow import Line, LineCounter, lines_from_dict, load_lines

GATE = {"lines": [{"name": "gate", "points": [[0, 100], [200, 100]], "in": "left"}]}


def counter(margin=4.0, inside="left"):
    return LineCounter([Line("gate", np.array([[0.0, 100.0], [200.0, 100.0]]), inside)],
                       margin=margin)


def walk(count, *paths):
    """Feed each track's positions frame by frame; the crossings, in order."""
    found = []
    for frame in range(max(len(p) for p in paths)):
        found += count.update({i: p[frame] for i, p in enumerate(paths) if frame < len(p)})
    return [(c.track, c.direction) for c in found]


def test_left_is_the_walkers_left_as_the_image_shows_it():
    line = lines_from_dict(GATE, "gate.json")[0]
    distance, side = line.side(np.array([[50.0, 20.0], [50.0, 180.0], [250.0, 100.0]]))
    assert side.tolist() == [-1, 1, 1]  # up the image (y < 100) is the left of 0 -> 200
    assert distance.tolist() == [80.0, 80.0, 50.0]


def test_in_out_and_net_each_crossing_once():
    count = counter()
    up = [(50, 150), (50, 110), (50, 90), (50, 60)]  # right -> left: in
    down = [(120, 40), (120, 99), (120, 130)]  # left -> right: out
    assert walk(count, up, down) == [(0, "in"), (1, "out")]
    assert count.totals() == {"gate": {"in": 1, "out": 1, "net": 0}}
    assert walk(counter(inside="right"), up) == [(0, "out")]


def test_jitter_on_the_line_is_never_counted_but_a_real_return_is():
    jitter = [(80, 120)] + [(80, 100 + (3 if k % 2 else -3)) for k in range(30)] + [(80, 121)]
    assert walk(counter(), jitter) == []  # never 4 px past: always the side it had
    there_and_back = [(80, 120), (80, 90), (80, 120)]
    assert walk(counter(), there_and_back) == [(0, "in"), (0, "out")]


def test_walking_round_the_end_of_a_line_is_not_a_crossing():
    around = [(230, 150), (260, 100), (230, 50)]  # past x = 200, where the line ends
    assert walk(counter(), around) == []
    first_in_band = [(20, 101), (20, 60)]  # first seen on the line: no side yet
    assert walk(counter(), first_in_band) == []


def test_a_polyline_counts_on_every_segment():
    # a V pointing down the image; walking it, the inside of the V (up the image) is the left
    bent = LineCounter([Line("bend", np.array([[0.0, 0.0], [100.0, 100.0], [200.0, 0.0]]),
                             "left")])
    assert walk(bent, [(50, 80), (50, 20)], [(150, 80), (150, 20)]) == [(0, "in"), (1, "in")]


def test_a_lines_file_and_its_mistakes(tmp_path):
    path = tmp_path / "lines.json"
    path.write_text(json.dumps({**GATE, "zones": [], "ground": {"pixels_per_metre": 40}}))
    (line,) = load_lines(path)
    line.check(200, 300)
    with pytest.raises(MaskfocalError, match=r"line 'gate': point \(200, 100\) is outside "
                                             r"the 150x120 frame"):
        line.check(120, 150, f"{path}: ")
    bad = {
        "no lines": ({"lines": []}, "at least one line"),
        "zero length": ({"lines": [{"name": "a", "points": [[1, 1], [1, 1]], "in": "left"}]},
                        "zero-length"),
        "one point": ({"lines": [{"name": "a", "points": [[1, 1]], "in": "left"}]},
                      "at least two"),
        "strings": ({"lines": [{"name": "a", "points": [["0", 1], [2, 3]], "in": "left"}]},
                    "at least two"),
        "side": ({"lines": [{"name": "a", "points": [[0, 1], [2, 3]], "in": "up"}]},
                 '"in" must be'),
        "unknown": ({"lines": [{"name": "a", "points": [[0, 1], [2, 3]], "in": "left",
                                "colour": 1}]}, "unknown key 'colour'"),
        "twice": ({"lines": [GATE["lines"][0]] * 2}, "used twice"),
        "file key": ({**GATE, "line": []}, "unknown key 'line'"),
    }
    for case, (data, message) in bad.items():
        with pytest.raises(MaskfocalError, match=message):
            lines_from_dict(data, case)
    path.write_text("{")
    with pytest.raises(MaskfocalError, match="not a JSON lines file"):
        load_lines(path)
    with pytest.raises(MaskfocalError, match="no such lines file"):
        load_lines(tmp_path / "none.json")


# --- tracking -------------------------------------------------------------------------------

def test_tracker_keeps_identities_of_heads_that_walk_past_each_other():
    pytest.importorskip("trackers")
    from maskfocal.flow import HeadTracker

    tracker = HeadTracker(fps=25, threshold=0.3)
    seen = []
    for frame in range(40):  # two heads on crossing paths, one passing above the other
        points = np.array([[20 + 4 * frame, 100.0], [180 - 4 * frame, 130.0]])
        boxes = np.concatenate([points - 10, points + 10], 1)
        seen.append(tracker.update(points, np.array([0.9, 0.8]), boxes, frame / 25))
    assert seen[0] == {}  # a head is confirmed once seen twice running
    ids = {track for tracks in seen[2:] for track in tracks}
    assert len(ids) == 2
    for tracks in seen[2:]:  # each id stays on its own head
        by_y = {round(y): track for track, (x, y) in tracks.items()}
        assert by_y == {100: min(ids), 130: max(ids)} or by_y == {100: max(ids), 130: min(ids)}
    assert len({tuple(sorted((round(y), t) for t, (x, y) in s.items())) for s in seen[2:]}) == 1


def test_flow_with_true_heads_counts_what_crossed(tmp_path):
    """Tracks and line counts from perfect detections of a synthetic moving crowd agree with
    the true crossings up to heads hidden while they crossed."""
    pytest.importorskip("trackers")
    from maskfocal.data.moving import MovingConfig, MovingSequence, default_lines
    from maskfocal.flow import Flow
    from maskfocal.inference import CountResult
    from maskfocal.video import write_moving_crowds

    config = MovingConfig(width=320, height=240, frames=75, people=25)
    (summary,) = write_moving_crowds(tmp_path, config, seed=4)
    flow = Flow(lines_from_dict(default_lines(320, 240), "lines"), fps=25, threshold=0.3)
    switches, last = 0, {}
    for frame in MovingSequence(config, seed=4):
        result = CountResult(len(frame.ids), frame.points, np.full(len(frame.ids), 0.9),
                             frame.boxes)
        state = flow.update(frame.index, frame.index / 25, result, (240, 320))
        for track, (x, y) in state.tracks.items():  # the true id nearest each track
            true = frame.ids[np.argmin(np.linalg.norm(frame.points - [x, y], axis=1))]
            switches += track in last and last[track] != true
            last[track] = true
    truth = summary["crossings"]
    assert sum(c["in"] + c["out"] for c in truth.values()) >= 3
    for name, counted in state.lines.items():
        for side in ("in", "out"):
            assert abs(counted[side] - truth[name][side]) <= 1, (name, counted, truth)
    assert switches <= 3
    assert flow.occupancy_density().max() > 0
    with pytest.raises(MaskfocalError, match="frame 99 is 300x240, the clip began at 320x240"):
        flow.update(99, 4.0, result, (240, 300))


# --- count CLIP --lines ---------------------------------------------------------------------

def _clip(tmp_path, frames=12):
    from maskfocal.data.moving import MovingConfig
    from maskfocal.video import write_moving_crowds

    write_moving_crowds(tmp_path / "synth", MovingConfig(width=160, height=120, frames=frames,
                                                         people=10), seed=0)
    return tmp_path / "synth" / "synth-flow-00"


def test_count_video_with_lines_writes_flow_outputs(tmp_path, capsys):
    pytest.importorskip("trackers")
    import csv

    from maskfocal.cli import main
    from tests.test_inference import checkpoint

    folder = _clip(tmp_path)
    ck = checkpoint(tmp_path, threshold=0.12)
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["count", str(folder / "clip.mp4"), "--checkpoint", str(ck), "--lines",
                 str(folder / "lines.json"), "--json", "--out", str(out)]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(record["lines"]) == {"gate", "middle"}
    assert all(set(c) == {"in", "out", "net"} and c["net"] == c["in"] - c["out"]
               for c in record["lines"].values())
    rows = list(csv.DictReader((out / "clip.counts.csv").open()))
    assert [int(r["frame"]) for r in rows] == list(range(12))  # --lines: every frame
    assert {"tracks", "in gate", "out gate", "in middle", "out middle"} <= set(rows[0])
    assert int(rows[-1]["in gate"]) == record["lines"]["gate"]["in"]
    for name in ("clip.flow.png", "clip.heatmap.png", "clip.overlay.mp4"):
        assert (out / name).stat().st_size > 1000
    assert main(["count", str(folder / "clip.mp4"), "--checkpoint", str(ck), "--lines",
                 str(folder / "lines.json"), "--every", "3", "--no-video", "--out",
                 str(tmp_path / "out3")]) == 0
    assert len(list(csv.DictReader((tmp_path / "out3" / "clip.counts.csv").open()))) == 4
    # the tracker sees candidates below the threshold; the counts are those of plain counting
    assert main(["count", str(folder / "clip.mp4"), "--checkpoint", str(ck), "--every", "1",
                 "--no-video", "--out", str(tmp_path / "plain")]) == 0
    plain = list(csv.DictReader((tmp_path / "plain" / "clip.counts.csv").open()))
    assert [r["count"] for r in plain] == [r["count"] for r in rows]
    assert sum(int(r["count"]) for r in rows) > 0
    # one file with zones and lines, both in the same run
    both = tmp_path / "both.json"
    both.write_text(json.dumps({**json.loads((folder / "lines.json").read_text()),
                                "zones": [{"name": "top", "polygon": [[0, 0], [160, 0],
                                                                      [160, 60], [0, 60]]}]}))
    assert main(["count", str(folder / "clip.mp4"), "--checkpoint", str(ck), "--lines",
                 str(both), "--zones", str(both), "--no-video", "--out",
                 str(tmp_path / "both")]) == 0
    mixed = list(csv.DictReader((tmp_path / "both" / "clip.counts.csv").open()))
    assert {"zone top", "in gate", "tracks"} <= set(mixed[0]) and len(mixed) == 12
    assert [r["count"] for r in mixed] == [r["count"] for r in rows]
    assert (tmp_path / "both" / "clip.zones.png").is_file()


def test_count_lines_mistakes_are_one_line_and_write_nothing(tmp_path, capsys):
    av = pytest.importorskip("av")
    pytest.importorskip("trackers")
    from maskfocal.cli import main
    from tests.conftest import write_image
    from tests.test_inference import checkpoint

    folder = _clip(tmp_path, frames=4)
    clip = str(folder / "clip.mp4")
    ck = str(checkpoint(tmp_path, threshold=0.12))
    gate = {"name": "gate", "points": [[10, 60], [150, 60]], "in": "left"}
    cases = {
        "outside": ({"lines": [{**gate, "points": [[10, 60], [400, 60]]}]}, clip,
                    "line 'gate': point (400, 60) is outside the 160x120 frame"),
        "zero length": ({"lines": [{**gate, "points": [[10, 60], [10, 60]]}]}, clip,
                        "zero-length"),
        "no lines": ({"lines": []}, clip, "at least one line"),
        "still image": ({"lines": [gate]}, str(write_image(tmp_path / "photo.png")),
                        "photo.png: --lines counts people crossing lines in a video"),
    }
    # a clip whose frame size changes half-way: two MPEG-TS streams, one after the other
    parts = []
    for number, (width, height) in enumerate(((160, 120), (128, 96))):
        part = tmp_path / f"part{number}.ts"
        with av.open(str(part), "w") as container:
            stream = container.add_stream("mpeg2video", rate=10)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for k in range(5):
                frame = np.full((height, width, 3), 40 * k, np.uint8)
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
        parts.append(part.read_bytes())
    resized = tmp_path / "resized.ts"
    resized.write_bytes(b"".join(parts))
    cases["size change"] = ({"lines": [gate]}, str(resized),
                            "is 128x96, the clip began at 160x120")
    for case, (document, source, message) in cases.items():
        lines = tmp_path / f"{case}.json"
        lines.write_text(json.dumps(document))
        out = tmp_path / f"out-{case}"
        capsys.readouterr()
        assert main(["count", source, "--checkpoint", ck, "--lines", str(lines), "--out",
                     str(out)]) == 2, case
        errors = [line for line in capsys.readouterr().err.splitlines() if "rror" in line]
        assert len(errors) == 1 and message in errors[0], (case, errors)  # one line, no trace
        assert not [p for p in out.glob("*") if not p.name.startswith(".maskfocal")], case


def test_counter_track_yields_a_state_per_counted_frame(tmp_path):
    pytest.importorskip("trackers")
    from maskfocal import Counter
    from maskfocal.flow import FlowState
    from tests.test_inference import checkpoint

    folder = _clip(tmp_path, frames=6)
    counter = Counter.from_checkpoint(checkpoint(tmp_path, threshold=0.12), device="cpu")
    states = list(counter.track(folder / "clip.mp4", lines=folder / "lines.json", every=2))
    assert [s.frame for s in states] == [0, 2, 4] and all(isinstance(s, FlowState)
                                                          for s in states)
    assert states[1].time_s == pytest.approx(2 / 25)
    assert set(states[-1].lines) == {"gate", "middle"}
    assert states[0].result.count == len(states[0].result.points)
    frames = [np.zeros((120, 160, 3), np.uint8)] * 3  # frames in memory, no lines
    assert [s.lines for s in counter.track(frames, fps=10)] == [{}] * 3
    with pytest.raises(MaskfocalError, match="every must be at least 1"):
        next(counter.track(frames, every=0))
