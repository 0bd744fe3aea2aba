"""Does Mask Focal Loss help once models converge? The MFL grid at wall-clock budgets.

    .venv/bin/python -m experiments.mfl_converged                       # the grid; resumes
    .venv/bin/python -m experiments.mfl_converged --datasets dense_synthetic --seeds 0 1
    .venv/bin/python -m experiments.mfl_converged --analyse             # why: detection statistics
    .venv/bin/python -m experiments.mfl_converged --report              # table, chart, curves
    .venv/bin/python -m experiments.mfl_converged --status              # unfinished runs
    .venv/bin/python -m experiments.mfl_converged --jobs 4 --minutes-scale 0.1 \\
        --set train.device=cuda data.augment_on_device=true            # on a lent GPU

Cells: dataset x detector x loss variant x seed.

- Datasets (``DATASETS``): ``dense_synthetic`` (``configs/dense_synthetic.yaml``: 960x540
  frames, hundreds to ~1,500 small heads each, like GTA_Head) for 20 minutes a run, and
  ``shanghaitech_b`` (``configs/shb_cpu.yaml``, the CPU recipe) for 60 minutes.
- Detectors: centernet and fcos (``--detectors`` adds retinanet and faster_rcnn).
- Variants: ``native`` (the detector's own loss), ``mfl`` (MFL.md's starting point: gaussian
  mask for CenterNet / the detector's assignment for FCOS and RetinaNet, tau 0.5, w = 1,
  normaliser objects) and ``mfl-best``: among ``CANDIDATES`` (box mask, w = 2, weighted
  normaliser, their combination), the one with the lowest *validation* MAE, seed 0, per
  detector, dataset and budget (``chosen_variant``); the test split never chooses.

A run is **converged** when a least-squares line through the validation MAEs of the second
half of its epochs, carried over a quarter of its epochs, improves by less than
``CONVERGED_BELOW`` (3 %) (``convergence``); runs that are not stay in the results file,
flagged, and out of the comparisons.

Each run trains in its own folder under ``--runs`` and continues from its ``last.pt`` when a
session stopped mid-run; its record (one per run: dataset, detector, loss, variant, seed,
budget_minutes, epochs, converged, test_mae, test_rmse, f1_8px, the learning curve, ...) is
added to ``experiments/results/mfl_converged.json`` as soon as it ends, so the grid resumes
where it stopped. ``--report`` rebuilds ``experiments/results/mfl_converged.md``,
``docs/mfl_converged.png`` and ``docs/mfl_converged_curves.png`` from that file.
"""

from __future__ import annotations

import argparse
import datetime
import fcntl
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import linregress

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "mfl_converged.json"
TABLE = HERE / "results" / "mfl_converged.md"
CHART = ROOT / "docs" / "mfl_converged.png"
CURVES = ROOT / "docs" / "mfl_converged_curves.png"

# dataset -> (config file, CPU minutes per run, overrides). On dense_synthetic, spreads come
# from neighbouring points (the crowd datasets' practice, and what ShanghaiTech B gets anyway):
# with CenterNet's box rule its heads (median 5-16 px) get a spread of 0.5 feature px, 0-1 %
# of them a Gaussian mask wider than the peak pixel, so every MFL variant but the box mask
# would be CenterNet's own loss to the last bit; with point spreads 44-100 % per scene.
DATASETS: dict[str, tuple[str, float, list[str]]] = {
    "dense_synthetic": ("configs/dense_synthetic.yaml", 20, ["loss.spread_source=points"]),
    "shanghaitech_b": ("configs/shb_cpu.yaml", 60, []),
    # the real-photo half on the pretrained backbone of the shipped crowd-lite0: runs one
    # thread each, two at a time (--jobs 2 --threads 1), so every cell trains alike
    "shanghaitech_b_lite0": ("configs/shb_lite0_cpu.yaml", 240, []),  # 120 did not converge
    # the same photos and crops at half the resolution (read so, nothing written): the same
    # content per crop at a quarter of the pixels, heads smaller and denser (issue 52)
    "shanghaitech_b_half": ("configs/shb_lite0_cpu.yaml", 120,
                            ["data.read_scale=0.5", "data.input_size=128"]),
}
# configs/dense_synthetic.yaml's frames, written once by write_mot (`maskfocal data synth`)
DENSE = {"root": ROOT / "data" / "dense_synthetic", "seed": 1000,
         "splits": {"train": 200, "val": 30, "test": 100},
         "scene": {"width": 960, "height": 540, "min_count": 300, "max_count": 3000,
                   "empty_fraction": 0.0}}
SELECTION_SEED = 0  # mfl-best is chosen on each dataset's own validation runs of this seed
CONVERGED_BELOW = 0.03  # the late trend, carried over a quarter of the run, improves less

# What each variant sets; everything else is the dataset's config. CenterNet's default mask is
# the peak (CenterNet's own loss), so MFL.md's starting point sets the gaussian mask.
VARIANTS: dict[str, dict[str, list[str]]] = {
    "native": {"*": ["loss.name=native"]},
    "mfl": {"centernet": ["loss.name=mfl", "loss.mask=gaussian"], "*": ["loss.name=mfl"]},
    "mfl box": {"centernet": ["loss.name=mfl", "loss.mask=box"]},
    "mfl w=2": {"centernet": ["loss.name=mfl", "loss.mask=gaussian", "loss.weight_power=2"],
                "*": ["loss.name=mfl", "loss.weight_power=2"]},
    "mfl weighted": {"centernet": ["loss.name=mfl", "loss.mask=gaussian",
                                   "loss.normalizer=weighted"],
                     "*": ["loss.name=mfl", "loss.normalizer=weighted"]},
    "mfl box w=2 weighted": {"centernet": ["loss.name=mfl", "loss.mask=box",
                                           "loss.weight_power=2", "loss.normalizer=weighted"]},
    "mfl w=2 weighted": {"*": ["loss.name=mfl", "loss.weight_power=2",
                               "loss.normalizer=weighted"]},
}
CANDIDATES: dict[str, list[str]] = {
    "centernet": ["mfl box", "mfl w=2", "mfl weighted", "mfl box w=2 weighted"],
    "fcos": ["mfl w=2", "mfl weighted", "mfl w=2 weighted"],
    "retinanet": ["mfl w=2", "mfl weighted", "mfl w=2 weighted"],
    "faster_rcnn": ["mfl w=2", "mfl weighted", "mfl w=2 weighted"],  # MFL on its RPN
}
ROLES = ("native", "mfl", "mfl-best")
CELL = ("dataset", "detector", "variant", "seed", "budget_minutes")  # what names one run


def variant_overrides(variant: str, detector: str) -> list[str]:
    table = VARIANTS[variant]
    if detector not in table and "*" not in table:
        raise SystemExit(f"variant {variant!r} is not defined for {detector}")
    return table.get(detector, table.get("*", []))


# convergence -------------------------------------------------------------------------------
def convergence(curve: list[list[float]], epochs: int) -> dict[str, Any]:
    """Whether a learning curve (``[epoch, minutes, val_mae]`` rows, epochs from 1) has
    flattened: a least-squares line through the validation MAEs of the second half of the
    run's epochs, carried over a quarter of its epochs, improves on that half's mean by less
    than ``CONVERGED_BELOW``. Fewer than three validations there -> not converged.

    A line through every late reading, not the mean of the last quarter against the quarter
    before (this grid's first rule, kept as ``quarters_improvement``): with 30 validation
    frames, neighbouring readings of a flat curve differ by up to 9 %, and two or three
    readings a quarter made the verdict turn on one of them (the first dense run read 191,
    208, 199 then 191, 189, 194: "3.9 % better" by quarters, 1.8 % by the line).

    ``improvement_se`` is the line's standard error on the same scale: how far the readings'
    scatter leaves the verdict from certain. It does not change the verdict (the rule is the
    issue's); the report prints it beside it."""
    half = np.array([(epoch, mae) for epoch, _, mae in curve if epoch > 0.5 * epochs])
    before = [mae for epoch, _, mae in curve if 0.5 * epochs < epoch <= 0.75 * epochs]
    last = [mae for epoch, _, mae in curve if epoch > 0.75 * epochs]
    quarters = (round(float((np.mean(before) - np.mean(last)) / np.mean(before)), 4)
                if before and last else None)
    if len(half) < 3:
        return {"converged": False, "rule": "too few validations", "improvement": None,
                "improvement_se": None, "quarters_improvement": quarters}
    line = linregress(half[:, 0], half[:, 1])
    scale = epochs / 4 / half[:, 1].mean()  # MAE a epoch -> share of the mean over a quarter
    improvement = -line.slope * scale
    return {"converged": bool(improvement < CONVERGED_BELOW),
            "rule": f"line through val MAE of epochs > 50 %, over a quarter of the epochs, "
                    f"improves < {CONVERGED_BELOW:.0%}",
            "improvement": round(float(improvement), 4),
            "improvement_se": round(float(line.stderr * scale), 4),
            "quarters_improvement": quarters}


def judged(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with its convergence verdict by the current rule (records written under
    an earlier rule are judged again from their learning curve)."""
    stale = ("last_quarter_val_mae", "previous_quarter_val_mae")  # the first rule's figures
    return {**{k: v for k, v in record.items() if k not in stale},
            **convergence(record["val_curve"], record["epochs"])}


# the grid ----------------------------------------------------------------------------------
def cell_key(dataset: str, detector: str, variant: str, seed: int, budget: float) -> str:
    return (f"{dataset}-{detector}-{variant.replace(' ', '_').replace('=', '')}-s{seed}"
            f"-{budget:g}min")


def chosen_variant(results: list[dict[str, Any]], detector: str, dataset: str,
                   budget: float) -> str | None:
    """``mfl-best`` of ``detector`` on ``dataset`` at ``budget``: the candidate with the lowest
    best validation MAE there, seed ``SELECTION_SEED``, once every candidate has run (None
    before)."""
    runs = {r["variant"]: r for r in results if r["dataset"] == dataset
            and r["budget_minutes"] == budget and r["seed"] == SELECTION_SEED
            and r["detector"] == detector and r["variant"] in CANDIDATES[detector]}
    if len(runs) < len(CANDIDATES[detector]):
        return None
    return min(runs.values(), key=lambda r: r["best_val_mae"])["variant"]


def planned(results: list[dict[str, Any]], datasets: list[str], detectors: list[str],
            seeds: list[int], minutes_scale: float) -> list[tuple[str, str, str, int]]:
    """The runs still to do, seed by seed, dataset by dataset: own loss, MFL.md's start, then
    (seed ``SELECTION_SEED``) the candidates, then ``mfl-best``, which stays the placeholder
    ``"mfl-best"`` until every candidate of that dataset and budget has run."""
    done = {tuple(r[k] for k in CELL) for r in results}
    todo = []
    for seed in seeds:
        for dataset in datasets:
            for detector in detectors:
                todo += [(dataset, detector, v, seed) for v in ("native", "mfl")]
                if seed == SELECTION_SEED:
                    todo += [(dataset, detector, v, seed) for v in CANDIDATES[detector]]
                choice = chosen_variant(results, detector, dataset,
                                        budget_of(dataset, minutes_scale))
                todo.append((dataset, detector, choice or "mfl-best", seed))
    return [cell for cell in dict.fromkeys(todo)
            if (*cell, budget_of(cell[0], minutes_scale)) not in done]


def budget_of(dataset: str, minutes_scale: float) -> float:
    return round(DATASETS[dataset][1] * minutes_scale, 3)


def run_cell(dataset: str, detector: str, variant: str, seed: int, args) -> dict[str, Any]:
    """Train one cell (continuing its folder's ``last.pt``) and return its record."""
    from maskfocal.config import load_config
    from maskfocal.engine import train

    config_file, _, extra = DATASETS[dataset]
    if variant == "native" and detector != "centernet":  # torchvision's loss: no spreads
        extra = [o for o in extra if not o.startswith("loss.")]
    budget = budget_of(dataset, args.minutes_scale)
    overrides = [*extra, f"model.name={detector}", *variant_overrides(variant, detector),
                 f"train.seed={seed}", f"train.max_minutes={budget}", *args.overrides]
    if dataset.startswith("shanghaitech_b"):
        overrides.append(f"data.root={args.data_root / 'ShanghaiTech/part_B'}")
    if dataset == "dense_synthetic":
        overrides.append(f"data.root={dense_frames()}")
    folder = args.runs / cell_key(dataset, detector, variant, seed, budget)
    if not (folder / "test_metrics.json").is_file():
        config = load_config(str(ROOT / config_file), overrides)
        train(config, folder, resume=True, progress=False)  # fresh where no last.pt
    return record_of(folder, dataset, detector, variant, seed, budget, overrides)


def dense_frames() -> Path:
    """The dense synthetic frames (``DENSE``), written on first use; ``.done`` marks them
    complete, so a set cut short by a stop is written again."""
    from maskfocal.data.synthetic import SyntheticConfig, write_mot

    root = DENSE["root"]
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / ".dense_synthetic.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel jobs: one writes, the others wait
        if not (root / ".done").is_file():
            write_mot(root, DENSE["splits"], seed=DENSE["seed"],
                      config=SyntheticConfig(**DENSE["scene"]), progress=True)
            (root / ".done").touch()
    return root


def record_of(folder: Path, dataset: str, detector: str, variant: str, seed: int,
              budget: float, overrides: list[str]) -> dict[str, Any]:
    from maskfocal.engine import run_summary

    run = run_summary(folder)
    test = run["test"]
    return {
        "dataset": dataset, "detector": detector,
        "loss": "native" if variant == "native" else "mfl", "variant": variant, "seed": seed,
        "budget_minutes": budget, "minutes": run["minutes"], "epochs": run["epochs"],
        **convergence(run["val_curve"], run["epochs"]),
        "test_mae": test["mae"], "test_rmse": test["rmse"], "test_nae": test["nae"],
        "f1_8px": test["f1_sigma8"], "f1_4px": test["f1_sigma4"],
        "threshold": test["threshold"], "best_val_mae": run["best_val_mae"],
        "training_images": run["training_images"],
        "training_images_per_second": run["training_images_per_second"],
        "val_curve": run["val_curve"], "train_loss_curve": run["train_loss_curve"],
        "machine": MACHINE, "date": datetime.date.today().isoformat(),
        "overrides": overrides,
    }


MACHINE = os.environ.get("MASKFOCAL_MACHINE", "2-core CPU (this project's)")


def use_results(path: Path) -> None:
    """Write results, table and figures under another name (a trial run)."""
    global RESULTS, TABLE, CHART, CURVES
    RESULTS, TABLE = path, path.with_suffix(".md")
    CHART, CURVES = path.with_suffix(".png"), path.with_name(path.stem + "_curves.png")


def load_results() -> list[dict[str, Any]]:
    return [judged(r) for r in json.loads(RESULTS.read_text())] if RESULTS.is_file() else []


def save_record(record: dict[str, Any]) -> None:
    """Add (or replace) one run's record, under a lock, so parallel jobs keep each other's."""
    from maskfocal.fileio import atomic_write_text

    RESULTS.parent.mkdir(exist_ok=True)
    with open(RESULTS.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = [r for r in load_results()
                   if tuple(r[k] for k in CELL) != tuple(record[k] for k in CELL)]
        results.append(record)
        results.sort(key=lambda r: tuple(r[k] for k in CELL))
        atomic_write_text(RESULTS, json.dumps(results, indent=1) + "\n")


def merge(paths: list[Path]) -> None:
    """Bring in the records of other results files, each replacing this file's record of the
    same cell (dataset, detector, variant, seed and budget); where both are the same run (one
    learning curve), what only this file's has (``--analyse``'s statistics) stays."""
    for path in paths:
        if not path.is_file():
            raise SystemExit(f"{path}: no such results file")
        records = json.loads(path.read_text())
        here = {tuple(r[k] for k in CELL): r for r in load_results()}
        for record in records:
            twin = here.get(tuple(record[k] for k in CELL), {})
            save_record({**twin, **record} if twin.get("val_curve") == record["val_curve"]
                        else record)
        print(f"{path}: {len(records)} records merged into {RESULTS}", file=sys.stderr)


def status(runs: Path) -> list[str]:
    """Where each unfinished run under ``runs`` stands (no ``test_metrics.json`` yet): budget
    minutes used, epochs, its validation readings, and the rule's verdict so far, on the
    epochs its pace projects for the whole budget; provisional, since the verdict reads the
    second half of the run's epochs and a cosine schedule still has to reach zero."""
    import yaml

    from maskfocal.engine.run_folder import read_metrics, val_curve

    lines = []
    for folder in sorted(p.parent for p in runs.glob("*/metrics.csv")):
        if (folder / "test_metrics.json").is_file() or not (folder / "config.yaml").is_file():
            continue
        budget = yaml.safe_load((folder / "config.yaml").read_text())["train"]["max_minutes"]
        rows = read_metrics(folder / "metrics.csv")
        if not rows:
            continue
        epochs, minutes = len(rows), float(rows[-1]["minutes"])
        curve = val_curve(rows)
        line = f"{folder.name}: {minutes:.0f} of {budget or 0:g} min, {epochs} epochs"
        if curve:
            readings = ", ".join(f"{mae:.2f} ({epoch})" for epoch, _, mae in curve)
            line += f"; val MAE (epoch): {readings}; best {min(c[2] for c in curve):.2f}"
        if budget and minutes > 0 and curve:
            projected = max(epochs, round(epochs * budget / minutes))
            verdict = convergence(curve, projected)
            if verdict["improvement"] is not None:
                line += (f"; so far, on {projected} projected epochs: "
                         f"{verdict['improvement']:+.1%} ± {verdict['improvement_se']:.1%} "
                         f"a quarter")
        lines.append(line)
    return lines or [f"{runs}: no unfinished runs"]


# why: detection statistics of the finished runs ------------------------------------------
LOW_FLOOR = 0.01  # decode floor of the analysis; the toolkit's is SCORE_FLOOR (0.05)


def analyse(args) -> None:
    """Add ``analysis`` to each record whose run folder still has ``best.pt``: over its test
    split, the signed count error, precision / recall at 8 px, extra peaks per 100 heads, the
    heatmap's score at head centres and 2 px away (CenterNet), the test MAE at every
    threshold from ``LOW_FLOOR`` (how much the threshold calibrated on validation gives
    away), and the test MAE with the threshold calibrated on validation from ``LOW_FLOOR``
    rather than the toolkit's floor (whether that floor capped the count)."""
    from experiments.mfl_analysis import detection_statistics, peak_statistics
    from maskfocal import Counter
    from maskfocal.data import build_splits

    for record in load_results():
        folder = args.runs / cell_key(record["dataset"], record["detector"], record["variant"],
                                      record["seed"], record["budget_minutes"])
        if "analysis" in record or not (folder / "best.pt").is_file():
            continue
        counter = Counter.from_checkpoint(folder / "best.pt", device=args.analyse_device)
        config = counter.config
        _, val, test = build_splits(config.data, seed=config.train.seed)
        predictions = counter.predictor.candidates(test, floor=LOW_FLOOR)
        if counter.has_heatmap:  # the scores at head centres need the map: a pass of its own
            peaks = peak_statistics(counter, test)
        else:  # counting at the threshold keeps the candidates above it: no second pass
            peaks = detection_statistics(
                ((found.above(counter.threshold).points.numpy(), None)
                 for found in predictions.detections), test)
        record["analysis"] = {**peaks, **below_floor(counter.predictor, val, predictions)}
        save_record(record)
        print(f"analysed {folder.name}", flush=True)


def below_floor(predictor, val, predictions) -> dict[str, Any]:
    """From the model's test candidates down to ``LOW_FLOOR`` (``predictions``): test MAE at
    thresholds 0.01-0.95 and the threshold calibrated on ``val`` over that wider range, with
    its test MAE."""
    from maskfocal.inference import calibrate_threshold
    from maskfocal.metrics import counting_errors

    grid = np.round(np.arange(LOW_FLOOR, 0.951, 0.01), 4)
    threshold, _ = calibrate_threshold(predictor.candidates(val, floor=LOW_FLOOR), grid)

    def mae(t):
        return round(counting_errors(predictions.counts(t), predictions.gt_counts)["mae"], 3)

    sweep = {f"{t:.2f}": mae(t) for t in grid[::5]}
    return {"test_mae_by_threshold": sweep, "best_threshold_test_mae": min(sweep.values()),
            "low_floor_threshold": threshold, "low_floor_test_mae": mae(threshold)}


def why_table(grouped) -> list[str]:
    """The analysis, mean over converged runs per cell and role."""
    lines = ["", "## Why: detections of converged runs on the test split (mean over seeds)", "",
             "| dataset | detector | budget min | variant | runs | signed count error "
             "| precision / recall at 8 px | extra peaks per 100 heads | score at centre / 2 px "
             f"away | MAE at calibrated / best threshold | MAE, floor {LOW_FLOOR} (threshold) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (dataset, detector, budget), by_role in sorted(grouped.items()):
        for role in ROLES:
            runs = [r for r in by_role.get(role, []) if r["converged"] and "analysis" in r]
            if not runs:
                continue

            def mean(key, runs=runs):
                values = [r["analysis"][key] for r in runs if r["analysis"][key] is not None]
                return np.mean(values) if values else float("nan")

            lines.append(
                f"| {dataset} | {detector} | {budget:g} | {role} | {len(runs)} | "
                f"{mean('mean_signed_error'):+.2f} | {mean('precision_8px'):.3f} / "
                f"{mean('recall_8px'):.3f} | {mean('extra_peaks_per_100_heads'):.1f} | "
                f"{mean('score_at_centre'):.2f} / {mean('score_2px_away'):.2f} | "
                f"{np.mean([r['test_mae'] for r in runs]):.2f} / "
                f"{mean('best_threshold_test_mae'):.2f} | {mean('low_floor_test_mae'):.2f} "
                f"({mean('low_floor_threshold'):.2f}) |")
    return lines if len(lines) > 5 else []


# the report --------------------------------------------------------------------------------
def role_of(run: dict[str, Any], results: list[dict[str, Any]]) -> list[str]:
    roles = [run["variant"]] if run["variant"] in ("native", "mfl") else []
    if run["variant"] == chosen_variant(results, run["detector"], run["dataset"],
                                        run["budget_minutes"]):
        roles.append("mfl-best")
    return roles


def cells(results: list[dict[str, Any]]) -> dict[tuple[str, str, float], dict[str, list]]:
    """Runs by (dataset, detector, budget) and role (native, mfl, mfl-best)."""
    grouped: dict[tuple[str, str, float], dict[str, list[dict]]] = {}
    for run in results:
        for role in role_of(run, results):
            key = (run["dataset"], run["detector"], run["budget_minutes"])
            grouped.setdefault(key, {}).setdefault(role, []).append(run)
    return grouped


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "-"
    sd = f" ± {np.std(values, ddof=1):.2f}" if len(values) > 1 else ""
    return f"{np.mean(values):.2f}{sd}"


def paired(grouped, *, converged_only: bool) -> list[str]:
    """MFL minus own loss, seed by seed, per (dataset, detector, budget) and MFL role."""
    title = ("both converged" if converged_only
             else "every run, converged or not: for reference, not a finding")
    lines = ["", f"## Paired by seed: MFL minus own loss ({title})", "",
             "| dataset | detector | budget min | variant | pairs (both converged) | MAE "
             "difference per seed | mean | relative | MFL wins |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (dataset, detector, budget), by_role in sorted(grouped.items()):
        native = {r["seed"]: r for r in by_role.get("native", [])
                  if r["converged"] or not converged_only}
        for role in ("mfl", "mfl-best"):
            mfl = {r["seed"]: r for r in by_role.get(role, [])
                   if r["converged"] or not converged_only}
            seeds = sorted(set(native) & set(mfl))
            if not seeds:
                continue
            diffs = [mfl[s]["test_mae"] - native[s]["test_mae"] for s in seeds]
            base = np.mean([native[s]["test_mae"] for s in seeds])
            both = sum(mfl[s]["converged"] and native[s]["converged"] for s in seeds)
            lines.append(
                f"| {dataset} | {detector} | {budget:g} | {role} | {len(seeds)} ({both}) | "
                f"{', '.join(f'{d:+.2f}' for d in diffs)} | {np.mean(diffs):+.2f} | "
                f"{np.mean(diffs) / base:+.1%} | {sum(d < 0 for d in diffs)}/{len(seeds)} |")
    return lines


def doublings(results: list[dict[str, Any]]) -> list[str]:
    """What each longer budget bought the same cell (dataset, detector, variant, seed): the
    evidence beside the rule's verdict, which reads one run's late curve (under a cosine that
    reaches zero at the budget, that curve tends to fall to the end whatever the budget)."""
    runs: dict[tuple, dict[float, dict]] = {}
    for r in results:
        key = (r["dataset"], r["detector"], r["variant"], r["seed"])
        runs.setdefault(key, {})[r["budget_minutes"]] = r
    rows = []
    for (dataset, detector, variant, seed), by_budget in sorted(runs.items()):
        budgets = sorted(by_budget)
        for short, long in itertools.pairwise(budgets):
            a, b = by_budget[short], by_budget[long]
            rows.append(
                f"| {dataset} | {detector} | {variant} | {seed} | {short:g} -> {long:g} | "
                f"{a['epochs']} -> {b['epochs']} | {a['best_val_mae']:.2f} -> "
                f"{b['best_val_mae']:.2f} ({b['best_val_mae'] / a['best_val_mae'] - 1:+.1%}) | "
                f"{a['test_mae']:.2f} -> {b['test_mae']:.2f} "
                f"({b['test_mae'] / a['test_mae'] - 1:+.1%}) | "
                f"{'yes' if a['converged'] else 'no'} |")
    if not rows:
        return []
    return ["", "## Longer budgets: what the same cell gained", "",
            "| dataset | detector | variant | seed | budget min | epochs | best val MAE | "
            "test MAE | converged at the shorter? |", "|---|---|---|---|---|---|---|---|---|",
            *rows]


def report(results: list[dict[str, Any]]) -> str:
    lines = ["# MFL against each detector's own loss, at convergence", "",
             f"Generated by `experiments/mfl_converged.py --report` from `{RESULTS.name}` "
             f"({len(results)} runs). A run is converged when a least-squares line through the "
             "validation MAEs of the second half of its epochs, carried over a quarter of its "
             f"epochs, improves by less than {CONVERGED_BELOW:.0%}; runs that are not are "
             "listed but left out of the comparisons. The line's standard error, beside its "
             "verdict in the last table, is how much of that verdict the readings' scatter "
             "could make.", ""]
    lines += ["## Test MAE / RMSE / F1 at 8 px, converged runs only (mean ± sd over seeds)", "",
              "| dataset | detector | budget min | variant | setting | seeds (converged/run) "
              "| MAE | RMSE | F1 at 8 px |", "|---|---|---|---|---|---|---|---|---|"]
    grouped = cells(results)
    for (dataset, detector, budget), by_role in sorted(grouped.items()):
        for role in ROLES:
            runs = by_role.get(role, [])
            ok = [r for r in runs if r["converged"]]
            setting = runs[0]["variant"] if runs else "-"
            lines.append(
                f"| {dataset} | {detector} | {budget:g} | {role} | {setting} | "
                f"{len(ok)}/{len(runs)} | "
                f"{_mean_sd([r['test_mae'] for r in ok])} | "
                f"{_mean_sd([r['test_rmse'] for r in ok])} | "
                f"{_mean_sd([r['f1_8px'] for r in ok])} |")
    lines += paired(grouped, converged_only=True)
    lines += paired(grouped, converged_only=False)
    lines += why_table(grouped)
    lines += doublings(results)
    lines += ["", "## Every run", "",
              "| dataset | detector | variant | seed | budget min | epochs | images/s | converged "
              "(line ± its standard error; quarters) | best val MAE | test MAE | RMSE "
              "| F1 at 8 px | machine |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    clock = ", budget in CPU time"  # train.budget_clock=process; else the wall clock
    for r in results:
        improvement = "-" if r["improvement"] is None else f"{r['improvement']:+.1%}"
        if r.get("improvement_se") is not None:
            improvement += f" ± {r['improvement_se']:.1%}"
        if r.get("quarters_improvement") is not None:
            improvement += f"; quarters {r['quarters_improvement']:+.1%}"
        lines.append(
            f"| {r['dataset']} | {r['detector']} | {r['variant']} | {r['seed']} | "
            f"{r['budget_minutes']:g} | {r['epochs']} | "
            f"{r['training_images_per_second']:.1f} | "
            f"{'yes' if r['converged'] else 'no'} ({improvement}) | {r['best_val_mae']:.2f} | "
            f"{r['test_mae']:.2f} | {r['test_rmse']:.2f} | {r['f1_8px']:.3f} | {r['machine']}"
            f"{clock if 'train.budget_clock=process' in r['overrides'] else ''} |")
    lines.append("")
    for dataset, detector, budget in sorted({(r["dataset"], r["detector"], r["budget_minutes"])
                                             for r in results}):
        choice = chosen_variant(results, detector, dataset, budget)
        lines.append(f"- mfl-best for {detector} on {dataset} at {budget:g} min: "
                     + (f"`{choice}` (lowest validation MAE among {CANDIDATES[detector]}, "
                        f"seed {SELECTION_SEED})" if choice
                        else "not chosen yet (selection runs missing)"))
    return "\n".join(lines) + "\n"


def figures(results: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grouped = cells(results)
    keys = sorted(grouped)
    if not keys:
        return
    figure, axis = plt.subplots(figsize=(max(6, 2.2 * len(keys)), 3.8))
    width = 0.27
    for number, role in enumerate(ROLES):
        maes = [[r["test_mae"] for r in grouped[k].get(role, []) if r["converged"]]
                for k in keys]
        axis.bar(np.arange(len(keys)) + (number - 1) * width,
                 [np.mean(m) if m else np.nan for m in maes], width,
                 yerr=[np.std(m, ddof=1) if len(m) > 1 else 0 for m in maes], capsize=3,
                 label={"native": "own loss", "mfl": "MFL (MFL.md start)",
                        "mfl-best": "MFL (chosen on validation)"}[role])
    axis.set_xticks(np.arange(len(keys)), [f"{d}\n{m}, {b:g} min" for d, m, b in keys],
                    fontsize=8)
    axis.set_ylabel("test MAE, converged runs (lower is better)")
    axis.legend(fontsize=7)
    figure.tight_layout()
    CHART.parent.mkdir(exist_ok=True)
    figure.savefig(CHART, dpi=110)
    plt.close(figure)

    figure, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.2), squeeze=False)
    colours = {"native": "tab:blue", "mfl": "tab:orange", "mfl-best": "tab:green"}
    for axis, key in zip(axes[0], keys, strict=True):
        for role in ROLES:
            for run in grouped[key].get(role, []):
                curve = np.array(run["val_curve"])
                axis.plot(curve[:, 1], curve[:, 2], color=colours[role], alpha=0.8,
                          linestyle="-" if run["converged"] else ":",
                          label=f"{role} s{run['seed']}")
        axis.set_title(f"{key[0]} / {key[1]} / {key[2]:g} min", fontsize=8)
        axis.set_xlabel("minutes")
        axis.set_ylabel("validation MAE")
        axis.legend(fontsize=5)
    figure.tight_layout()
    figure.savefig(CURVES, dpi=100)
    plt.close(figure)


def write_report() -> None:
    from maskfocal.fileio import atomic_write_text

    results = load_results()
    atomic_write_text(TABLE, report(results))
    figures(results)


# main --------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--detectors", nargs="*", default=["centernet", "fcos"],
                        choices=list(CANDIDATES))
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1])
    parser.add_argument("--variants", nargs="*", choices=[*VARIANTS, "mfl-best"],
                        help="only these variants of the grid (e.g. native first, to measure "
                             "the budget at which the own loss converges)")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "mfl_converged",
                        help="one folder per run (checkpoints; resumed from there)")
    parser.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--minutes-scale", type=float, default=1.0,
                        help="multiply every budget (e.g. 0.1 on a GPU)")
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides for every run (device, ...)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (a GPU)")
    parser.add_argument("--threads", type=int,
                        help="CPU threads per run with --jobs > 1 (default: cores / runs)")
    parser.add_argument("--max-runs", type=int, help="stop after this many runs")
    parser.add_argument("--report", action="store_true", help="only rebuild table and figures")
    parser.add_argument("--status", action="store_true",
                        help="where the unfinished runs under --runs stand; trains nothing")
    parser.add_argument("--merge", type=Path, nargs="+", metavar="RESULTS",
                        help="add the records of other results files (a worktree's queue, a GPU "
                             "call's), replacing this file's of the same cells; then the report")
    parser.add_argument("--analyse", action="store_true",
                        help="add detection statistics to the finished runs' records")
    parser.add_argument("--analyse-device", default="cpu", help="where --analyse runs (cuda)")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="results file (a trial elsewhere: table and figures beside it)")
    parser.add_argument("--cell", nargs=4, metavar=("DATASET", "DETECTOR", "VARIANT", "SEED"),
                        help=argparse.SUPPRESS)  # one run, in a --jobs worker
    args = parser.parse_args()
    if args.results != RESULTS:
        use_results(args.results)
    if args.status:
        print("\n".join(status(args.runs)))
        return
    if args.cell:
        dataset, detector, variant, seed = args.cell
        save_record(run_cell(dataset, detector, variant, int(seed), args))
        return
    if args.merge:
        merge(args.merge)
    elif args.analyse:
        analyse(args)
    elif not args.report:
        real = [d for d in args.datasets if d.startswith("shanghaitech_b")]
        if real and not args.data_root.is_dir():
            print(f"skipping {', '.join(real)}: {args.data_root} is missing", file=sys.stderr)
            args.datasets = [d for d in args.datasets if d not in real]
        grid(args)
    write_report()
    print(TABLE.read_text())


def grid(args) -> None:
    """Run what is planned, ``--jobs`` at a time, re-planning after each wave (``mfl-best``
    resolves once the selection runs are in). A run that fails is reported with the end of
    its log and not tried again in this invocation; the others go on."""
    started, failed = 0, set()
    while True:
        todo = planned(load_results(), args.datasets, args.detectors, args.seeds,
                       args.minutes_scale)
        waiting = [c for c in todo if c[2] == "mfl-best"]
        todo = [c for c in todo if c[2] != "mfl-best" and c not in failed
                and (not getattr(args, "variants", None) or c[2] in args.variants)]
        if args.max_runs is not None:
            todo = todo[:max(0, args.max_runs - started)]
        if not todo:
            if waiting:
                print(f"{len(waiting)} mfl-best runs wait for the selection runs of seed "
                      f"{SELECTION_SEED}", file=sys.stderr)
            if failed:
                raise SystemExit(f"{len(failed)} runs failed: {sorted(failed)}")
            return
        wave = todo[:args.jobs]
        if args.jobs == 1:
            save_record(run_cell(*wave[0], args))
            outcome = [0]
        else:  # one process per run, each records itself and logs beside its folder
            args.runs.mkdir(parents=True, exist_ok=True)
            # CPU threads shared out: twelve runs of 16 threads each on 16 cores once left a
            # GPU idle while each run trained at 2 images/s (experiments/gpu_mfl_grid.sh)
            threads = str(args.threads or max(1, (os.cpu_count() or 1) // len(wave)))
            env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
            workers = []
            for d, m, v, s in wave:
                log = args.runs / f"{cell_key(d, m, v, s, budget_of(d, args.minutes_scale))}.log"
                workers.append(subprocess.Popen(
                    [sys.executable, "-m", "experiments.mfl_converged", "--cell", d, m, v,
                     str(s), "--runs", str(args.runs), "--data-root", str(args.data_root),
                     "--minutes-scale", str(args.minutes_scale), "--results", str(RESULTS),
                     "--set", *args.overrides], stdout=log.open("w"), stderr=subprocess.STDOUT,
                    env=env, cwd=ROOT))
            outcome = [worker.wait() for worker in workers]
        started += len(wave)
        for (dataset, detector, variant, seed), status in zip(wave, outcome, strict=True):
            budget = budget_of(dataset, args.minutes_scale)
            key = cell_key(dataset, detector, variant, seed, budget)
            if status:
                failed.add((dataset, detector, variant, seed))
                log = (args.runs / f"{key}.log").read_text().strip().splitlines()
                print(f"{key}: FAILED (exit {status}): {' | '.join(log[-3:])}", flush=True)
                continue
            record = next(r for r in load_results()  # saved by its run
                          if cell_key(*(r[k] for k in CELL)) == key)
            print(f"{key}: test MAE {record['test_mae']:.2f}, converged "
                  f"{record['converged']} ({record['epochs']} epochs, "
                  f"{record['training_images_per_second']:.0f} img/s)", flush=True)
            (args.runs / key / "last.pt").unlink(missing_ok=True)  # finished; best.pt stays


if __name__ == "__main__":
    main()
