"""gaussian_heatmap against a per-head windowed loop (CenterNet's draw_umich_gaussian).

    .venv/bin/python benchmarks/heatmap_speed.py [--height 384 --width 512]

Both render the same heads on the same map in this run; the ratio is loop time / ours. The
heads are spread over the map with geometry-adaptive spreads (MCNN rule), as for real crowds.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from maskfocal.targets import gaussian_heatmap, point_sigmas


def draw_umich_gaussian_loop(centers: np.ndarray, sigmas: np.ndarray, height: int,
                             width: int) -> np.ndarray:
    """The baseline: CenterNet's windowed per-head drawing, generalised to (sx, sy)."""
    heatmap = np.zeros((height, width), np.float32)
    for (x, y), (sx, sy) in zip(centers, sigmas, strict=True):
        px, py = math.floor(x), math.floor(y)
        if not (0 <= px < width and 0 <= py < height):
            continue
        rx, ry = math.ceil(3 * sx), math.ceil(3 * sy)
        xs = np.arange(-rx, rx + 1)
        ys = np.arange(-ry, ry + 1)[:, None]
        gaussian = np.exp(-(xs * xs / (2 * sx * sx) + ys * ys / (2 * sy * sy)))
        left, right = min(px, rx), min(width - px, rx + 1)
        top, bottom = min(py, ry), min(height - py, ry + 1)
        window = heatmap[py - top:py + bottom, px - left:px + right]
        patch = gaussian[ry - top:ry + bottom, rx - left:rx + right]
        np.maximum(window, patch, out=window)
    return heatmap


def best_time(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--heads", type=int, nargs="*", default=[100, 1000, 5000, 20000])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: a fair fight with the single-threaded loop)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"map {args.width}x{args.height}, best of {args.repeats}, torch threads "
          f"{args.threads}")
    print(f"{'heads':>7} {'loop ms':>9} {'ours ms':>9} {'ratio':>7} {'max diff':>9}")
    for heads in args.heads:
        centers = rng.uniform(0, [args.width, args.height], (heads, 2))
        sigmas = np.repeat(point_sigmas(centers, min_sigma=0.5, max_sigma=8)[:, None], 2, 1)
        centers_t, sigmas_t = torch.tensor(centers), torch.tensor(sigmas)
        loop = best_time(lambda c=centers, s=sigmas: draw_umich_gaussian_loop(
            c, s, args.height, args.width), args.repeats)
        ours = best_time(lambda c=centers_t, s=sigmas_t: gaussian_heatmap(
            c, s, args.height, args.width), args.repeats)
        diff = np.abs(draw_umich_gaussian_loop(centers, sigmas, args.height, args.width)
                      - gaussian_heatmap(centers_t, sigmas_t, args.height, args.width).numpy())
        print(f"{heads:>7} {loop * 1e3:>9.2f} {ours * 1e3:>9.2f} {loop / ours:>6.1f}x "
              f"{diff.max():>9.1e}")


if __name__ == "__main__":
    main()
