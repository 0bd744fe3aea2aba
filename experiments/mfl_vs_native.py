"""The MFL experiment: each detector trained with its own loss and with Mask Focal Loss.

    .venv/bin/python -m experiments.mfl_vs_native --quick                 # CPU, ~100 min
    .venv/bin/python -m experiments.mfl_vs_native --quick --datasets scut_head_b
    .venv/bin/python -m experiments.mfl_vs_native --full                  # for a GPU
    .venv/bin/python -m experiments.mfl_vs_native --quick --datasets synthetic --seeds 0

Within a comparison everything but ``loss.name`` is equal: data, budget, schedule,
augmentation and seed. The counting threshold is calibrated on validation; test metrics are
reported. Runs are appended to ``experiments/results/mfl_vs_native.json`` as they finish, and a
run already there is not repeated, so an interrupted grid resumes. The Markdown table and the
bar chart (``docs/mfl_vs_native.png``) are rebuilt from the JSON at the end (or alone with
``--report``).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from maskfocal.config import load_config
from maskfocal.data import build_splits
from maskfocal.engine import train
from maskfocal.families import family_for
from maskfocal.fileio import atomic_write_text
from maskfocal.inference import predict
from maskfocal.inference.backend import load_detector

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "mfl_vs_native.json"
TABLE = HERE / "results" / "mfl_vs_native.md"
CHART = HERE.parent / "docs" / "mfl_vs_native.png"
DETECTORS = ("centernet", "fcos", "retinanet")
LOSSES = ("native", "mfl")

# Budgets: what each dataset trains on, per profile. Same for every detector and loss.
BUDGETS: dict[str, dict[str, list[str]]] = {
    "quick": {
        "synthetic": ["data.synthetic.train_images=160", "data.synthetic.val_images=30",
                      "data.synthetic.test_images=40", "data.synthetic.width=320",
                      "data.synthetic.height=240", "data.synthetic.max_count=600",
                      "data.synthetic.seed=1000", "data.synthetic.cache=true",
                      "data.input_size=192", "train.epochs=5", "train.lr=0.002",
                      "train.warmup_steps=20", "data.workers=0"],
        "shanghaitech_b": ["data.input_size=256", "train.epochs=4", "train.lr=0.002",
                           "train.warmup_steps=20", "data.workers=1"],
        "scut_head_b": ["data.input_size=256", "train.epochs=4", "train.lr=0.002",
                        "train.warmup_steps=20", "data.workers=1", "data.max_eval_side=1024"],
    },
    "full": {
        "synthetic": ["data.synthetic.train_images=2000", "data.synthetic.val_images=200",
                      "data.synthetic.test_images=300", "data.synthetic.seed=1000",
                      "data.input_size=512", "train.epochs=40", "data.workers=8"],
        "shanghaitech_b": ["data.input_size=512", "train.epochs=100", "data.workers=8"],
        "scut_head_b": ["data.input_size=512", "train.epochs=60", "data.workers=8"],
    },
}


def dataset_overrides(name: str, data_root: Path) -> list[str]:
    if name == "synthetic":
        return ["data.format=synthetic"]
    if name == "shanghaitech_b":
        return ["data.format=shanghaitech", f"data.root={data_root / 'ShanghaiTech/part_B'}",
                "data.val_split=null", "data.val_fraction=0.1"]
    if name == "scut_head_b":
        return ["data.format=voc", f"data.root={data_root / 'SCUT-HEAD-PartB'}",
                "data.val_split=null", "data.val_fraction=0.1"]
    raise SystemExit(f"unknown dataset {name!r}")


# Ablations of MFL on CenterNet and synthetic data; each changes one thing from MFL.md's
# starting point (gaussian mask, tau 0.5, w = 1, normaliser objects, negatives inside the
# mask), pinned here so that the recorded runs stay reproducible whatever the shipped defaults.
ABLATION_BASE = ["loss.mask=gaussian", "loss.tau=0.5", "loss.weight_power=1",
                 "loss.normalizer=objects", "loss.negatives_inside_mask=true"]
ABLATIONS: dict[str, list[str]] = {
    "default": [],
    "mask=peak": ["loss.mask=peak"],
    "mask=gaussian tau=0.3": ["loss.tau=0.3"],
    "mask=gaussian tau=0.7": ["loss.tau=0.7"],
    "mask=box": ["loss.mask=box"],
    "weight_power=0": ["loss.weight_power=0"],
    "weight_power=2": ["loss.weight_power=2"],
    "normalizer=positives": ["loss.normalizer=positives"],
    "normalizer=weighted": ["loss.normalizer=weighted"],
    "negatives_inside_mask=false": ["loss.negatives_inside_mask=false"],
}


def load_results() -> list[dict[str, Any]]:
    return json.loads(RESULTS.read_text()) if RESULTS.is_file() else []


def run_one(detector: str, loss: str, dataset: str, seed: int, profile: str,
            data_root: Path, extra: list[str], variant: str = "default",
            keep: Path | None = None, ablation: bool = False) -> dict[str, Any]:
    overrides = [*dataset_overrides(dataset, data_root), *BUDGETS[profile][dataset],
                 f"model.name={detector}", f"loss.name={loss}", f"train.seed={seed}",
                 *(ABLATION_BASE if ablation else []), *ABLATIONS[variant], *extra]
    config = load_config(None, overrides)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        if keep is not None:  # kept for the analysis (predicted heatmaps)
            folder = keep / f"{dataset}-{detector}-{loss}-{seed}-{variant}".replace(" ", "_")
            if folder.exists():
                shutil.rmtree(folder)
        start = time.perf_counter()
        result = train(config, folder, progress=False)
        minutes = (time.perf_counter() - start) / 60
        test = result["test"]
        test_images = build_splits(config.data, seed=config.train.seed)[2]
        with (folder / "metrics.csv").open(newline="") as file:
            history = [{k: float(v) for k, v in row.items() if v not in ("", None)}
                       for row in csv.DictReader(file)]
        sweep = threshold_sweep(folder / "best.pt", config, test_images)
    return {"detector": detector, "loss": loss, "dataset": dataset, "seed": seed,
            "profile": profile, "variant": variant, "setting": " ".join(extra),
            "mae": test["mae"], "rmse": test["rmse"],
            "nae": test["nae"],
            "f1_sigma8": test["f1_sigma8"], "threshold": test["threshold"],
            "train_minutes": round(minutes, 2),
            "images_per_second": round(test["images_per_second"], 2),
            "test_images": len(test_images), "history": history,
            "test_mae_by_threshold": sweep,
            "config": config.to_dict(), "overrides": overrides}


SWEEP = np.round(np.arange(0.05, 0.951, 0.05), 2)


def threshold_sweep(checkpoint: Path, config, images) -> dict[str, float]:
    """Test MAE at every threshold of ``SWEEP``: how much the calibrated one gives away."""
    model = load_detector(checkpoint)[0]
    predictions = predict(family_for(config), model, images, device=torch.device("cpu"),
                          max_side=config.data.max_eval_side)
    gt = predictions.gt_counts
    return {f"{t:.2f}": round(float(np.abs(predictions.counts(t) - gt).mean()), 3)
            for t in SWEEP}


def report(results: list[dict[str, Any]]) -> str:
    """Markdown table: mean (std) per detector and dataset, and MFL's relative reductions."""
    lines = ["| dataset | detector | seeds | MFL mask | native MAE | MFL MAE | MAE change "
             "| native RMSE | MFL RMSE | RMSE change |", "|---" * 10 + "|"]
    groups: dict[tuple[str, str, str], dict[str, list[dict]]] = {}
    for run in results:
        dataset = run["dataset"] + (f" ({run['setting']})" if run.get("setting") else "")
        variant = run.get("variant", "default")
        if variant == "default":  # MFL with the config's mask, and every native run
            groups.setdefault((dataset, run["detector"], ""), {}).setdefault(
                run["loss"], []).append(run)
        if variant == "mask=box" or (variant == "default" and run["loss"] == "native"):
            # MFL with the box mask (an ablation run) against the same native runs
            groups.setdefault((dataset, run["detector"], "box"), {}).setdefault(
                run["loss"], []).append(run)
    for (dataset, detector, _), by_loss in sorted(groups.items()):
        if not all(loss in by_loss for loss in LOSSES):
            continue
        seeds = {r["seed"] for r in by_loss["mfl"]}  # compare on the seeds MFL ran
        by_loss["native"] = [r for r in by_loss["native"] if r["seed"] in seeds]
        if not by_loss["native"]:
            continue
        cells = {}
        for loss in LOSSES:
            maes = np.array([r["mae"] for r in by_loss[loss]])
            rmses = np.array([r["rmse"] for r in by_loss[loss]])
            cells[loss] = (maes.mean(), maes.std(), rmses.mean(), rmses.std(), len(maes))
        native, mfl = cells["native"], cells["mfl"]
        mae_change = (mfl[0] - native[0]) / native[0] * 100
        rmse_change = (mfl[2] - native[2]) / native[2] * 100
        masks = sorted({r["config"]["loss"]["mask"] if detector == "centernet" else "assigned"
                        for r in by_loss["mfl"]})
        lines.append(
            f"| {dataset} | {detector} | {min(native[4], mfl[4])} | {', '.join(masks)} | "
            f"{native[0]:.2f} ({native[1]:.2f}) | {mfl[0]:.2f} ({mfl[1]:.2f}) | "
            f"{mae_change:+.1f} % | {native[2]:.2f} ({native[3]:.2f}) | "
            f"{mfl[2]:.2f} ({mfl[3]:.2f}) | {rmse_change:+.1f} % |")
    lines.append("")
    lines.append("Negative change: MFL has the lower error. Mean (standard deviation) over seeds.")
    tagged = [r for r in results if r.get("variant", "default") != "default"]
    setting = tagged[0].get("setting", "") if tagged else ""
    ablations = [r for r in results if r.get("setting", "") == setting
                 and r["loss"] == "mfl" and r["detector"] == "centernet"
                 and r["dataset"] == "synthetic"]
    variants = [v for v in ABLATIONS if v != "default"
                and any(r.get("variant", "default") == v for r in ablations)]
    if variants:
        lines += ["", f"Ablations of MFL (CenterNet, synthetic, {setting or 'defaults'}); each "
                  "variant changes one thing from MFL.md's starting point ('default': gaussian "
                  "mask, tau 0.5, w = 1, normaliser objects) and is compared with it on the "
                  "same seeds:",
                  "", "| variant | seeds | MAE | default MAE | MAE change | RMSE | F1 at 8 px |",
                  "|---|---|---|---|---|---|---|"]
        default = {r["seed"]: r for r in ablations if r.get("variant", "default") == "default"}
        for variant in variants:
            runs = [r for r in ablations if r.get("variant") == variant and r["seed"] in default]
            if not runs:
                continue
            mae = np.mean([r["mae"] for r in runs])
            base = np.mean([default[r["seed"]]["mae"] for r in runs])
            lines.append(f"| {variant} | {', '.join(str(r['seed']) for r in runs)} | "
                         f"{mae:.2f} | {base:.2f} | {(mae - base) / base * 100:+.1f} % | "
                         f"{np.mean([r['rmse'] for r in runs]):.2f} | "
                         f"{np.mean([r['f1_sigma8'] for r in runs]):.3f} |")
    return "\n".join(lines)


def chart(results: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def key(run: dict[str, Any]) -> tuple[str, str]:
        setting = run.get("setting", "").replace("loss.spread_source=points", "point spreads")
        return (run["dataset"] + (f"\n({setting})" if setting else ""), run["detector"])

    results = [r for r in results if r.get("variant", "default") in ("default", "mask=box")]
    keys = sorted({key(r) for r in results})
    if not keys:
        return
    figure, axis = plt.subplots(figsize=(max(6, 1.6 * len(keys)), 3.8))
    series = [("native", "default", "own loss"),
              ("mfl", "default", "Mask Focal Loss (gaussian or assigned mask)"),
              ("mfl", "mask=box", "Mask Focal Loss, box mask")]
    width = 0.27
    for number, (loss, variant, label) in enumerate(series):
        maes = [[r["mae"] for r in results if key(r) == k and r["loss"] == loss
                 and r.get("variant", "default") == variant] for k in keys]
        if not any(maes):
            continue
        axis.bar(np.arange(len(keys)) + (number - 1) * width,
                 [np.mean(m) if m else np.nan for m in maes], width,
                 yerr=[np.std(m) if m else np.nan for m in maes], capsize=3, label=label)
    axis.set_xticks(np.arange(len(keys)), [f"{d}\n{m}" for d, m in keys], fontsize=7)
    axis.set_ylabel("test MAE (lower is better)")
    axis.legend(fontsize=7)
    figure.tight_layout()
    CHART.parent.mkdir(exist_ok=True)
    figure.savefig(CHART, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    profile = parser.add_mutually_exclusive_group()
    profile.add_argument("--quick", action="store_const", dest="profile", const="quick")
    profile.add_argument("--full", action="store_const", dest="profile", const="full")
    parser.add_argument("--datasets", nargs="*", default=["synthetic", "shanghaitech_b"],
                        choices=["synthetic", "shanghaitech_b", "scut_head_b"],
                        help="default: synthetic and shanghaitech_b (the ~90-minute quick grid); "
                             "scut_head_b on request")
    parser.add_argument("--detectors", nargs="*", default=list(DETECTORS))
    parser.add_argument("--seeds", type=int, nargs="*")
    parser.add_argument("--data-root", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--report", action="store_true", help="only rebuild table and chart")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="keep each run's folder (checkpoints, metrics.csv) under DIR")
    parser.add_argument("--ablations", action="store_true",
                        help="run the MFL ablations (CenterNet, synthetic) instead of the grid")
    parser.add_argument("--variants", nargs="*", choices=list(ABLATIONS), metavar="VARIANT",
                        help="with --ablations: only these (default: all)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="extra config override for every run")
    args = parser.parse_args()
    args.profile = args.profile or "quick"
    results = load_results()
    if args.ablations and not args.report:
        for seed in args.seeds if args.seeds is not None else [0]:
            for variant in args.variants or ABLATIONS:
                done = any(r.get("variant", "default") == variant and r["seed"] == seed
                           and r["detector"] == "centernet" and r["loss"] == "mfl"
                           and r["dataset"] == "synthetic" and r["profile"] == args.profile
                           and r.get("setting", "") == " ".join(args.overrides)
                           for r in results)
                if done:
                    continue
                run = run_one("centernet", "mfl", "synthetic", seed, args.profile,
                              args.data_root, args.overrides, variant, args.keep,
                              ablation=True)
                results.append(run)
                RESULTS.parent.mkdir(exist_ok=True)
                atomic_write_text(RESULTS, json.dumps(results, indent=1))
                print(f"ablation {variant:<28} seed {seed}: MAE {run['mae']:.2f} "
                      f"RMSE {run['rmse']:.2f}", flush=True)
    elif not args.report:
        for dataset in args.datasets:
            if dataset != "synthetic" and not args.data_root.is_dir():
                print(f"skipping {dataset}: {args.data_root} is missing", file=sys.stderr)
                continue
            seeds = args.seeds if args.seeds is not None else (
                [0, 1, 2] if dataset == "synthetic" else [0])
            for seed in seeds:
                for detector in args.detectors:
                    for loss in LOSSES:
                        done = any(r["detector"] == detector and r["loss"] == loss
                                   and r["dataset"] == dataset and r["seed"] == seed
                                   and r["profile"] == args.profile
                                   and r.get("variant", "default") == "default"
                                   and r.get("setting", "") == " ".join(args.overrides)
                                   for r in results)
                        if done:
                            continue
                        run = run_one(detector, loss, dataset, seed, args.profile,
                                      args.data_root, args.overrides, keep=args.keep)
                        results.append(run)
                        RESULTS.parent.mkdir(exist_ok=True)
                        atomic_write_text(RESULTS, json.dumps(results, indent=1))
                        print(f"{dataset:<15} {detector:<10} {loss:<7} seed {seed}: "
                              f"MAE {run['mae']:.2f} RMSE {run['rmse']:.2f} "
                              f"({run['train_minutes']:.1f} min)", flush=True)
    table = report(results)
    atomic_write_text(TABLE, table + "\n")
    chart(results)
    print(table)


if __name__ == "__main__":
    main()
