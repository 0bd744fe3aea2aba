"""Counting an archive: one process (``maskfocal count``'s loop) against Ray Data with 1 and
2 counting actors, on the same images, in one run.

    .venv/bin/python benchmarks/archive_speed.py --images 24 --size 1024x768

Each arm runs in a fresh process (so that memory is its own) and reports:
- seconds to set up (a local Ray, or nothing) and to count (model loading included);
- images/s over the whole call, and the ratio to one process;
- peak memory: the sum of PSS (shared pages split between the processes sharing them, so
  Ray's shared object store is counted once) over the arm's process tree, sampled every
  0.2 s;
- whether the counts equal the one-process counts.

``RAY_worker_niceness=0`` is set for the Ray arms: Ray starts its workers at nice 15, which on
a machine that is busy with anything else (this one trains in the background) would measure
the scheduler, not Ray. Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ARMS = {"one process": {}, "ray, 1 actor x 2 threads": {"workers": 1, "cpus_per_worker": 2},
        "ray, 2 actors x 1 thread": {"workers": 2, "cpus_per_worker": 1}}


def child(args: argparse.Namespace) -> None:
    """One arm in this process; prints a JSON line."""
    import torch

    from maskfocal.pretrained import checkpoint_or_shipped

    arm = ARMS[args.arm]
    args.checkpoint = str(checkpoint_or_shipped(args.checkpoint))
    paths = sorted(str(p) for p in Path(args.folder).glob("*.jpg"))
    started = time.perf_counter()
    if not arm:
        from maskfocal import Counter

        torch.set_num_threads(args.threads)
        counter = Counter.from_checkpoint(args.checkpoint, device="cpu")
        counts = {}
        for path in paths:
            counts[path] = counter(counter.read_image(path)).count
            if len(counts) == 1:
                first = (1, time.perf_counter() - started)
        setup = 0.0
    else:
        import ray

        from maskfocal.archive import count_archive, read_results

        ray.init(num_cpus=args.threads, include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR")
        setup = time.perf_counter() - started
        with tempfile.TemporaryDirectory() as out:
            summary = count_archive(args.folder, Path(out) / "results", args.checkpoint,
                                    progress=False, **arm)
            table = read_results(Path(out) / "results", columns=["path", "count"])
        counts = dict(zip(table.column("path").to_pylist(), table.column("count").to_pylist(),
                          strict=True))
        ray.shutdown()
        first = (summary.first_rows[0], summary.first_rows[1] + setup)
    seconds = time.perf_counter() - started
    steady = (len(paths) - first[0]) / (seconds - first[1]) if len(paths) > first[0] else 0.0
    print(json.dumps({"setup": setup, "seconds": seconds, "steady": steady, "counts": counts}))


def _tree_pss(root: int) -> int:
    """Sum of PSS (kB) over ``root`` and its descendants."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        tree.update(children)
        frontier += children
    total = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as rollup:
                total += next(int(line.split()[1]) for line in rollup if line.startswith("Pss:"))
        except (OSError, StopIteration):
            continue
    return total


def run_arm(arm: str, args: argparse.Namespace) -> dict:
    environment = {**os.environ, "RAY_worker_niceness": "0"}
    process = subprocess.Popen(
        [sys.executable, __file__, "--child", "--arm", arm, "--folder", args.folder,
         "--checkpoint", args.checkpoint, "--threads", str(args.threads)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=environment)
    peak = 0
    while process.poll() is None:
        peak = max(peak, _tree_pss(process.pid))
        time.sleep(0.2)
    output = process.stdout.read().strip().splitlines()
    if process.returncode != 0 or not output:
        raise SystemExit(f"{arm}: failed with status {process.returncode}")
    return {**json.loads(output[-1]), "peak_mb": peak / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--size", default="1024x768")
    parser.add_argument("--checkpoint", default="crowd-r18")
    parser.add_argument("--threads", type=int, default=2, help="CPUs for every arm")
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--arm", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    from PIL import Image

    from maskfocal.data.synthetic import SyntheticConfig, generate_scene

    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as folder:
        for n in range(args.images):
            scene = generate_scene(SyntheticConfig(width=width, height=height), seed=n)
            Image.fromarray(scene.pixels).save(Path(folder) / f"{n:04d}.jpg", quality=90)
        args.folder = folder
        results = {arm: run_arm(arm, args) for arm in ARMS}
    base = results["one process"]
    print(f"{args.images} images of {args.size}, {args.checkpoint}, {args.threads} CPUs each "
          "arm")
    print(f"{'arm':28s} {'setup s':>8s} {'total s':>8s} {'img/s':>7s} {'ratio':>6s} "
          f"{'steady':>7s} {'ratio':>6s} {'peak MB':>8s}  counts equal")
    for arm, result in results.items():
        rate = args.images / result["seconds"]
        counted = {os.path.abspath(k): v for k, v in result["counts"].items()}
        same = counted == {os.path.abspath(k): v for k, v in base["counts"].items()}
        print(f"{arm:28s} {result['setup']:8.1f} {result['seconds']:8.1f} {rate:7.2f} "
              f"{base['seconds'] / result['seconds']:6.2f} {result['steady']:7.2f} "
              f"{result['steady'] / max(base['steady'], 1e-9):6.2f} "
              f"{result['peak_mb']:8.0f}  {same}")
    print("steady: images/s after the first result (start-up and model loading excluded)")
    for arm in list(ARMS)[1:]:
        total = (results[arm]["seconds"] - base["seconds"]) / args.images
        if not results[arm]["steady"] or not base["steady"]:
            continue  # every image came back in the first batch: use more --images
        steady = 1 / results[arm]["steady"] - 1 / base["steady"]
        print(f"{arm}: {steady:+.3f} s per image once running, {total:+.2f} s per image "
              "with start-up, against one process")


if __name__ == "__main__":
    main()
