"""Harnesses for checking maskfocal from the outside, shared by the tests and the benchmarks:
``maskfocal serve`` in a subprocess on loopback, a load generator with the standard library,
headless Chromium for the page, and small synthetic crowd photos to send.

>>> with Server("--workers", "2") as server:
...     load_test(server.url, [crowd_image("JPEG")], requests=40, concurrency=8)
"""

from __future__ import annotations

import io
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["CHROMEDRIVER", "CHROMIUM", "Server", "chromium", "crowd_image", "free_port",
           "load_test", "post_url"]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def crowd_image(fmt: str = "PNG", size=(160, 120), seed: int = 0) -> bytes:
    from maskfocal.data.synthetic import SyntheticConfig, generate_scene

    scene = generate_scene(SyntheticConfig(width=size[0], height=size[1], min_count=20,
                                           max_count=40), seed=seed)
    buffer = io.BytesIO()
    Image.fromarray(scene.pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """``maskfocal serve`` in a subprocess, up until the context ends."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = ["serve", "--port", str(self.port), *args]

    def __enter__(self) -> Server:
        import tempfile

        self.log = tempfile.TemporaryFile(mode="w+")  # not a pipe: a full pipe would block it
        self.process = subprocess.Popen([sys.executable, "-m", "maskfocal", *self.args],
                                        stdout=subprocess.DEVNULL, stderr=self.log, text=True)
        deadline = time.monotonic() + 300  # importing torch on a busy machine is slow
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2):
                    return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if self.process.poll() is not None:
                    self.log.seek(0)
                    raise RuntimeError(f"server exited: {self.log.read()}") from None
                if time.monotonic() > deadline:
                    self.__exit__()
                    raise
                time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()

    def peak_rss_mb(self) -> float:
        """Peak resident memory of the server and its worker processes (Linux)."""
        total = 0.0
        for pid in [self.process.pid, *children(self.process.pid)]:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1]) / 1024
            except FileNotFoundError:
                pass
        return total


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        path = task / "children"
        if path.is_file():
            for child in path.read_text().split():
                found += [int(child), *children(int(child))]
    return found


def post_url(url: str, data: bytes, name: str = "crowd.png", query: str = "") -> tuple[int, dict]:
    """A multipart POST with the standard library only (no client of the server's kind)."""
    boundary = "maskfocal-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
            f"filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode() + \
        data + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        f"{url}/api/count{query}", data=body, method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def load_test(url: str, images: list[bytes], requests: int, concurrency: int) -> dict:
    """``requests`` POSTs from ``concurrency`` threads; statuses, throughput, latencies."""
    from concurrent.futures import ThreadPoolExecutor

    def one(k: int):
        started = time.perf_counter()
        status, _ = post_url(url, images[k % len(images)])
        return status, time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        outcomes = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - started
    latencies = sorted(seconds for status, seconds in outcomes if status == 200)
    statuses = [status for status, _ in outcomes]
    return {"requests": requests, "answered": len(outcomes), "ok": statuses.count(200),
            "busy": statuses.count(503), "other": len(statuses) - statuses.count(200) -
            statuses.count(503), "requests_per_s": statuses.count(200) / wall,
            "p50_ms": 1000 * float(np.percentile(latencies, 50)) if latencies else None,
            "p95_ms": 1000 * float(np.percentile(latencies, 95)) if latencies else None}


def chromium(profile: Path, size: tuple[int, int]):
    """Headless Debian Chromium through Selenium, with the flags a closed network needs (no
    background connections) and a fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
