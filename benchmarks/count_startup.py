"""What ``maskfocal count photo.jpg`` loads before it counts: import time, peak resident memory
and modules imported, for this source tree and a baseline tree, run alternately in fresh
processes on the same machine (a ratio, not absolute times: this machine is shared).

    .venv/bin/python benchmarks/count_startup.py                      # this tree alone
    git worktree add /tmp/base <commit> --detach
    .venv/bin/python benchmarks/count_startup.py --baseline /tmp/base/src --runs 3

Import time is the sum of ``python -X importtime``'s self times: every module the command
imports, its own and its libraries'.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, resource, sys, time
started = time.perf_counter()
from maskfocal.cli import main
status = main(["count", sys.argv[1], "--json"])
wall = time.perf_counter() - started
mods = sorted(sys.modules)
print("RESULT " + json.dumps({
    "status": status, "wall_s": wall,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "modules": len(mods), "maskfocal_modules": [m for m in mods if m.startswith("maskfocal")]}))
"""


def run(src: Path, photo: Path, threads: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", CHILD, str(photo)],
                          capture_output=True, text=True, env=env, check=True)
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    result["import_s"] = sum(int(x.split("|")[0].split(":")[1]) for x in done.stderr.splitlines()
                             if x.startswith("import time:") and "self" not in x) / 1e6
    return result


def summary(runs: list[dict]) -> dict:
    first = runs[0]
    return {"import_s": round(statistics.median(r["import_s"] for r in runs), 3),
            "wall_s": round(statistics.median(r["wall_s"] for r in runs), 3),
            "peak_rss_mb": round(statistics.median(r["peak_rss_mb"] for r in runs), 1),
            "modules": first["modules"], "maskfocal_modules": len(first["maskfocal_modules"]),
            "config_or_engine": [m for m in first["maskfocal_modules"]
                                 if m == "maskfocal.config" or m.startswith("maskfocal.engine")]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="another tree's src/ to compare with")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    from maskfocal.testing import crowd_image

    with tempfile.TemporaryDirectory() as folder:
        photo = Path(folder) / "photo.jpg"
        photo.write_bytes(crowd_image("JPEG", size=(1024, 768)))
        trees = {"this": ROOT / "src", **({"baseline": args.baseline} if args.baseline else {})}
        runs: dict[str, list[dict]] = {name: [] for name in trees}
        for _ in range(args.runs):
            for name, src in trees.items():  # alternately, so both see the same machine
                runs[name].append(run(src, photo, args.threads))
    figures = {name: summary(found) for name, found in runs.items()}
    if args.baseline:
        figures["ratio_this_over_baseline"] = {
            key: round(figures["this"][key] / figures["baseline"][key], 3)
            for key in ("import_s", "wall_s", "peak_rss_mb")}
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
