"""Why MFL wins or loses: threshold sensitivity, training curves and predicted heatmaps.

    .venv/bin/python -m experiments.mfl_vs_native --quick --ablations --seeds 0 \\
        --set loss.spread_source=points --keep /tmp/mflruns
    .venv/bin/python -m experiments.mfl_analysis --runs /tmp/mflruns

Reads ``experiments/results/mfl_vs_native.json`` (per-epoch history and the test MAE at every
threshold, recorded by ``mfl_vs_native.py``) and the kept run folders (checkpoints), compares
CenterNet trained with its own loss against MFL variants on the synthetic test split, prints
a table and writes ``docs/mfl_analysis.png``. Synthetic data only: pictures of real datasets
must not be committed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "mfl_vs_native.json"
FIGURE = HERE.parent / "docs" / "mfl_analysis.png"
# (label, loss, variant) compared; all CenterNet, synthetic, seed 0, the same setting
RUNS = [("own loss (peak mask)", "native", "default"),
        ("MFL gaussian tau 0.5", "mfl", "default"),
        ("MFL gaussian tau 0.7", "mfl", "mask=gaussian tau=0.7"),
        ("MFL box mask", "mfl", "mask=box")]


def find(results, loss, variant, seed, setting):
    for run in results:
        if (run["detector"], run["dataset"], run["loss"], run.get("variant", "default"),
                run["seed"], run.get("setting", "")) == ("centernet", "synthetic", loss,
                                                         variant, seed, setting):
            return run
    return None


def peak_statistics(counter, images) -> dict[str, float | None]:
    """Over the test split at the calibrated threshold: signed count error, localisation at
    8 px, extra peaks near a matched head (one head, two peaks) and, for a heatmap model, the
    predicted score at true head centres and 2 feature px away (how peaked the map is)."""
    found = (counter(image.load_image(), return_heatmap=counter.has_heatmap) for image in images)
    return detection_statistics(((result.points, result.heatmap) for result in found), images)


def detection_statistics(found, images) -> dict[str, float | None]:
    """:func:`peak_statistics` from what was found in each image: (points, heatmap or None)."""
    from scipy.spatial import cKDTree

    from maskfocal.metrics import match_points

    errors, matched, predicted, truth, doubles, centre, ring = [], 0, 0, 0, 0, [], []
    for (points, heat), image in zip(found, images, strict=True):
        gt = image.points
        errors.append(len(points) - len(gt))
        matched += match_points(points, gt, 8.0)[0]
        predicted += len(points)
        truth += len(gt)
        if len(points) and len(gt):  # peaks whose nearest head (< 6 px) has a peak already
            distance, nearest = cKDTree(gt).query(points, k=1)
            close = nearest[distance < 6.0]
            doubles += len(close) - len(np.unique(close))
        for x, y in gt if heat is not None else ():
            column, row = int(x // 4), int(y // 4)
            if 2 <= row < heat.shape[0] - 2 and 2 <= column < heat.shape[1] - 2:
                centre.append(heat[row, column])
                ring.append(np.mean([heat[row - 2, column], heat[row + 2, column],
                                     heat[row, column - 2], heat[row, column + 2]]))
    errors = np.array(errors, dtype=float)
    return {"mean_signed_error": float(errors.mean()),
            "precision_8px": matched / max(1, predicted), "recall_8px": matched / max(1, truth),
            "extra_peaks_per_100_heads": 100 * doubles / max(1, truth),
            "score_at_centre": float(np.mean(centre)) if centre else None,
            "score_2px_away": float(np.mean(ring)) if ring else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, required=True, help="the --keep folder")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--setting", default="loss.spread_source=points")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from maskfocal import Counter
    from maskfocal.config import config_from_dict
    from maskfocal.data import build_splits

    results = json.loads(args.results.read_text())
    rows, counters, test = [], [], None
    for label, loss, variant in RUNS:
        run = find(results, loss, variant, args.seed, args.setting)
        folder = args.runs / f"synthetic-centernet-{loss}-{args.seed}-{variant}".replace(" ", "_")
        if run is None or not (folder / "best.pt").is_file():
            print(f"missing: {label} ({folder})")
            continue
        counter = Counter.from_checkpoint(folder / "best.pt", device="cpu")
        if test is None:
            config = config_from_dict(run["config"])
            test = build_splits(config.data, seed=config.train.seed)[2]
        stats = peak_statistics(counter, test)
        sweep = run["test_mae_by_threshold"]
        rows.append((label, run, stats, min(sweep.values())))
        counters.append((label, counter))
    if not rows:
        raise SystemExit("no runs to analyse")

    print(f"CenterNet-R18, synthetic test split ({len(test)} scenes), seed {args.seed}, "
          f"{args.setting or 'defaults'}\n")
    print("| run | MAE | best MAE over thresholds | threshold | signed error | P / R at 8 px "
          "| extra peaks per 100 heads | score at centre / 2 px away |")
    print("|---|---|---|---|---|---|---|---|")
    for label, run, stats, best in rows:
        print(f"| {label} | {run['mae']:.2f} | {best:.2f} | {run['threshold']:.2f} | "
              f"{stats['mean_signed_error']:+.2f} | {stats['precision_8px']:.3f} / "
              f"{stats['recall_8px']:.3f} | {stats['extra_peaks_per_100_heads']:.1f} | "
              f"{stats['score_at_centre']:.2f} / {stats['score_2px_away']:.2f} |")

    busiest = max(range(len(test)), key=lambda i: test[i].num_heads)
    scene = test[busiest]
    pixels = scene.load_image()
    figure = plt.figure(figsize=(4.2 * len(counters), 7.4))
    grid = figure.add_gridspec(2, len(counters), height_ratios=[1, 1])
    for column, (label, counter) in enumerate(counters):
        axis = figure.add_subplot(grid[0, column])
        result = counter(pixels, return_heatmap=True)
        axis.imshow(result.heatmap, cmap="inferno", vmin=0, vmax=1)
        axis.scatter(scene.points[:, 0] / 4 - 0.5, scene.points[:, 1] / 4 - 0.5, s=3,
                     c="cyan", linewidths=0)
        axis.set_title(f"{label}\n{result.count} found, {scene.num_heads} true", fontsize=9)
        axis.axis("off")
    curves = figure.add_subplot(grid[1, : max(1, len(counters) // 2)])
    for label, run, _, _ in rows:
        sweep = run["test_mae_by_threshold"]
        curves.plot([float(t) for t in sweep], list(sweep.values()), label=label)
        curves.axvline(run["threshold"], color=curves.lines[-1].get_color(), linestyle=":",
                       linewidth=1)
    curves.set_xlabel("score threshold (dotted: calibrated on validation)")
    curves.set_ylabel("test MAE")
    curves.set_ylim(0, 80)
    curves.legend(fontsize=7)
    training = figure.add_subplot(grid[1, max(1, len(counters) // 2):])
    for label, run, _, _ in rows:
        epochs = [row["epoch"] + 1 for row in run["history"]]
        training.plot(epochs, [row["val_mae"] for row in run["history"]], marker="o",
                      label=label)
    training.set_xlabel("epoch")
    training.set_ylabel("validation MAE")
    training.legend(fontsize=7)
    figure.suptitle("Predicted heatmaps (busiest synthetic test scene; cyan: true heads), "
                    "threshold sensitivity, validation curves", fontsize=10)
    figure.tight_layout()
    FIGURE.parent.mkdir(exist_ok=True)
    figure.savefig(FIGURE, dpi=100)
    print(f"\nwrote {FIGURE}")


if __name__ == "__main__":
    main()
