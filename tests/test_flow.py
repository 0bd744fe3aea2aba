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
