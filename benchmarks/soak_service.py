"""``maskfocal serve`` for a long time under mixed traffic: memory slope, p95 over time, file
descriptors, /healthz.

    .venv/bin/python benchmarks/soak_service.py [--minutes 20] [--clients 4] [--every 0.25]

Starts the server (the shipped model unless --checkpoint; uploads over 2000 px a side
refused, a request must arrive whole within 5 s), then each client sends in turn a 320x240
synthetic crowd JPEG (twice), bytes that are no image, a 2400x60 PNG (over the side limit)
and a request that stops halfway, pausing --every seconds between them; a poller asks
/healthz every second. Prints one line per sample (every --sample seconds) and a summary;
writes ``benchmarks/results/soak_service.json``. The suite's short version is
``tests/test_service.py::test_a_soak_under_mixed_traffic_memory_descriptors_and_health_hold``.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
from pathlib import Path

from PIL import Image

from maskfocal.testing import Server, soak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="default: the shipped model")
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--every", type=float, default=0.25, help="seconds between requests")
    parser.add_argument("--sample", type=float, default=30, help="seconds between samples")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/soak_service.json"))
    args = parser.parse_args()
    oversized = io.BytesIO()
    Image.new("RGB", (2400, 60)).save(oversized, format="PNG")
    extra = ["--checkpoint", args.checkpoint] if args.checkpoint else []
    with Server(*extra, "--max-side", "2000", "--receive-timeout", "5") as server:
        report = soak(server, 60 * args.minutes, clients=args.clients, every_s=args.every,
                      sample_s=args.sample, oversized=oversized.getvalue())
    for sample in report["samples"]:
        print(f"{sample['s']:7.0f} s  RSS {sample['rss_mb']:7.1f} MB  fds {sample['fds']:3d}  "
              f"p95 {sample['p95_ms'] or float('nan'):6.0f} ms  ({sample['valid_ok']} valid)")
    samples = report["samples"]
    p95 = [x["p95_ms"] for x in samples if x["p95_ms"] is not None]
    print(f"{report['seconds'] / 60:.1f} min, {args.clients} clients: memory slope "
          f"{report['rss_slope_mb_per_min']:+.2f} MB/min over the second half "
          f"(RSS {samples[0]['rss_mb']:.0f} -> {samples[-1]['rss_mb']:.0f} MB), p95 "
          f"{min(p95):.0f}-{max(p95):.0f} ms, fds {min(x['fds'] for x in samples)}-"
          f"{max(x['fds'] for x in samples)}, /healthz failures "
          f"{len(report['health_failures'])}; {report['statuses']}")
    args.out.write_text(json.dumps({"date": datetime.date.today().isoformat(),
                                    "machine": f"{os.cpu_count()}-core CPU",
                                    "model": args.checkpoint or "shipped default",
                                    **report}, indent=1) + "\n")


if __name__ == "__main__":
    main()
