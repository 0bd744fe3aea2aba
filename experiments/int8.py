"""Static int8 (ONNX Runtime) against the float ONNX export of a model, and eager PyTorch beside
them: each validation source's MAE at the model's own threshold, and images/s through the
counter, same process.

    python -m experiments.int8 --checkpoint crowd-r18 --threads 2

Calibration (:func:`maskfocal.export.quantize_int8`): ``--calibration`` photos of the model's
own training split (drawn with seed 0), each scaled by the model's input scale as counting
scales it and cut to one ``--crop`` square at a random place, so the activation ranges are
those of the photos the model counts. Validation: the 110 photos the recipe holds out of
ShanghaiTech A, B and SCUT-HEAD B, counted as ``count`` counts them (the model's scale,
threshold and size cap) with each file. The issue's rule: int8 becomes the default only if
every source's validation MAE moves by at most 2 % and it counts at least 1.5x as fast;
otherwise the figures are reported and float stays. Writes ``--out`` (JSON) and prints a
table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

RULE_MAE = 0.02
RULE_SPEED = 1.5


def calibration_batches(predictor, train, count: int, crop: int, seed: int = 0):
    """(1, 3, crop, crop) float32 crops of ``count`` training photos at the model's scale."""
    import torch

    from maskfocal.data.transforms import to_tensor

    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(train), size=min(count, len(train)), replace=False)
    scale = predictor.options.input_scale
    for index in chosen:
        pixels = train[int(index)].load_image()
        image = to_tensor(pixels)[None]
        if scale != 1.0:
            image = torch.nn.functional.interpolate(image, scale_factor=scale,
                                                    mode="bilinear", align_corners=False)
        height, width = image.shape[-2:]
        top = int(rng.integers(0, max(height - crop, 0) + 1))
        left = int(rng.integers(0, max(width - crop, 0) + 1))
        window = torch.zeros(1, 3, crop, crop)  # one shape for every calibrator (a smaller
        cut = image[..., top:top + crop, left:left + crop]  # photo padded, as counting pads)
        window[..., :cut.shape[-2], :cut.shape[-1]] = cut
        yield window.numpy()


def speed(counter, images, repeats: int) -> float:
    counter(images[0])
    started = time.perf_counter()
    for _ in range(repeats):
        for image in images:
            counter(image)
    return repeats * len(images) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="crowd-r18")
    parser.add_argument("--calibration", type=int, default=32)
    parser.add_argument("--crop", type=int, default=512)
    parser.add_argument("--method", default="minmax", choices=["minmax", "percentile",
                                                               "entropy"],
                        help="ONNX Runtime's calibration method")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", default="1024x768", help="of the speed photos")
    parser.add_argument("--limit", type=int, help="every n-th validation photo (a smoke run)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import torch

    from maskfocal import Counter
    from maskfocal.data.splits import build_splits, sources
    from maskfocal.data.synthetic import SyntheticConfig, generate_scene
    from maskfocal.export import quantize_int8
    from maskfocal.inference import Predictor, per_source
    from maskfocal.pretrained import checkpoint_or_shipped

    torch.set_num_threads(args.threads)
    path = checkpoint_or_shipped(args.checkpoint)
    exported = Predictor.from_checkpoint(path, device="cpu", backend="onnx")
    config = exported.config
    train, val, _ = build_splits(config.data, seed=config.train.seed)
    if args.limit:
        val = val[::max(1, len(val) // args.limit)]
    labels = sources(config.data, val)
    threshold = exported.threshold
    result = {"checkpoint": args.checkpoint, "threshold": threshold,
              "input_scale": exported.options.input_scale, "validation_images": len(val),
              "calibration_photos": args.calibration, "crop": args.crop,
              "method": args.method,
              "threads": args.threads, "date": time.strftime("%Y-%m-%d")}
    with tempfile.TemporaryDirectory() as scratch:
        int8_path = Path(scratch) / "int8.onnx"
        started = time.perf_counter()
        quantize_int8(exported.runner.path, int8_path,
                      calibration_batches(exported, train, args.calibration, args.crop),
                      method=args.method)
        result["quantize_seconds"] = round(time.perf_counter() - started, 1)
        result["sizes_mb"] = {"float": round(exported.runner.path.stat().st_size / 1e6, 1),
                              "int8": round(int8_path.stat().st_size / 1e6, 1)}
        predictors = {"torch": Predictor.from_checkpoint(path, device="cpu", backend="torch"),
                      "float": exported,
                      "int8": Predictor.from_checkpoint(int8_path, device="cpu")}
        scored = {}
        for name, predictor in predictors.items():
            started = time.perf_counter()
            found = predictor.candidates(val)
            scored[name] = per_source(found, threshold, labels)
            scored[name]["seconds"] = round(time.perf_counter() - started, 1)
            print(f"{name}: {scored[name]}", flush=True)
        width, height = (int(v) for v in args.size.split("x"))
        photos = [generate_scene(SyntheticConfig(width=width, height=height, max_count=400),
                                 seed=3, index=i).load_image() for i in range(3)]
        rates = {name: speed(Counter(predictor), photos, 2)
                 for name, predictor in predictors.items()}
    moves = {Path(source).name: (scored["int8"]["per_source"][source]["mae"] - row["mae"])
             / max(row["mae"], 1e-9)
             for source, row in scored["float"]["per_source"].items()}
    result.update(
        validation={name: {"per_source": {Path(k).name: v for k, v in s["per_source"].items()},
                           "val_relative_mae": s["val_relative_mae"], "seconds": s["seconds"]}
                    for name, s in scored.items()},
        mae_change=moves, images_per_second={k: round(v, 3) for k, v in rates.items()},
        speedup=round(rates["int8"] / rates["float"], 2), speed_size=args.size)
    result["holds"] = bool(all(abs(m) <= RULE_MAE for m in moves.values())
                           and result["speedup"] >= RULE_SPEED)
    print("| file | " + " | ".join(moves) + " | images/s |")
    print("|---|" + "---|" * (len(moves) + 1))
    for name in ("torch", "float", "int8"):
        maes = " | ".join(f"{result['validation'][name]['per_source'][k]['mae']:.2f}"
                          for k in moves)
        print(f"| {name} | {maes} | {rates[name]:.2f} |")
    print(f"int8: MAE change {', '.join(f'{k} {v:+.1%}' for k, v in moves.items())}; "
          f"{result['speedup']:.2f}x; the rule (every source within 2 %, >= 1.5x) "
          f"{'holds' if result['holds'] else 'does not hold: float stays'}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
