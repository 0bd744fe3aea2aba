"""How fast the synthetic generator draws scenes, against a plain per-pixel-free baseline.

    .venv/bin/python benchmarks/synthetic_speed.py [--images 40] [--size 640x480]

Prints images/s and heads/s, and the ratio of drawing time to the time of only filling an
image with noise of the same size (the cheapest possible "generator"), measured in this run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from maskfocal.data.synthetic import SyntheticConfig, generate_scene


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    config = SyntheticConfig(width=width, height=height)

    start = time.perf_counter()
    heads = sum(generate_scene(config, args.seed, i).num_heads for i in range(args.images))
    elapsed = time.perf_counter() - start

    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(args.images):
        rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    baseline = time.perf_counter() - start

    print(f"{args.images} scenes of {width}x{height}: {elapsed:.2f} s "
          f"({args.images / elapsed:.1f} images/s, {heads / elapsed:,.0f} heads/s, "
          f"{heads:,} heads)")
    print(f"ratio to filling the same images with noise: {elapsed / baseline:.0f}x")


if __name__ == "__main__":
    main()
