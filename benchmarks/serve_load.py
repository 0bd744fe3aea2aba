"""``maskfocal serve`` under load on loopback: requests/s, p50/p95 latency, peak memory.

    .venv/bin/python benchmarks/serve_load.py [--requests 40] [--concurrency 8] \\
        [--workers 1 2] [--backends torch auto] [--screenshot page.png]

Starts the server (the shipped model unless --checkpoint) once per backend and worker count
(the backends in one run, so their ratio is the figure; ``auto`` is the default), sends
640x480 synthetic crowd JPEGs from a thread pool, and prints one line per worker count; with
--screenshot, opens the page in headless Chromium, counts one photo there and saves the page.
Writes ``benchmarks/results/serve_load.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import tempfile
from pathlib import Path

from maskfocal.testing import CHROMEDRIVER, CHROMIUM, Server, chromium, crowd_image, load_test


def screenshot(server: Server, photo: Path, out: Path) -> int:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with tempfile.TemporaryDirectory() as profile:
        driver = chromium(Path(profile), (1100, 900))
        try:
            driver.get(server.url + "/")
            driver.find_element(By.ID, "files").send_keys(str(photo))
            card = WebDriverWait(driver, 120).until(
                lambda d: d.find_element(By.CSS_SELECTOR, ".card.done"))
            count = int(card.get_attribute("data-count"))
            driver.save_screenshot(str(out))
        finally:
            driver.quit()
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="default: the shipped model")
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--backends", nargs="+", default=["auto"],
                        choices=["auto", "torch", "onnx"])
    parser.add_argument("--screenshot", type=Path)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/serve_load.json"))
    args = parser.parse_args()
    images = [crowd_image("JPEG", (640, 480), seed=k) for k in range(8)]
    extra = ["--checkpoint", args.checkpoint] if args.checkpoint else []
    records = []
    for backend, workers in [(b, w) for b in args.backends for w in args.workers]:
        with Server(*extra, "--workers", str(workers), "--max-waiting",
                    str(args.concurrency), "--backend", backend) as server:
            load_test(server.url, images[:2], requests=2 * workers, concurrency=workers)  # warm
            report = load_test(server.url, images, args.requests, args.concurrency)
            report.update(backend=backend, workers=workers, peak_rss_mb=round(server.peak_rss_mb()),
                          image="640x480 JPEG synthetic crowd", concurrency=args.concurrency)
            if args.screenshot and workers == args.workers[0] and CHROMIUM and CHROMEDRIVER:
                photo = Path(tempfile.mkdtemp()) / "synthetic-crowd.jpg"
                photo.write_bytes(images[3])
                report["page_count"] = screenshot(server, photo, args.screenshot)
        records.append(report)
        print(f"{backend}, {workers} worker(s): {report['ok']}/{report['requests']} answered 200 "
              f"({report['busy']} told to retry), {report['requests_per_s']:.2f} requests/s, "
              f"p50 {report['p50_ms']:.0f} ms, p95 {report['p95_ms']:.0f} ms, "
              f"peak RSS {report['peak_rss_mb']} MB (all processes)")
    args.out.write_text(json.dumps({"date": datetime.date.today().isoformat(),
                                    "machine": f"{os.cpu_count()}-core CPU",
                                    "runs": records}, indent=1) + "\n")


if __name__ == "__main__":
    main()
