"""Images/s of each backend (eager PyTorch, ONNX Runtime float, ONNX Runtime int8) through the
user's path, at three photo sizes, same process; and what the first use of ONNX costs.

    .venv/bin/python benchmarks/onnx_speed.py                      # both shipped models
    .venv/bin/python benchmarks/onnx_speed.py --models crowd-lite0 --int8
    .venv/bin/python benchmarks/onnx_speed.py --checkpoint runs/shb/best.pt

Every backend goes through :class:`maskfocal.Counter` with ``count``'s defaults (the model's
input scale and size cap, decoding included: the same Python code for all), on the same
synthetic crowd photos of each ``--sizes``, after a warm-up call; torch's and ONNX Runtime's
counts must agree. Ratios are to eager PyTorch in the same run (absolute figures on a shared
machine are noise). ``--int8`` adds ONNX Runtime static int8, calibrated here on the speed
photos (a speed figure only: experiments/int8.py measures its accuracy). The first use: the
export into an empty cache plus the session (``first use``), a later load from the cache
(``cached load``) and eager PyTorch's load, each timed once; and the ONNX file's size, which
the wheel would carry if it shipped the exports instead. Writes ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch


def rate(counter, images, repeats: int) -> tuple[float, list[int]]:
    counter(images[0])
    start = time.perf_counter()
    counts = []
    for _ in range(repeats):
        counts = [counter(image).count for image in images]
    return repeats * len(images) / (time.perf_counter() - start), counts


def timed(path: Path, backend: str):
    """(counter, seconds to load it) of ``path`` on ``backend``."""
    from maskfocal import Counter

    started = time.perf_counter()
    counter = Counter.from_checkpoint(path, device="cpu", backend=backend)
    return counter, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["crowd-r18", "crowd-lite0"],
                        help="shipped model names or checkpoint files")
    parser.add_argument("--checkpoint", help="one checkpoint instead of --models")
    parser.add_argument("--sizes", nargs="+", default=["640x480", "1024x768", "1920x1080"])
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--int8", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/onnx_speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from maskfocal import Counter
    from maskfocal.data.synthetic import SyntheticConfig, generate_scene
    from maskfocal.export import quantize_int8
    from maskfocal.pretrained import checkpoint_or_shipped

    photos = {size: [generate_scene(SyntheticConfig(width=int(size.split("x")[0]),
                                                    height=int(size.split("x")[1]),
                                                    max_count=400), seed=3, index=i)
                     .load_image() for i in range(args.images)] for size in args.sizes}
    report = {"threads": args.threads, "images": args.images, "repeats": args.repeats,
              "date": time.strftime("%Y-%m-%d"), "models": {}}
    for model in [args.checkpoint] if args.checkpoint else args.models:
        path = checkpoint_or_shipped(model)
        with tempfile.TemporaryDirectory() as cache:
            os.environ["MASKFOCAL_CACHE"] = cache
            eager, eager_load = timed(path, "torch")
            exported, first_use = timed(path, "onnx")  # the export, into an empty cache
            _, cached_load = timed(path, "onnx")
            onnx_file = exported.predictor.runner.path
            counters = {"torch": eager, "onnx": exported}
            if args.int8:
                int8_file = Path(cache) / "int8.onnx"
                scale = exported.options.input_scale
                quantize_int8(onnx_file, int8_file, (
                    torch.nn.functional.interpolate(
                        torch.from_numpy(p).permute(2, 0, 1)[None].float() / 255,
                        scale_factor=scale)[..., :512, :512].numpy()
                    for ps in photos.values() for p in ps))
                counters["int8"] = Counter.from_checkpoint(int8_file, device="cpu")
            entry = {"file_mb": round(onnx_file.stat().st_size / 1e6, 1),
                     "weights_mb": round(path.stat().st_size / 1e6, 1),
                     "first_use_s": round(first_use, 1), "cached_load_s": round(cached_load, 2),
                     "eager_load_s": round(eager_load, 2), "sizes": {}}
            for size, images in photos.items():
                found = {name: rate(counter, images, args.repeats)
                         for name, counter in counters.items()}
                entry["sizes"][size] = {
                    **{f"{name}_images_per_s": round(r, 3) for name, (r, _) in found.items()},
                    **{f"{name}_ratio": round(r / found["torch"][0], 2)
                       for name, (r, _) in found.items() if name != "torch"},
                    "counts_equal": found["onnx"][1] == found["torch"][1],
                    "counts": {name: c for name, (_, c) in found.items()}}
            report["models"][str(model)] = entry
        print(f"{model}: first use {first_use:.1f} s (export + session), cached load "
              f"{cached_load:.2f} s, eager load {eager_load:.2f} s; ONNX file "
              f"{entry['file_mb']} MB (weights {entry['weights_mb']} MB)")
        names = list(counters)
        print("| size | " + " | ".join(f"{n} images/s" for n in names) + " | counts equal |")
        print("|---|" + "---|" * (len(names) + 1))
        for size, row in entry["sizes"].items():
            cells = [f"{row['torch_images_per_s']:.2f}"] + [
                f"{row[f'{n}_images_per_s']:.2f} ({row[f'{n}_ratio']:.2f}x)" for n in names[1:]]
            print(f"| {size} | " + " | ".join(cells) + f" | {row['counts_equal']} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    assert all(row["counts_equal"] for entry in report["models"].values()
               for row in entry["sizes"].values()), "ONNX Runtime's counts differ from torch's"


if __name__ == "__main__":
    main()
