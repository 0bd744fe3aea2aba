"""Choose a model's test-time scale (``decode.input_scale``) and threshold on its validation
images, never on test.

    .venv/bin/python -m experiments.calibrate_scale --checkpoint W.safetensors \\
        --scales 1 1.25 1.5 1.75 [--write OUT.safetensors]
    .venv/bin/python -m experiments.calibrate_scale --checkpoint crowd-r18 \\
        --splits-config configs/crowd_lite0_cpu.yaml --scales 1.75   # another model, same val

The validation images are the ones the run held out: its config's ``data`` section rebuilt with
its seed (``build_splits``: the same carve, so the same images, when the data are where the
config says). For each scale, every validation image is decoded once and the threshold with the
lowest MAE is found (as training does). With one source the scale with the lowest MAE wins;
with several (``data.extra_train``) each source's MAE is also given, and the threshold and the
scale with the lowest mean relative error over sources win (each source's MAE over its mean
count, averaged: every source weighs the same, whatever its crowd sizes; the pooled MAE would
be ShanghaiTech A's alone). ``--keep-threshold`` scores at the checkpoint's own threshold.
``--splits-config`` takes the validation images from another config (to score a model on a
run's held-out images it never saw). ``--write`` saves the weights with that scale and
threshold in their config (``.safetensors``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a file, or a shipped model's name")
    parser.add_argument("--splits-config", type=Path,
                        help="validation images of this config (default: the checkpoint's)")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 1.25, 1.5, 1.75])
    parser.add_argument("--write", type=Path, help="weights with the chosen scale (.safetensors)")
    parser.add_argument("--half", action="store_true", help="--write float16 weights")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep-threshold", action="store_true",
                        help="score at the checkpoint's own threshold (no calibration)")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/input_scale.json"))
    args = parser.parse_args()

    import torch

    from maskfocal.checkpoint import load_checkpoint, save_weights
    from maskfocal.config import load_config
    from maskfocal.data.splits import build_splits, sources
    from maskfocal.inference import (
        Predictor,
        balanced_threshold,
        calibrate_threshold,
        per_source,
        score,
    )
    from maskfocal.pretrained import MODELS, pretrained_path

    torch.set_num_threads(args.threads)
    checkpoint = (pretrained_path(args.checkpoint) if args.checkpoint in MODELS
                  else args.checkpoint)
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    config = predictor.config
    data = load_config(args.splits_config).data if args.splits_config else config.data
    _, val, _ = build_splits(data, seed=config.train.seed)
    labels = sources(data, val)
    print(f"{len(val)} validation images")
    rows = []
    for scale in args.scales:
        started = time.perf_counter()
        predictions = predictor.at_scale(scale).candidates(val)
        if args.keep_threshold:
            threshold = predictor.threshold
        elif len(set(labels)) > 1:
            threshold = balanced_threshold(predictions, labels)[0]
        else:
            threshold = calibrate_threshold(predictions)[0]
        metrics = score(predictions, threshold)
        rows.append({"scale": scale, "threshold": threshold, "val_mae": metrics["mae"],
                     "val_rmse": metrics["rmse"], "f1_sigma8": metrics["f1_sigma8"],
                     **per_source(predictions, threshold, labels),
                     "seconds": round(time.perf_counter() - started, 1)})
        print(json.dumps(rows[-1]))
    key = "val_relative_mae" if len(set(labels)) > 1 else "val_mae"
    best = min(rows, key=lambda row: row[key])
    result = {"checkpoint": str(args.checkpoint), "validation_images": len(val),
              "scales": rows, "chosen": best}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"chosen: scale {best['scale']} threshold {best['threshold']:.2f} "
          f"(val MAE {best['val_mae']:.2f})")
    if args.write:
        state = load_checkpoint(args.checkpoint)
        state["config"]["decode"]["input_scale"] = best["scale"]
        state["config"]["decode"]["threshold"] = best["threshold"]
        provenance = {k: v for k, v in state.get("metadata", {}).items()
                      if k not in ("format", "maskfocal_version", "config", "threshold")}
        provenance["input_scale"] = (f"{best['scale']} chosen on the {len(val)} validation "
                                     "images (experiments/calibrate_scale.py)")
        save_weights(args.write, state, half=args.half, provenance=provenance)


if __name__ == "__main__":
    main()
