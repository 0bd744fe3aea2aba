"""The MFL-at-convergence grid's own rules (experiments/mfl_converged.py): when a run counts
as converged, and what runs next."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "mfl_converged.py"


@pytest.fixture(scope="module")
def grid():
    spec = importlib.util.spec_from_file_location("mfl_converged", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def curve(maes):
    return [[epoch, epoch * 1.0, mae] for epoch, mae in maes]


def test_flat_second_half_is_converged(grid):
    # epochs 11-20: the line through (12, 20.2) .. (20, 19.4) falls 0.0914 a epoch, 0.457 over
    # 5 epochs (a quarter), 2.3 % of the half's mean 19.8; epochs 1-10 do not count
    verdict = grid.convergence(curve([(4, 40), (8, 30), (12, 20.2), (14, 19.8), (16, 19.8),
                                      (20, 19.4)]), 20)
    assert verdict["converged"] and verdict["improvement"] == pytest.approx(0.457 / 19.8, abs=1e-3)
    assert verdict["quarters_improvement"] == pytest.approx(0.02, abs=1e-4)  # the first rule


def test_still_improving_is_not_converged(grid):
    # (12, 30) .. (20, 22): 1 MAE a epoch, 5 over a quarter, 19 % of the mean 26.25
    verdict = grid.convergence(curve([(4, 40), (12, 30), (14, 28), (17, 25), (20, 22)]), 20)
    assert not verdict["converged"] and verdict["improvement"] == pytest.approx(5 / 26.25, abs=1e-3)


def test_one_noisy_reading_does_not_decide(grid):
    # the first dense run's curve: flat since epoch 20, one high reading at 24; the quarters
    # rule called it 3.9 % better (not converged), the line 1.8 %
    rows = [(5, 287.6), (8, 210.6), (12, 222.5), (16, 221.2), (20, 191.0), (24, 207.8),
            (27, 199.2), (31, 190.8), (35, 189.4), (38, 194.4)]
    verdict = grid.convergence(curve(rows), 38)
    assert verdict["converged"] and verdict["quarters_improvement"] > grid.CONVERGED_BELOW


def test_the_verdict_carries_the_lines_standard_error(grid):
    # epochs 12-20 zigzag 20, 24, 20, 24, 20 about a flat line: slope 0 (converged), residual
    # variance 19.2 / 3 = 6.4 over sum (x - 16)^2 = 40, slope error sqrt(0.16) = 0.4 MAE a
    # epoch, 2.0 over a quarter (5 epochs), 9.3 % of the mean 21.6: more than the 3 % it decides on
    zigzag = grid.convergence(curve([(4, 40), (12, 20), (14, 24), (16, 20), (18, 24), (20, 20)]),
                              20)
    assert zigzag["converged"] and zigzag["improvement"] == pytest.approx(0, abs=1e-9)
    assert zigzag["improvement_se"] == pytest.approx(2.0 / 21.6, abs=1e-4)
    straight = grid.convergence(curve([(12, 30), (14, 28), (17, 25), (20, 22)]), 20)
    assert straight["improvement_se"] == pytest.approx(0, abs=1e-9)


def test_worse_at_the_end_counts_as_flat(grid):  # overfitting: more epochs would not help
    assert grid.convergence(curve([(12, 20), (16, 21), (20, 22)]), 20)["converged"]


def test_too_few_validations_is_not_converged(grid):
    assert not grid.convergence(curve([(12, 20), (20, 10)]), 20)["converged"]
    assert not grid.convergence([], 0)["converged"]


def test_records_are_judged_by_the_current_rule(grid, tmp_path, monkeypatch):
    rows = [(12, 20.2), (14, 19.8), (16, 19.8), (20, 19.4)]
    stale = {"val_curve": curve(rows), "epochs": 20, "converged": False, "improvement": 0.5,
             "last_quarter_val_mae": 1.0}
    monkeypatch.setattr(grid, "RESULTS", tmp_path / "results.json")
    grid.RESULTS.write_text(json.dumps([stale]))
    (run,) = grid.load_results()
    assert run["converged"] and run["improvement"] < grid.CONVERGED_BELOW
    assert "last_quarter_val_mae" not in run


def test_merge_adds_other_files_records_and_replaces_the_same_cells(grid, tmp_path,
                                                                    monkeypatch):
    monkeypatch.setattr(grid, "RESULTS", tmp_path / "results.json")
    rows = curve([(12, 20.2), (14, 19.8), (16, 19.8), (20, 19.4)])
    kept, old, new, added = ({**record("dense_synthetic", "fcos", variant, seed, val),
                              "val_curve": rows, "epochs": 20}
                             for variant, seed, val in (("native", 0, 1.0), ("mfl", 0, 2.0),
                                                        ("mfl", 0, 3.0), ("mfl", 1, 4.0)))
    analysed = {**kept, "precision_8px": 0.5}  # --analyse ran here, not in the worktree
    grid.RESULTS.write_text(json.dumps([analysed, old]))
    other = tmp_path / "worktree.json"
    other.write_text(json.dumps([kept, new, added]))
    grid.merge([other])
    merged = grid.load_results()
    assert sorted(r["best_val_mae"] for r in merged) == [1.0, 3.0, 4.0]
    assert [r.get("precision_8px") for r in merged if r["best_val_mae"] == 1.0] == [0.5]
    with pytest.raises(SystemExit, match="no such results file"):
        grid.merge([tmp_path / "missing.json"])


def record(dataset, detector, variant, seed, val, budget=20):
    return {"dataset": dataset, "detector": detector, "variant": variant, "seed": seed,
            "budget_minutes": budget, "best_val_mae": val}


def test_longer_budgets_of_one_cell_are_set_side_by_side(grid):
    def run(budget, epochs, val, test, converged, seed=0):
        return {**record("shanghaitech_b_lite0", "centernet", "native", seed, val, budget),
                "epochs": epochs, "test_mae": test, "converged": converged}

    lines = grid.doublings([run(480, 330, 16.0, 13.0, True), run(120, 46, 16.0, 15.0, False),
                            run(240, 166, 20.0, 14.0, False), run(240, 160, 9.0, 9.0, False, 1)])
    rows = [line for line in lines if line.startswith("| shanghaitech")]
    assert len(rows) == 2  # 120 -> 240 -> 480 of seed 0; seed 1 has one budget
    assert "| 120 -> 240 | 46 -> 166 | 16.00 -> 20.00 (+25.0%) | 15.00 -> 14.00 (-6.7%) | no |" \
        in rows[0]
    assert "| 240 -> 480 |" in rows[1] and rows[1].endswith("(-7.1%) | no |")
    assert grid.doublings([run(240, 166, 20.0, 14.0, False)]) == []  # nothing to set beside


def test_status_reads_unfinished_runs_on_their_projected_epochs(grid, tmp_path):
    def run_folder(name, val_maes, finished=False):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.yaml").write_text("train:\n  max_minutes: 40\n")
        rows = ["epoch,minutes,val_mae"] + [f"{e},{2 * (e + 1)},{val_maes.get(e + 1, '')}"
                                            for e in range(10)]
        (folder / "metrics.csv").write_text("\n".join(rows) + "\n")
        if finished:
            (folder / "test_metrics.json").write_text("{}")

    # 10 epochs in 20 of 40 minutes -> 20 projected, whose second half has no reading yet
    maes = {2: 40.0, 4: 35.0, 6: 30.0, 8: 28.0, 10: 26.0}
    run_folder("early", maes)
    run_folder("done", {10: 1.0}, finished=True)
    (line,) = grid.status(tmp_path)
    assert line == ("early: 20 of 40 min, 10 epochs; val MAE (epoch): 40.00 (2), 35.00 (4), "
                    "30.00 (6), 28.00 (8), 26.00 (10); best 26.00")
    # a 20-minute budget: the 10 epochs are all, the line through epochs 6-10 falls 1 MAE a
    # epoch, 2.5 over a quarter, 8.9 % of the mean 28
    (tmp_path / "early" / "config.yaml").write_text("train:\n  max_minutes: 20\n")
    (line,) = grid.status(tmp_path)
    assert line.endswith("; so far, on 10 projected epochs: +8.9% ± 0.0% a quarter")
    assert grid.status(tmp_path / "none") == [f"{tmp_path / 'none'}: no unfinished runs"]


def test_plan_runs_candidates_before_choosing_on_validation(grid):
    plan = grid.planned([], ["dense_synthetic"], ["fcos"], [0, 1], 1.0)
    assert plan[:5] == [("dense_synthetic", "fcos", v, 0) for v in
                        ("native", "mfl", "mfl w=2", "mfl weighted", "mfl w=2 weighted")]
    assert ("dense_synthetic", "fcos", "mfl-best", 0) in plan  # not chosen yet
    done = [record("dense_synthetic", "fcos", v, 0, val) for v, val in
            [("native", 9), ("mfl", 1), ("mfl w=2", 5), ("mfl weighted", 4),
             ("mfl w=2 weighted", 6)]]
    # mfl-best = the candidate with the lowest validation MAE ("mfl" itself is no candidate)
    assert grid.chosen_variant(done, "fcos", "dense_synthetic", 20) == "mfl weighted"
    assert grid.chosen_variant(done, "fcos", "shanghaitech_b", 20) is None  # its own choice
    assert grid.planned(done, ["dense_synthetic"], ["fcos"], [0, 1], 1.0) == [
        ("dense_synthetic", "fcos", v, 1) for v in ("native", "mfl", "mfl weighted")]
    # a run at another budget is another cell, with its own choice
    other = grid.planned(done, ["dense_synthetic"], ["fcos"], [0], 0.5)
    assert len(other) == 6 and other[-1] == ("dense_synthetic", "fcos", "mfl-best", 0)


def test_dense_frames_are_written_once_in_gta_heads_layout(grid, tmp_path, monkeypatch):
    from maskfocal.data.readers import read_dataset

    monkeypatch.setitem(grid.DENSE, "root", tmp_path / "dense")
    monkeypatch.setitem(grid.DENSE, "splits", {"train": 2, "test": 1})
    monkeypatch.setitem(grid.DENSE, "scene", {"width": 96, "height": 64, "min_count": 20,
                                              "max_count": 40, "empty_fraction": 0.0})
    root = grid.dense_frames()
    frame = next((root / "train").rglob("*.jpg"))
    written = frame.stat().st_mtime_ns
    assert grid.dense_frames() == root and frame.stat().st_mtime_ns == written  # not again
    train = read_dataset("mot", str(root), split="train")
    assert len(train.images) == 2 and all(image.num_heads > 0 for image in train.images)


def test_grid_records_every_cell_then_analyses_and_reports_it(grid, tmp_path, monkeypatch):
    """End to end on configs/tiny.yaml for 3 seconds a run: own loss, MFL.md's start and one
    candidate (which mfl-best then resolves to) train, record, analyse and report."""
    import argparse

    monkeypatch.setitem(grid.DATASETS, "tiny", ("configs/tiny.yaml", 0.05, []))
    monkeypatch.setitem(grid.CANDIDATES, "centernet", ["mfl box"])
    for name, path in [("RESULTS", "r.json"), ("TABLE", "r.md"), ("CHART", "r.png"),
                       ("CURVES", "r_curves.png")]:
        monkeypatch.setattr(grid, name, tmp_path / path)
    args = argparse.Namespace(datasets=["tiny"], detectors=["centernet"], seeds=[0],
                              runs=tmp_path / "runs", data_root=tmp_path, minutes_scale=1.0,
                              overrides=[], jobs=1, threads=None, max_runs=None,
                              analyse_device="cpu")
    grid.grid(args)
    runs = grid.load_results()
    assert sorted(r["variant"] for r in runs) == ["mfl", "mfl box", "native"]
    assert grid.planned(runs, ["tiny"], ["centernet"], [0], 1.0) == []  # mfl-best = mfl box
    for run in runs:
        folder = args.runs / grid.cell_key("tiny", "centernet", run["variant"], 0, 0.05)
        assert (folder / "best.pt").is_file() and not (folder / "last.pt").exists()
        assert run["budget_minutes"] == 0.05 and run["test_mae"] >= 0 and run["val_curve"]
    grid.analyse(args)
    for run in grid.load_results():
        analysis = run["analysis"]
        assert analysis["low_floor_threshold"] >= grid.LOW_FLOOR  # calibrated from the floor
        sweep = analysis["test_mae_by_threshold"]
        assert next(iter(sweep)) == f"{grid.LOW_FLOOR:.2f}" and min(sweep.values()) >= 0
        assert 0 <= analysis["recall_8px"] <= 1
    grid.write_report()
    assert "mfl box" in (tmp_path / "r.md").read_text()


@pytest.mark.parametrize("detector", ["fcos", "faster_rcnn"])
def test_a_box_detectors_statistics_from_its_candidates_are_its_counts(tmp_path, detector):
    """--analyse reads a box detector's peak statistics off the test candidates it keeps for
    the threshold sweep, instead of counting the split a second time: both give the same."""
    from experiments.mfl_analysis import detection_statistics, peak_statistics
    from maskfocal import Counter
    from maskfocal.config import load_config
    from maskfocal.data import build_splits
    from maskfocal.engine import train

    config = load_config(Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml",
                         [f"model.name={detector}", "train.epochs=1"])
    train(config, tmp_path, progress=False)
    test = build_splits(config.data, seed=config.train.seed)[2]
    predictor = Counter.from_checkpoint(tmp_path / "best.pt").predictor
    predictions = predictor.candidates(test, floor=0.01)
    scores = sorted(float(s) for found in predictions.detections for s in found.scores)
    threshold = scores[len(scores) // 2]  # half of the candidates are heads: something to match
    counter = Counter(predictor, threshold)
    found = [(d.above(threshold).points.numpy(), None) for d in predictions.detections]
    assert sum(len(points) for points, _ in found) > 0
    assert detection_statistics(found, test) == peak_statistics(counter, test)
