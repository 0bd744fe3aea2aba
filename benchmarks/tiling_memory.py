"""Peak memory of counting a huge image in tiles and whole, and tiled vs whole-image counts.

    .venv/bin/python benchmarks/tiling_memory.py                   # the shipped crowd-r18
    .venv/bin/python benchmarks/tiling_memory.py --checkpoint demo_out/run/best.pt

1. Peak resident memory (``ru_maxrss`` of a fresh process for each measurement) of counting an
   8000x6000 JPEG (a mosaic of synthetic scenes) in tiles (``--tile-above 2048``) and whole
   (the default: scaled down to the model's ``max_eval_side``), on each of ``--backends``,
   against the same process only loading the model and decoding the image: the difference is
   what counting costs. ``before``: the same, with issue 56's savings undone in the child
   (tiles four to a forward pass, the photo converted to float before it is shrunk,
   torchvision imported, the decoded photo copied whole through ``tobytes()``, a JPEG
   counted whole decoded at full size, ONNX Runtime's memory pattern on), so that
   before and after are measured by the same code on the same machine. Seconds include
   decoding the photo.
2. On images small enough to run both ways (synthetic scenes of 2048x1536), the tiled count
   against the whole-image count. Needs a trained checkpoint to mean anything; without
   ``--checkpoint`` a randomly initialised CenterNet-R18 is used (memory only).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def child(args: argparse.Namespace) -> None:
    """One measurement in this (fresh) process; prints a JSON line."""
    import torch

    from maskfocal import Counter

    torch.set_num_threads(args.threads)
    if args.before:
        import torchvision  # noqa: F401  (imported by every counting path before)

        import maskfocal.inference.predictor as predictor
        import maskfocal.structures as structures
        from maskfocal.data.transforms import fit_image, to_tensor

        grouped = predictor._same_padded_size
        predictor._same_padded_size = lambda sizes, batch: grouped(sizes, max(batch, 4))
        predictor.fit_pixels = lambda pixels, side, scale: fit_image(to_tensor(pixels), side,
                                                                     scale)
        structures._rows_to_array = np.asarray  # the photo as one tobytes() copy
        import maskfocal.inference.backend as backend

        backend.MEMORY_PATTERN = True
    counter = Counter.from_checkpoint(args.checkpoint, device="cpu", tile_size=args.tile_size,
                                      tile_above=None if args.mode == "whole" else 2048,
                                      backend=args.backend)
    start = time.perf_counter()
    count = None
    if args.mode == "load":  # the photo decoded whole, nothing counted
        counter.read_image(args.image)
    elif args.before:  # decoded whole, then counted
        count = counter(counter.read_image(args.image)).count
    else:  # as `count` does: the file's path (a JPEG counted whole is read smaller)
        count = counter(args.image).count
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"mode": args.mode, "backend": counter.predictor.backend, "count": count,
                      "seconds": round(seconds, 2), "peak_mb": round(peak_mb, 1)}))


def measure(mode: str, image: Path, args: argparse.Namespace, backend: str = "auto",
            before: bool = False) -> dict:
    command = [sys.executable, __file__, "--child", mode, "--image", str(image),
               "--checkpoint", str(args.checkpoint), "--tile-size", str(args.tile_size),
               "--threads", str(args.threads), "--backend", backend,
               *(["--before"] if before else [])]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def mosaic(width: int, height: int, folder: Path) -> Path:
    """A JPEG of synthetic scenes side by side, ``width`` x ``height``."""
    from PIL import Image

    from maskfocal.data.synthetic import SyntheticConfig, generate_scene

    tile_w, tile_h = 2000, 1500
    canvas = Image.new("RGB", (width, height))
    config = SyntheticConfig(width=tile_w, height=tile_h, max_count=1500)
    index = 0
    for top in range(0, height, tile_h):
        for left in range(0, width, tile_w):
            scene = generate_scene(config, seed=11, index=index)
            canvas.paste(Image.fromarray(scene.load_image()), (left, top))
            index += 1
    path = folder / f"mosaic_{width}x{height}.jpg"
    canvas.save(path, quality=90)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="default: the shipped crowd-r18")
    parser.add_argument("--backends", nargs="+", default=["torch", "auto"])
    parser.add_argument("--skip-counts", action="store_true",
                        help="memory only: leave out the tiled vs whole counts")
    parser.add_argument("--out", type=Path,
                        default=Path("benchmarks/results/tiling_memory.json"))
    parser.add_argument("--size", default="8000x6000", help="the huge image, WIDTHxHEIGHT")
    parser.add_argument("--tile-size", type=int, default=1024)
    parser.add_argument("--scenes", type=int, default=6, help="scenes for the count check")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", choices=["load", "tiled", "whole"], help=argparse.SUPPRESS)
    parser.add_argument("--backend", default="auto", help=argparse.SUPPRESS)
    parser.add_argument("--before", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--image", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.mode = args.child
        child(args)
        return
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        if args.checkpoint is None:
            from maskfocal.pretrained import pretrained_path

            args.checkpoint = pretrained_path("crowd-r18")
        huge = mosaic(width, height, folder)
        rows = []
        for backend in args.backends:
            loads = {before: measure("load", huge, args, backend, before)
                     for before in (True, False)}
            for mode in ("tiled", "whole"):
                for before in (True, False):
                    found = measure(mode, huge, args, backend, before)
                    load = loads[before]
                    rows.append({**found, "before": before, "load_mb": load["peak_mb"]})
                    print(f"{width}x{height} {mode:5s} {found['backend']:5s} "
                          f"{'before' if before else 'now   '}: peak {found['peak_mb']:.0f} MB "
                          f"(model + decoded photo alone {load['peak_mb']:.0f} MB), "
                          f"{found['count']} heads in {found['seconds']:.1f} s", flush=True)
        args.out.write_text(json.dumps({"checkpoint": str(args.checkpoint), "size": args.size,
                                        "threads": args.threads, "date": time.strftime(
                                            "%Y-%m-%d"), "runs": rows}, indent=1) + "\n")
        if args.skip_counts:
            return

        from maskfocal import Counter
        from maskfocal.data.synthetic import SyntheticConfig, generate_scene

        config = SyntheticConfig(width=2048, height=1536, max_count=2500)
        whole = Counter.from_checkpoint(args.checkpoint, device="cpu", tile_above=None)
        tiles = Counter.from_checkpoint(args.checkpoint, device="cpu", tile_above=0,
                                        tile_size=args.tile_size)
        pairs = []
        for index in range(args.scenes):
            pixels = generate_scene(config, seed=23, index=index).load_image()
            pairs.append((whole(pixels).count, tiles(pixels).count))
        counts = np.array(pairs, dtype=float)
        total = (counts[:, 1].sum() - counts[:, 0].sum()) / max(1.0, counts[:, 0].sum()) * 100
        worst = np.max(np.abs(counts[:, 1] - counts[:, 0]) / np.maximum(1, counts[:, 0])) * 100
        print(f"2048x1536 scenes, whole vs tiled counts: {[tuple(map(int, p)) for p in pairs]}")
        print(f"tiled - whole: {total:+.2f} % of all heads; worst image {worst:.2f} %")
        small = measure("whole", mosaic(2000, 1500, folder), args)
        print(f"for scale: one 2000x1500 image whole peaks at {small['peak_mb']:.0f} MB")


if __name__ == "__main__":
    main()
