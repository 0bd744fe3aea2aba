"""Choose a model's test-time scale (``decode.input_scale``) and threshold on its validation
images, never on test.

    .venv/bin/python benchmarks/calibrate_scale.py --checkpoint W.safetensors \\
        --scales 1 1.25 1.5 1.75 [--write OUT.safetensors]

The validation images are the ones the run held out: its config's ``data`` section rebuilt with
its seed (``build_splits``: the same carve, so the same images, when the data are where the
config says). For each scale, every validation image is decoded once and the threshold with the
lowest MAE is found (as training does); the scale with the lowest MAE wins. ``--write`` saves
the weights with that scale and threshold in their config (``.safetensors``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 1.25, 1.5, 1.75])
    parser.add_argument("--write", type=Path, help="weights with the chosen scale (.safetensors)")
    parser.add_argument("--half", action="store_true", help="--write float16 weights")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/input_scale.json"))
    args = parser.parse_args()

    import torch

    from maskfocal.data.splits import build_splits
    from maskfocal.engine.checkpoint import load_checkpoint, save_weights
    from maskfocal.engine.evaluate import calibrate_threshold, predict, score
    from maskfocal.inference import Counter

    torch.set_num_threads(2)
    counter = Counter.from_checkpoint(args.checkpoint, device="cpu")
    config = counter.config
    _, val, _ = build_splits(config.data, seed=config.train.seed)
    print(f"{len(val)} validation images")
    rows = []
    for scale in args.scales:
        started = time.perf_counter()
        predictions = predict(counter.family, counter.model, val, device=counter.device,
                              max_side=config.data.max_eval_side, scale=scale)
        threshold = calibrate_threshold(predictions)[0]
        metrics = score(predictions, threshold)
        rows.append({"scale": scale, "threshold": threshold, "val_mae": metrics["mae"],
                     "val_rmse": metrics["rmse"], "f1_sigma8": metrics["f1_sigma8"],
                     "seconds": round(time.perf_counter() - started, 1)})
        print(json.dumps(rows[-1]))
    best = min(rows, key=lambda row: row["val_mae"])
    result = {"checkpoint": str(args.checkpoint), "validation_images": len(val),
              "scales": rows, "chosen": best}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"chosen: scale {best['scale']} threshold {best['threshold']:.2f} "
          f"(val MAE {best['val_mae']:.2f})")
    if args.write:
        state = load_checkpoint(args.checkpoint)
        state["config"]["decode"]["input_scale"] = best["scale"]
        state["config"]["decode"]["threshold"] = state["threshold"] = best["threshold"]
        provenance = {k: v for k, v in state.get("metadata", {}).items()
                      if k not in ("format", "maskfocal_version", "config", "threshold")}
        provenance["input_scale"] = (f"{best['scale']} chosen on the {len(val)} validation "
                                     "images (benchmarks/calibrate_scale.py)")
        save_weights(args.write, state, half=args.half, provenance=provenance)


if __name__ == "__main__":
    main()
