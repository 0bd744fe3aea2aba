"""The release model, trained on the lent GPU (the ``device`` machine) in two prepared calls.

The device tool carries at most 64 MiB with the working tree, and ShanghaiTech B train (60 MB)
and SCUT-HEAD B train (46 MB) do not fit together; a warm machine keeps what the first call
left, so the data arrive in two calls:

1. ``--stage shb`` (ShanghaiTech B train under ``--data``): two runs side by side at the same
   wall-clock budget, from scratch and from synthetic pre-training (``--pretrain-minutes`` of
   the budget, scenes drawn inside it, no validation: its last weights go on), validation
   carved from train (10 %, seed 0). The one
   with the lower validation MAE is kept in ``--keep`` for stage 2, and its weights come back
   too (in case the machine is gone before stage 2).
2. ``--stage mix`` (SCUT-HEAD B train under ``--data``): fine-tunes the kept model on
   ShanghaiTech B train + SCUT-HEAD B train (``data.extra_train``), validation carved from
   each (10 %), and brings back the release weights.

Both stages use the GPU profile: images kept and augmented on the GPU
(``data.augment_on_device``), bf16 autocast, channels_last, 384 px crops, batch 32. Test
splits never travel: the model card's test figures are measured on the project's machine.

``--out`` gets at most 8 files of at most 16 MiB (what the device tool brings back):
``summary.json`` (per run: command, epochs, images, images/s, best validation MAE/RMSE,
minutes), ``metrics.json`` (every run's ``metrics.csv`` rows) and the weights as safetensors
(fp16, and fp32 in stage 2 to check what fp16 costs) cut in parts of at most 15 MB
(``NAME.safetensors.partN``: ``cat`` them back together). Run from the repository root::

    PYTHONPATH=src python3 -m experiments.gpu_release --stage shb --data DIR --out OUT
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from experiments.gpu_shb import read_run

PART_BYTES = 15_000_000  # the device tool brings back files of at most 16 MiB
GPU_PROFILE = ["pretrain.fraction=null",  # this script runs its own stages
               "data.input_size=384", "data.batch_size=32", "train.lr=0.004",
               "train.warmup_steps=50", "train.amp=true", "train.channels_last=true",
               "data.augment_on_device=true", "data.workers=0", "data.cache_images=true"]
SHB = "ShanghaiTech/part_B"
SCUT = "SCUT-HEAD-PartB"


def command(out: Path, overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "maskfocal", "train", "--config", "configs/shb_cpu.yaml",
            "--out", str(out), "--quiet", "--overwrite", *GPU_PROFILE, *overrides]


def shb(root: Path) -> list[str]:
    return ["data.format=shanghaitech", f"data.root={root / SHB}", "data.val_split=null",
            "data.val_fraction=0.1", "data.test_split=null"]


def launch(steps: list[list[str]], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """The steps of one run, one after the other, in a shell of its own."""
    script = " && ".join(" ".join(f"'{part}'" for part in step) for step in steps)
    return subprocess.Popen(["bash", "-c", script], stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True, env=env)


def export(checkpoint: Path, results: Path, name: str, *, half: bool) -> None:
    """``checkpoint``'s weights as safetensors (``save_weights``: config and threshold in the
    metadata), cut in parts that the device tool brings back."""
    from maskfocal.checkpoint import load_checkpoint, save_weights

    target = results.parent / f".{name}.safetensors"
    save_weights(target, load_checkpoint(checkpoint), half=half)
    data = target.read_bytes()
    target.unlink()
    for part, start in enumerate(range(0, len(data), PART_BYTES)):
        (results / f"{name}.safetensors.part{part}").write_bytes(data[start:start + PART_BYTES])


def run_all(runs: dict[str, tuple[list[list[str]], Path]], work: Path,
            deadlines: dict[str, float], threads: int) -> dict[str, object]:
    """Every run at once; each is stopped at its own deadline (its steps' budgets plus a
    start-up and test allowance per step, so a run of two steps is not cut short)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(threads)}
    processes = {name: launch(steps, work / f"{name}.log", env)
                 for name, (steps, _) in runs.items()}
    statuses: dict[str, object] = {}
    for name, process in processes.items():
        try:
            statuses[name] = process.wait(timeout=max(1.0, deadlines[name] - time.time()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()
            statuses[name] = "stopped at the deadline"
    for name, status in statuses.items():
        if status != 0:
            log = (work / f"{name}.log").read_text(errors="replace")
            print(f"--- {name} ({status}) ---\n{log[-3000:]}", file=sys.stderr)
    return statuses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", choices=("shb", "mix"), required=True)
    parser.add_argument("--data", required=True, type=Path,
                        help=f"folder holding {SHB} (stage shb) or {SCUT} (stage mix)")
    parser.add_argument("--out", required=True, type=Path, help="folder for what comes back")
    parser.add_argument("--keep", type=Path, default=Path("/root/maskfocal-release"),
                        help="where stage 1 leaves data and weights for stage 2")
    parser.add_argument("--minutes", type=float, default=4.0, help="budget of each run")
    parser.add_argument("--pretrain-minutes", type=float, default=1.5,
                        help="stage shb: the synthetic share of the budget")
    parser.add_argument("--synthetic-images", type=int, default=100,
                        help="synthetic scenes drawn (inside the budget)")
    parser.add_argument("--extra", nargs="*", default=[], help="more key=value overrides")
    args = parser.parse_args()
    started = time.time()
    allowance = 90.0  # seconds per step: start-up, data, the final validation and test pass
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.keep / "runs"
    work.mkdir(parents=True, exist_ok=True)
    data = args.keep / "data"
    name = SHB if args.stage == "shb" else SCUT
    shutil.copytree(args.data / name, data / name, dirs_exist_ok=True)
    summary: dict[str, object] = {"stage": args.stage, "minutes": args.minutes, "runs": {}}
    if args.stage == "shb":
        synthetic = ["data.format=synthetic", "data.synthetic.cache=false",
                     f"data.synthetic.train_images={args.synthetic_images}",
                     "data.synthetic.val_images=0", "data.synthetic.test_images=0",
                     "data.val_split=val", "data.test_split=null"]
        runs = {
            "scratch": ([command(work / "scratch", [*shb(data), f"train.max_minutes="
                                                    f"{args.minutes}", *args.extra])],
                        work / "scratch"),
            "synthetic-then": ([
                command(work / "pretrain", [*synthetic, "train.max_minutes="
                                            f"{args.pretrain_minutes}", *args.extra]),
                command(work / "synthetic-then", [
                    *shb(data), f"model.init_from={work / 'pretrain' / 'best.pt'}",
                    f"train.max_minutes={args.minutes - args.pretrain_minutes}",
                    *args.extra])], work / "synthetic-then"),
        }
        deadlines = {"scratch": started + 60 * args.minutes + allowance,
                     "synthetic-then": started + 60 * args.minutes + 2 * allowance}
        statuses = run_all(runs, work, deadlines, threads=1)
    else:
        start = args.keep / "stage1.pt"
        if not (start.is_file() and (data / SHB).is_dir()):
            print(f"stage 1 left nothing in {args.keep} (a fresh machine?)", file=sys.stderr)
            return 3
        runs = {"release": ([command(work / "release", [
            *shb(data), f"data.extra_train=[voc:{data / SCUT}]", f"model.init_from={start}",
            f"train.max_minutes={args.minutes}", *args.extra])], work / "release")}
        statuses = run_all(runs, work, {"release": started + 60 * args.minutes + allowance},
                           threads=2)
    for run, (steps, folder) in runs.items():
        summary["runs"][run] = {"status": statuses[run],
                                "commands": [" ".join(step[3:]) for step in steps],
                                **read_run(folder)}
    if args.stage == "shb":
        summary["runs"]["synthetic-then"]["pretraining"] = read_run(work / "pretrain")
    finished = {run: r for run, r in summary["runs"].items() if r.get("best_val_mae") is not None}
    if finished:
        best = min(finished, key=lambda run: finished[run]["best_val_mae"])
        summary["kept"] = best
        checkpoint = work / best / "best.pt"
        if args.stage == "shb":
            shutil.copyfile(checkpoint, args.keep / "stage1.pt")
            export(checkpoint, args.out, f"stage1-{best}-fp16", half=True)
        else:
            export(checkpoint, args.out, "release-fp16", half=True)
            export(checkpoint, args.out, "release-fp32", half=False)
    metrics = {}
    for folder in sorted(p.parent for p in work.glob("*/metrics.csv")):
        with (folder / "metrics.csv").open() as file:
            metrics[folder.name] = list(csv.DictReader(file))
    (args.out / "metrics.json").write_text(json.dumps(metrics))
    summary["wall_minutes"] = round((time.time() - started) / 60, 2)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    return 0 if finished else 1


if __name__ == "__main__":
    raise SystemExit(main())
