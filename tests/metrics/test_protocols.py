"""Leaderboard protocols pinned rule by rule, and checked against the official scorers' rules.

``_official_*`` below restate the NWPU-Crowd scorers (gjy3035/NWPU-Crowd-Sample-Code-for-
Localization ``eval/eval.py`` + ``eval/utils.py``; gjy3035/NWPU-Crowd-Sample-Code
``misc/evaluation_code.py``) the plain way they compute: a dense distance matrix, a recursive
augmenting-path matching, running sums. Ours (KD-tree candidates, an iterative search) must
agree with them to 1e-9 on random cases.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching
from scipy.spatial import distance_matrix

from maskfocal.errors import DatasetError
from maskfocal.metrics import match_points, nwpu_radii
from maskfocal.metrics.nwpu_reference import (
    official_counting,
    official_localization,
    official_matching,
    random_case,
)
from maskfocal.metrics.protocols import (
    NwpuTruth,
    jhu_report,
    kuhn_matching,
    nwpu_counting,
    nwpu_localization,
    nwpu_truth_from_boxes,
    read_nwpu_counts,
    read_nwpu_gt,
    read_nwpu_loc,
    round_points,
    write_nwpu_counts,
    write_nwpu_loc,
)


def _assert_close(ours: dict, official: dict) -> None:
    for key, value in official.items():
        np.testing.assert_allclose(ours[key], value, rtol=0, atol=1e-9, err_msg=key)


# --- NWPU localisation ------------------------------------------------------------------------


def test_nwpu_localization_agrees_with_the_official_rules_onrandom_cases():
    rng = np.random.default_rng(0)
    compared = 0
    for _ in range(60):
        preds, truths = random_case(rng)
        try:
            official = official_localization(preds, truths)
        except ZeroDivisionError:  # precision = recall = 0: the official script stops
            continue
        _assert_close(nwpu_localization(preds, truths), official)
        compared += 1
    assert compared >= 40


def test_kuhn_matching_is_the_official_search_and_a_maximum_matching():
    rng = np.random.default_rng(1)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for _ in range(200):
        allowed = rng.random((int(rng.integers(1, 25)), int(rng.integers(1, 25)))) < 0.2
        match = kuhn_matching([list(np.flatnonzero(r)) for r in allowed], allowed.shape[1])
        official = official_matching(allowed)
        assert [int(np.flatnonzero(official[:, v])[0]) if official[:, v].any() else -1
                for v in range(allowed.shape[1])] == match.tolist()
        best = maximum_bipartite_matching(csr_matrix(allowed.astype(int)), perm_type="column")
        assert (match >= 0).sum() == (best >= 0).sum()


def test_a_prediction_on_the_circle_matches_and_one_outside_does_not():
    truth = NwpuTruth(count=1, points=np.array([[10, 10]]), sigma=np.array([[5, 8]]),
                      level=np.array([2]))
    on_small = {1: np.array([[13, 14]])}  # distance 5 = sigma_s exactly
    report = nwpu_localization(on_small, {1: truth})
    assert report["tp_small"] == 1 and report["tp_large"] == 1
    outside = {1: np.array([[16, 16]])}  # distance sqrt(72) = 8.49 > sigma_l
    report = nwpu_localization(outside, {1: truth})
    assert report["tp_small"] == report["tp_large"] == 0


def test_f1_is_zero_when_precision_and_recall_are_zero():
    truth = NwpuTruth(count=2, points=np.array([[0, 0], [50, 50]]), sigma=np.array([[1, 2]] * 2),
                      level=np.array([1, 1]))
    report = nwpu_localization({7: np.array([[20, 20]])}, {7: truth})
    assert report["precision_small"] == report["recall_small"] == 0
    assert report["f1_small"] == 0.0 and report["f1_large"] == 0.0


def test_empty_images_count_as_the_scorer_counts_them():
    empty = NwpuTruth(count=0, points=np.zeros((0, 2), int), sigma=np.zeros((0, 2), int),
                      level=np.zeros(0, int))
    one = NwpuTruth(count=1, points=np.array([[5, 5]]), sigma=np.array([[2, 3]]),
                    level=np.array([4]))
    report = nwpu_localization({1: np.zeros((0, 2)), 2: np.array([[9, 9], [1, 1]]),
                                3: np.zeros((0, 2))}, {1: empty, 2: empty, 3: one})
    assert (report["tp_small"], report["fp_small"], report["fn_small"]) == (0, 2, 1)
    assert report["recall_per_class_small"] == [0, 0, 0, 0, 0, 0]
    assert report["mae"] == pytest.approx(1.0) and report["nae"] == pytest.approx(1.0)
    everyone_absent = nwpu_localization({1: np.zeros((0, 2))}, {1: empty})
    assert everyone_absent["nae"] == 0.0  # eval.py's NAE over no populated image
    with pytest.raises(ValueError, match="no prediction for image ids"):
        nwpu_localization({}, {1: empty})


def test_radii_from_boxes_are_truncated_integers():
    truth = nwpu_truth_from_boxes([[5.7, 5.2, 15.9, 16.8],  # corners 5 5 15 16
                                   [0, 0, 2, 5],  # area exactly 10: class 1 here
                                   [3, 3, 3, 9],  # zero area: counted, not matched
                                   [0, 0, 400, 300]])
    assert truth.count == 4
    assert truth.points.tolist() == [[10, 10], [1, 2], [200, 150]]
    # w=10 h=11: int(5.0), int(sqrt(221)/2 = 7.43); w=2 h=5: 1, int(2.69); 400x300: 150, 250
    assert truth.sigma.tolist() == [[5, 7], [1, 2], [150, 250]]
    assert truth.level.tolist() == [2, 1, 5]


def test_predictions_round_to_the_nearest_pixel_halves_up():
    assert round_points([[2.5, 2.49], [-0.5, 7.0]]).tolist() == [[3, 2], [0, 7]]


# --- NWPU counting ----------------------------------------------------------------------------


def test_nwpu_counting_agrees_with_the_official_scorer_onrandom_cases():
    rng = np.random.default_rng(2)
    for _ in range(50):
        n = int(rng.integers(1, 30))
        target = {3110 + k: (int(rng.integers(0, 4)), int(rng.integers(0, 5)),
                             float(rng.choice([0, rng.integers(1, 3000)]))) for k in range(n)}
        pred = {k: float(rng.random() * 3000) for k in target}
        official = official_counting(pred, target)
        ours = nwpu_counting(pred, {k: t[2] for k, t in target.items()},
                             levels={k: t[1] for k, t in target.items()},
                             illuminations={k: t[0] for k, t in target.items()})
        for group in ("levels", "illums"):
            for a, b in zip(ours[group], official[group], strict=True):
                _assert_close(a, b)
        _assert_close(ours["overall"], official["overall"])
        _assert_close(ours["mmae"], official["mmae"])


def test_nwpu_counting_nae_without_people_and_empty_levels():
    ours = nwpu_counting({1: 3.0, 2: 0.0}, {1: 0.0, 2: 0.0}, levels={1: 0, 2: 0},
                         illuminations={1: 0, 2: 1})
    assert ours["overall"]["nae"] == -1  # the counting scorer's "undefined"
    assert ours["levels"][3]["mae"] == -1
    assert ours["mmae"]["mmae_level"] == pytest.approx((1.5 - 4) / 5)  # its -1s averaged in


# --- float protocol: ties on the circle -------------------------------------------------------


def test_float_radius_on_the_circle_matches():
    gt, pred, radius = [], [], []
    for a in range(0, 9):
        for b in range(1, 9):
            for unit in (1.0, 0.1, 0.3, 1.7):
                origin = np.array([len(gt) * 100.0, 0.0])
                gt.append(origin)
                pred.append(origin + unit * np.array([a, b]))
                radius.append(np.sum((pred[-1] - gt[-1]) ** 2) ** 0.5)  # e.g. sqrt(13)
    assert match_points(pred, gt, np.array(radius)) == (len(gt), 0, 0)
    assert match_points(pred, gt, np.nextafter(np.array(radius), 0))[0] < len(gt)


def test_float_matching_is_a_maximum_matching():
    rng = np.random.default_rng(3)
    for _ in range(100):
        gt = rng.integers(0, 30, size=(int(rng.integers(1, 20)), 2)).astype(float)
        pred = gt[rng.integers(0, len(gt), size=int(rng.integers(1, 25)))] + \
            rng.integers(-3, 4, size=(1, 2)) * rng.choice([1.0, 0.5, np.sqrt(2)])
        radius = rng.choice([np.sqrt(13), np.sqrt(2), 2.5, 3.0], size=len(gt))
        allowed = distance_matrix(pred, gt) <= radius[None, :]
        best = maximum_bipartite_matching(csr_matrix(allowed.astype(int)), perm_type="column")
        assert match_points(pred, gt, radius)[0] == (best >= 0).sum()


def test_nwpu_radii_large_is_the_half_diagonal():
    radii = nwpu_radii([[0, 0, 4, 6]])
    assert radii["small"][0] == 2 and radii["large"][0] == np.sqrt(52) / 2


# --- files ------------------------------------------------------------------------------------


def test_submission_files_round_trip_sorted_by_id(tmp_path):
    points = {3612: np.array([[1.4, 2.6], [10, 20]]), 3610: np.array([[5.5, 5]]),
              3611: np.zeros((0, 2))}
    text = write_nwpu_loc(tmp_path / "loc.txt", points)
    assert text.splitlines() == ["3610 1 6 5", "3611 0", "3612 2 1 3 10 20"]
    back = read_nwpu_loc(tmp_path / "loc.txt")
    assert list(back) == [3610, 3611, 3612]
    assert back[3612].tolist() == [[1, 3], [10, 20]]
    write_nwpu_counts(tmp_path / "counts.txt", {3611: 0, 3610: 2.24567})
    assert (tmp_path / "counts.txt").read_text() == "3610 2.2457\n3611 0.0000\n"
    assert read_nwpu_counts(tmp_path / "counts.txt") == {3610: 2.2457, 3611: 0.0}


def test_official_gt_file_is_read_and_bad_lines_are_named(tmp_path):
    path = tmp_path / "val_gt_loc.txt"
    path.write_text("3110 2 851 1304 15 23 3 831 1344 13 22 2\n3111 0\n")
    truths = read_nwpu_gt(path)
    assert truths[3110].count == 2 and truths[3110].sigma.tolist() == [[15, 23], [13, 22]]
    assert truths[3111].points.shape == (0, 2)
    path.write_text("3110 1 851 1304 15 23\n")
    with pytest.raises(DatasetError, match=r"val_gt_loc\.txt: line 1: expected id, n"):
        read_nwpu_gt(path)
    loc = tmp_path / "loc.txt"
    loc.write_text("3610 2 5 5\n")
    with pytest.raises(DatasetError, match=r"loc\.txt: line 1: expected id, n and n pairs"):
        read_nwpu_loc(loc)
    loc.write_text("3610 1 5.5 5\n")
    with pytest.raises(DatasetError, match="must be an integer"):
        read_nwpu_loc(loc)


# --- JHU-Crowd++ ------------------------------------------------------------------------------


def test_jhu_report_by_density_and_weather():
    report = jhu_report([10, 60, 700, 0], [12, 51, 800, 0], weather=["0", "2", "1", None])
    assert report["overall"]["mae"] == pytest.approx((2 + 9 + 100 + 0) / 4)
    assert report["density"]["low"] == {"mae": 1.0, "mse": pytest.approx(math.sqrt(2)),
                                        "images": 2}
    assert report["density"]["medium"]["images"] == 1
    assert report["density"]["high"]["mae"] == 100
    assert report["weather"]["none"]["images"] == 1
    assert report["weather"]["adverse"] == {"mae": 54.5,
                                            "mse": pytest.approx(math.sqrt(5040.5)), "images": 2}
    assert "snow" not in report["weather"]


# --- the command line -------------------------------------------------------------------------


@pytest.fixture
def tiny_checkpoint(tmp_path):
    from maskfocal.checkpoint import save_checkpoint
    from maskfocal.config import load_config
    from maskfocal.families import build_model

    config = load_config(None, ["model.neck_channels=16", "model.head_channels=8"])
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"model": build_model(config).state_dict(),
                           "config": config.to_dict(), "threshold": 0.3})
    return path


def _nwpu_standin(root):
    """A folder laid out like NWPU-Crowd: labelled val with scene labels, unlabelled test."""
    import json

    from tests.conftest import write_image

    (root / "jsons").mkdir(parents=True)
    for key in (3110, 3098, 3111):
        write_image(root / "images" / f"{key}.jpg", seed=key)
        (root / "jsons" / f"{key}.json").write_text(json.dumps(
            {"points": [[10, 10], [30, 20]], "boxes": [[5, 5, 15, 16], [26, 15, 34, 25]]}))
    for key in (3612, 3610, 3611):
        write_image(root / "images" / f"{key}.jpg", seed=key)
    (root / "val.txt").write_text("3110 1 2\n3098 0 2\n3111 3 1\n")
    (root / "test.txt").write_text("3612\n3610\n3611\n")
    return root


def test_eval_protocol_nwpu_official_and_submission(tmp_path, tiny_checkpoint, capsys):
    import json

    from maskfocal.cli import main

    root = _nwpu_standin(tmp_path / "NWPU")
    assert main(["eval", "--checkpoint", str(tiny_checkpoint), "--format", "nwpu", "--root",
                 str(root), "--split", "val", "--protocol", "nwpu-official", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    official = metrics["nwpu_official"]
    assert len(official["localization"]["recall_per_class_small"]) == 6
    assert official["localization"]["images"] == 3
    assert official["counting"]["levels"][2]["images"] == 2  # scene labels from val.txt
    assert "mmae_level" in official["counting"]["mmae"]

    gt = tmp_path / "val_gt_loc.txt"
    gt.write_text("3110 0\n3111 0\n")  # 3098 missing
    assert main(["eval", "--checkpoint", str(tiny_checkpoint), "--format", "nwpu", "--root",
                 str(root), "--split", "val", "--protocol", "nwpu-official", "--gt-loc",
                 str(gt)]) == 2
    assert "val_gt_loc.txt: no line for image ids [3098]" in capsys.readouterr().err

    out = tmp_path / "submission"
    assert main(["eval", "--checkpoint", str(tiny_checkpoint), "--format", "nwpu", "--root",
                 str(root), "--submit", "nwpu", "--out", str(out)]) == 0
    capsys.readouterr()
    counts = read_nwpu_counts(out / "nwpu_counts.txt")
    points = read_nwpu_loc(out / "nwpu_loc.txt")
    assert list(counts) == list(points) == [3610, 3611, 3612]
    assert all(counts[k] == len(points[k]) for k in counts)
    # a second run replaces its own files; a file of the user's is never written over
    assert main(["eval", "--checkpoint", str(tiny_checkpoint), "--format", "nwpu", "--root",
                 str(root), "--submit", "nwpu", "--out", str(out)]) == 0
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "nwpu_counts.txt").write_text("my notes\n")
    assert main(["eval", "--checkpoint", str(tiny_checkpoint), "--format", "nwpu", "--root",
                 str(root), "--submit", "nwpu", "--out", str(mine)]) == 2
    assert (mine / "nwpu_counts.txt").read_text() == "my notes\n"
    capsys.readouterr()
    assert main(["eval", "--format", "nwpu", "--root", str(root), "--submit", "nwpu"]) == 2
    assert "--submit needs --out" in capsys.readouterr().err


def test_eval_protocol_jhu(tmp_path, tiny_checkpoint, capsys):
    from maskfocal.cli import main
    from tests.data.test_readers import make_jhu

    root = make_jhu(tmp_path / "jhu")
    assert main(["eval", "--checkpoint", str(tiny_checkpoint), "--format", "jhu", "--root",
                 str(root), "--split", "val", "--protocol", "jhu"]) == 0
    out = capsys.readouterr().out
    assert "JHU-Crowd++ protocol:" in out and "density low" in out and "weather none" in out
