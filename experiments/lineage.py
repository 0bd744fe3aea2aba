"""The lineage of ``crowd-lite0``: the model trained on, one run a session, across sessions.

Each session continues the shipped ``crowd-lite0`` (``configs/crowd_lite0_continue.yaml``, one
thread, ``train.budget_clock=process``); at the end this script compares the run's ``best.pt``
with the shipped model on the same validation images (the 110 that the recipe holds out of
ShanghaiTech A, B and SCUT-HEAD B), by the mean relative MAE over the three sources, each at
its balanced threshold and the same test-time scale. Both are scored by
``experiments/calibrate_scale.py`` (its JSON files are this script's input)::

    python -m experiments.calibrate_scale --checkpoint crowd-lite0 --scales 1.5 \\
        --out experiments/results/crowd_lite0/val_shipped_DATE.json
    python -m experiments.calibrate_scale --checkpoint RUN/best.pt --scales 1.5 \\
        --out experiments/results/crowd_lite0/val_RUN.json
    python -m experiments.lineage --run RUN \\
        --candidate experiments/results/crowd_lite0/val_RUN.json \\
        --shipped experiments/results/crowd_lite0/val_shipped_DATE.json [--ship]

It adds the run's row to ``experiments/results/crowd_lite0/lineage.json`` (run, started from,
CPU hours, cumulative CPU hours, validation of both, shipped or not) and rewrites
``lineage.md``. ``--ship`` replaces the package's ``crowd_lite0.safetensors`` (float16, with
the candidate's scale and threshold) only when the candidate's error is lower, and at most once
a session (``--session LABEL``, default the date); a run that does not win is recorded and
its weights stay out of the package.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
from pathlib import Path
from typing import Any

RESULTS = Path("experiments/results/crowd_lite0")
LINEAGE = RESULTS / "lineage.json"
WEIGHTS = Path("src/maskfocal/weights/crowd_lite0.safetensors")


def chosen(scores_path: Path) -> dict[str, Any]:
    """The chosen row of a ``calibrate_scale`` file: scale, threshold, the relative error and
    each source's MAE."""
    row = json.loads(Path(scores_path).read_text())["chosen"]
    return {"scale": row["scale"], "threshold": row["threshold"],
            "val_relative_mae": row["val_relative_mae"],
            "per_source": {Path(source).name: entry["mae"]
                           for source, entry in row["per_source"].items()}}


def run_row(run: Path, candidate: dict, shipped: dict, rows: list[dict]) -> dict[str, Any]:
    """The lineage row of ``run`` (its ``last.pt`` for the clock, ``config.yaml`` for the
    start), against the shipped model's scores."""
    import csv

    import torch
    import yaml

    last = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    config = yaml.safe_load((run / "config.yaml").read_text())
    cpu_hours = float(last["elapsed_seconds"]) / 3600
    if config["train"]["budget_clock"] != "process":
        raise SystemExit(f"{run}: the lineage counts CPU time; train with "
                         "train.budget_clock=process (one thread)")
    with (run / "metrics.csv").open(newline="") as file:
        metrics = list(csv.DictReader(file))
    crops = sum(float(r["seconds"]) * float(r["images_per_second"]) for r in metrics)
    previous = rows[-1]["cumulative_cpu_hours"] if rows else 0.0
    gain = 1 - candidate["val_relative_mae"] / shipped["val_relative_mae"]
    return {"date": datetime.date.today().isoformat(), "run": run.name,
            "started_from": config["model"]["init_from"],
            "lr": config["train"]["lr"], "hard_negative_crops":
                config["data"].get("hard_negative_crops", 0.0),
            "epochs": len(metrics), "training_crops": round(crops),
            "cpu_hours": round(cpu_hours, 2),
            "cumulative_cpu_hours": round(previous + cpu_hours, 2),
            "candidate": candidate, "shipped_model": shipped,
            "gain": round(gain, 4), "shipped": False}


def table(rows: list[dict]) -> str:
    """The lineage as a markdown table."""
    lines = ["| date | run | started from | CPU hours (cumulative) | balanced val of the run "
             "| the shipped model's then (the run's change) | its SHA / SHB / SCUT val MAE "
             "| shipped |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        sources = row["candidate"]["per_source"]
        maes = " / ".join(f"{sources[name]:.2f}" if name in sources else "-"
                          for name in ("part_A", "part_B", "SCUT-HEAD-PartB"))
        before = row.get("shipped_model")
        against = (f"{before['val_relative_mae']:.4f} ({-row['gain']:+.1%})" if before
                   else "-")
        lines.append(f"| {row['date']} | {row['run']} | {row['started_from']} | "
                     f"{row['cpu_hours']:.2f} ({row['cumulative_cpu_hours']:.2f}) | "
                     f"{row['candidate']['val_relative_mae']:.4f} | {against} | {maes} | "
                     f"{'yes' if row['shipped'] else 'no'} |")
    return "\n".join(lines) + "\n"


def ship(run: Path, row: dict[str, Any]) -> None:
    """The run's ``best.pt`` as the package's ``crowd_lite0.safetensors`` (float16), counting
    at the candidate's scale and threshold."""
    from maskfocal.checkpoint import load_checkpoint, save_weights

    state = load_checkpoint(run / "best.pt")
    state["config"]["decode"]["input_scale"] = row["candidate"]["scale"]
    state["config"]["decode"]["threshold"] = row["candidate"]["threshold"]
    state["config"]["data"]["hard_negatives"] = "runs/hard_negatives.json"  # the recipe's name
    previous = load_checkpoint(WEIGHTS)["metadata"]
    provenance = {key: value for key, value in previous.items()
                  if key in ("model", "backbone_weights", "data")}
    provenance["training"] = (
        f"configs/crowd_lite0_cpu.yaml (1 CPU hour), then continued one run a session "
        f"(configs/crowd_lite0_continue.yaml): {row['cumulative_cpu_hours']:.2f} CPU hours in "
        "all; lineage in experiments/results/crowd_lite0/lineage.md")
    provenance["input_scale"] = (f"{row['candidate']['scale']} with threshold "
                                 f"{row['candidate']['threshold']}, chosen on the 110 validation "
                                 "images by the mean relative MAE (experiments/calibrate_scale.py)")
    save_weights(WEIGHTS, state, half=True, provenance=provenance)


def may_ship(candidate: dict[str, Any], shipped: dict[str, Any], rows: list[dict],
             session: str) -> bool:
    """Whether a run's scores replace the shipped model: a lower mean relative MAE on the same
    validation images, and nothing shipped yet in that session (a row's ``session``, its date
    where it has none: two sessions may share a day)."""
    return (candidate["val_relative_mae"] < shipped["val_relative_mae"]
            and not any(row.get("session", row["date"]) == session and row["shipped"]
                        for row in rows))


def default_verdict(model: dict[str, Any], default: dict[str, Any],
                    worse: float = 0.10) -> tuple[bool, str]:
    """docs/MODEL.md's rule for the default: ``model`` replaces ``default`` when its mean
    relative MAE over the validation sources is lower and no source's MAE is more than
    ``worse`` above the default's. (whether it does, why)."""
    lower = model["val_relative_mae"] < default["val_relative_mae"]
    behind = {source: (mae, default["per_source"][source])
              for source, mae in model["per_source"].items()
              if mae > (1 + worse) * default["per_source"][source]}
    why = (f"mean relative MAE {model['val_relative_mae']:.4f} against "
           f"{default['val_relative_mae']:.4f}")
    if behind:
        why += "; more than 10 % worse on " + ", ".join(
            f"{source} ({mae:.2f} against {was:.2f})" for source, (mae, was) in behind.items())
    return lower and not behind, why


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="the session's run folder")
    parser.add_argument("--candidate", type=Path, required=True,
                        help="calibrate_scale's JSON of the run's best.pt")
    parser.add_argument("--shipped", type=Path, required=True,
                        help="calibrate_scale's JSON of the shipped crowd-lite0, same scales")
    parser.add_argument("--ship", action="store_true",
                        help="replace the shipped weights when the run wins")
    parser.add_argument("--session", help="this session's label (default: today's date); "
                        "the weights are replaced at most once per label")
    parser.add_argument("--default", type=Path,
                        help="calibrate_scale's JSON of the default model (crowd-r18) on the "
                             "same images: say whether the run would replace it as default")
    args = parser.parse_args()

    rows = json.loads(LINEAGE.read_text()) if LINEAGE.is_file() else []
    candidate, shipped = chosen(args.candidate), chosen(args.shipped)
    row = run_row(args.run, candidate, shipped, rows)
    row["session"] = args.session or row["date"]
    wins = candidate["val_relative_mae"] < shipped["val_relative_mae"]
    if args.ship and may_ship(candidate, shipped, rows, row["session"]):
        ship(args.run, row)
        row["shipped"] = True
        row["weights_sha256"] = hashlib.sha256(WEIGHTS.read_bytes()).hexdigest()
    rows.append(row)
    LINEAGE.write_text(json.dumps(rows, indent=1) + "\n")
    (RESULTS / "lineage.md").write_text(table(rows))
    print(table(rows))
    verdict = ("shipped" if row["shipped"] else
               "wins, not shipped (--ship, or shipped already this session)" if wins else
               "does not beat the shipped model: recorded, weights dropped")
    if args.default:
        replaces, why = default_verdict(candidate, chosen(args.default))
        print(f"the default rule: {'replaces' if replaces else 'does not replace'} the "
              f"default ({why})")
    print(f"{args.run.name}: balanced validation {candidate['val_relative_mae']:.4f} against "
          f"the shipped model's {shipped['val_relative_mae']:.4f} ({-row['gain']:+.1%}): "
          f"{verdict}")


if __name__ == "__main__":
    main()
