"""ShanghaiTech B on a GPU, in one prepared call (the ``device`` machine; issue "Train well on two
CPU cores").

Two things at once, as parallel processes on one GPU:

- **The CPU recipes, simulated**: each candidate recipe trains for as many images as it would
  see in 55 minutes on the project's 2-core CPU (its CPU images/s, measured there by
  ``benchmarks/train_speed.py``, times 55 x 60 s), in float32 like the CPU, so their
  validation errors can be compared at the CPU budget before spending CPU hours. Chosen on
  validation (carved from train, 10 %); the test split is not on the device.
- **The GPU profile**: synthetic pre-training, then ShanghaiTech B with bf16 autocast,
  channels_last, a larger batch, pinned memory and persistent workers, each stage under a
  wall-clock budget (``train.max_minutes``).

Runs live under ``--work``; ``--out`` gets at most 8 files of at most 16 MiB (what the device
tool brings back): ``summary.json`` (per run: commands, planned and reached epochs, images,
images/s, best validation MAE/RMSE, minutes, exit status), ``metrics.json`` (every run's
``metrics.csv`` rows) and the GPU run's best weights as fp16 safetensors cut in parts of at
most 15 MB (``gpu-profile.safetensors.partN``; ``cat`` them back together; the config and
threshold are in the metadata). Run from the repository root::

    PYTHONPATH=src python3 -m experiments.gpu_shb --data-root DIR --out OUT

Seen on the lent H200 (2026-11-26): the machine exposes 2 CPU cores, so data loading bounds
every run (60-80 images/s each); cache decoded images and keep the process count low.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PART_BYTES = 15_000_000  # the device tool brings back files of at most 16 MiB
CPU_MINUTES = 55  # of the 60: the rest is validation and the test pass
SHB_TRAIN_IMAGES = 360  # 400 less the 10 % carved for validation
SIMULATED = {
    # name: (CPU images/s measured on the 2-core machine, overrides)
    "old-384": (2.57, ["--config", "configs/centernet_r18_shb.yaml"]),
    "r18-256-lr2e-3": (6.9, ["data.input_size=256", "train.channels_last=true",
                             "train.lr=0.002"]),
    "r18n64-256-lr2e-3": (8.7, ["data.input_size=256", "train.channels_last=true",
                                "train.lr=0.002", "model.neck_channels=64",
                                "model.head_channels=32"]),
    "r18-256-bs16-lr3e-3": (6.9, ["data.input_size=256", "train.channels_last=true",
                                  "train.lr=0.003", "data.batch_size=16"]),
}
SYNTHETIC_SHARE = 0.25  # of the simulated budget spent on synthetic pre-training
SYNTHETIC = ["data.format=synthetic",
             "data.synthetic.val_images=40", "data.synthetic.test_images=0",
             "data.synthetic.cache=true", "data.val_split=val", "data.test_split=null"]


def shb(root: str) -> list[str]:
    return ["data.format=shanghaitech", f"data.root={root}", "data.val_split=null",
            "data.val_fraction=0.1", "data.test_split=null", "data.cache_images=true"]


def command(out: Path, overrides: list[str]) -> list[str]:
    config = ["--config", "configs/base.yaml"]
    if overrides[:1] == ["--config"]:
        config, overrides = overrides[:2], overrides[2:]
    return [sys.executable, "-m", "maskfocal", "train", *config, "--out", str(out), "--quiet",
            "model.name=centernet", "model.backbone=resnet18", *overrides]


def launch(name: str, steps: list[list[str]], folder: Path, log: Path) -> subprocess.Popen:
    """The steps of one run, one after the other, in a shell of its own."""
    script = " && ".join(" ".join(f"'{part}'" for part in step) for step in steps)
    return subprocess.Popen(["bash", "-c", script], stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def read_run(folder: Path) -> dict:
    metrics = folder / "metrics.csv"
    if not metrics.is_file():
        return {}
    with metrics.open() as file:
        rows = list(csv.DictReader(file))
    validated = [r for r in rows if r.get("val_mae")]
    best = min(validated, key=lambda r: float(r["val_mae"])) if validated else {}
    seconds = sum(float(r["seconds"]) for r in rows)
    images = sum(float(r["seconds"]) * float(r["images_per_second"]) for r in rows)
    return {"epochs": len(rows), "images": round(images),
            "images_per_second": round(images / max(seconds, 1e-9), 1),
            "best_val_mae": float(best["val_mae"]) if best else None,
            "best_val_rmse": float(best["val_rmse"]) if best else None,
            "best_epoch": int(best["epoch"]) + 1 if best else None,
            "minutes": float(rows[-1].get("minutes") or 0) if rows else None}


def to_safetensors(checkpoint: Path, target: Path) -> None:
    import torch
    from safetensors.torch import save_file

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    weights = {k: v.half().contiguous() if v.is_floating_point() else v.contiguous()
               for k, v in state["model"].items()}
    save_file(weights, str(target), metadata={"config": json.dumps(state["config"]),
                                              "threshold": repr(float(state["threshold"]))})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True, help="ShanghaiTech part_B (train_data)")
    parser.add_argument("--out", required=True, help="folder for the results")
    parser.add_argument("--work", default="/tmp/gpu_shb_runs", help="folder for the runs")
    parser.add_argument("--gpu-minutes", type=float, default=4.0,
                        help="wall-clock budget of the GPU run's ShanghaiTech stage")
    parser.add_argument("--pretrain-minutes", type=float, default=1.5,
                        help="wall-clock budget of the GPU run's synthetic stage")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply the simulated budgets (0.01 for a smoke test)")
    parser.add_argument("--only", nargs="*", help="run only these names")
    parser.add_argument("--deadline-minutes", type=float, default=7.5,
                        help="stop every run still going after this long (its epochs so far "
                             "are reported, flagged as short of the budget)")
    parser.add_argument("--synthetic-images", type=int, default=400,
                        help="cached synthetic scenes of the simulated pre-training")
    args = parser.parse_args()
    results = Path(args.out)
    results.mkdir(parents=True, exist_ok=True)
    out = Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    runs, processes = {}, {}
    planned = {}
    for name, (rate, overrides) in SIMULATED.items():
        epochs = planned[name] = max(1, round(rate * CPU_MINUTES * 60 * args.scale
                                              / SHB_TRAIN_IMAGES))
        runs[name] = ([command(out / name, [*overrides, *shb(args.data_root), "train.amp=false",
                                            f"train.epochs={epochs}", "data.workers=2"])],
                      out / name)
    epochs = max(1, round(6.9 * CPU_MINUTES * 60 * args.scale / SHB_TRAIN_IMAGES))
    synthetic_epochs = max(1, round(epochs * SYNTHETIC_SHARE * SHB_TRAIN_IMAGES
                                    / args.synthetic_images))
    planned["synthetic-then-r18-256-lr2e-3"] = max(1, round(epochs * (1 - SYNTHETIC_SHARE)))
    common = ["data.input_size=256", "train.channels_last=true", "train.lr=0.002",
              "train.amp=false", "data.workers=2"]
    runs["synthetic-then-r18-256-lr2e-3"] = ([
        command(out / "pretrain-sim", [*common, *SYNTHETIC, "data.synthetic.width=640",
                                       "data.synthetic.height=480", "data.synthetic.cache=true",
                                       f"data.synthetic.train_images={args.synthetic_images}",
                                       f"train.epochs={synthetic_epochs}"]),
        command(out / "synthetic-then-r18-256-lr2e-3",
                [*common, *shb(args.data_root), f"model.init_from={out}/pretrain-sim/best.pt",
                 f"train.epochs={max(1, round(epochs * (1 - SYNTHETIC_SHARE)))}"])],
        out / "synthetic-then-r18-256-lr2e-3")
    gpu = ["data.input_size=384", "train.channels_last=true", "train.amp=true",
           "data.batch_size=32", "train.lr=0.004", "data.workers=4", "train.warmup_steps=50"]
    runs["gpu-profile"] = ([
        command(out / "pretrain-gpu", [*gpu, *SYNTHETIC, "data.synthetic.cache=false",
                                       f"data.synthetic.train_images={args.synthetic_images}",
                                       f"train.max_minutes={args.pretrain_minutes * args.scale}"]),
        command(out / "gpu-profile", [*gpu, *shb(args.data_root),
                                      f"model.init_from={out}/pretrain-gpu/best.pt",
                                      f"train.max_minutes={args.gpu_minutes * args.scale}"])],
        out / "gpu-profile")
    started = time.perf_counter()
    for name, (steps, folder) in runs.items():
        if args.only and name not in args.only:
            continue
        processes[name] = launch(name, steps, folder, out / f"{name}.log")
    deadline = started + 60 * args.deadline_minutes
    statuses = {}
    for name, process in processes.items():
        try:
            statuses[name] = process.wait(timeout=max(1.0, deadline - time.perf_counter()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the shell and the training it runs
            process.wait()
            statuses[name] = "stopped at the deadline"
    summary = {"wall_minutes": round((time.perf_counter() - started) / 60, 2), "runs": {}}
    for name, status in statuses.items():
        steps, folder = runs[name]
        summary["runs"][name] = {"status": status, "commands": [" ".join(s[3:]) for s in steps],
                                 "planned_epochs": planned.get(name), **read_run(folder)}
        if name == "gpu-profile" or name.startswith("synthetic"):
            summary["runs"][name]["pretraining"] = read_run(
                out / ("pretrain-gpu" if name == "gpu-profile" else "pretrain-sim"))
    finished = {n: r for n, r in summary["runs"].items()
                if r.get("best_val_mae") is not None and n != "gpu-profile"}
    if finished:
        summary["best_simulated"] = min(finished, key=lambda n: finished[n]["best_val_mae"])
    best = out / "gpu-profile" / "best.pt"
    if best.is_file():
        weights = out / "gpu-profile.safetensors"
        to_safetensors(best, weights)
        data = weights.read_bytes()
        for part, start in enumerate(range(0, len(data), PART_BYTES)):
            (results / f"{weights.name}.part{part}").write_bytes(data[start:start + PART_BYTES])
    metrics = {}
    for folder in sorted(p.parent for p in out.glob("*/metrics.csv")):
        with (folder / "metrics.csv").open() as file:
            metrics[folder.name] = list(csv.DictReader(file))
    (results / "metrics.json").write_text(json.dumps(metrics))
    (results / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
