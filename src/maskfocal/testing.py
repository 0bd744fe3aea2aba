"""Harnesses for checking maskfocal from the outside, shared by the tests and the benchmarks:
``maskfocal serve`` in a subprocess on loopback, a load generator with the standard library,
headless Chromium for the page, small synthetic crowd photos to send, and the package's
intended structure (:data:`LAYERS`) with the import graph that checks it.

>>> with Server("--workers", "2") as server:
...     load_test(server.url, [crowd_image("JPEG")], requests=40, concurrency=8)
"""

from __future__ import annotations

import ast
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

__all__ = ["ALLOWED_BACK_ARROWS", "CHROMEDRIVER", "CHROMIUM", "LAYERS", "Server",
           "back_arrows", "chromium", "crowd_image", "free_port", "import_cycles", "import_graph",
           "layer_of", "load_test", "post_url", "soak"]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundations", ("errors", "options", "structures", "geometry", "fileio", "media",
                     "device", "checkpoint", "pretrained")),
    ("data", ("data",)),
    ("targets, decode, metrics", ("targets", "decode", "metrics")),
    ("models, losses", ("models", "losses")),
    ("families", ("families",)),
    ("inference", ("inference", "export", "zones", "flow", "visualize")),
    ("config", ("config",)),
    ("engine", ("engine",)),
    ("commands", ("evaluation", "mining", "video", "archive", "service", "serve_protocol",
                  "demo", "cli", "__main__", "testing")),
)
"""The package's layers, bottom first, by the top-level module or subpackage under
``maskfocal``: a module imports only from its own layer and those before it (the package's
``__init__``, which holds ``__version__`` and re-exports ``Counter`` lazily, is its facade
and belongs to none). docs/architecture.md describes them; tests/test_layers.py enforces them
on every import, lazy ones included."""

ALLOWED_BACK_ARROWS = {
    ("maskfocal.inference.predictor", "maskfocal.config"):
        "Predictor.config (what experiments read) loads the training config when asked; "
        "counting never asks",
}
"""Imports against the layers that are meant, and why."""


def import_graph(src: str | Path) -> dict[str, set[str]]:
    """``maskfocal.X`` -> the ``maskfocal`` modules it imports (at the top or inside a
    function), for the package under ``src``; ``from P import name`` counts as importing the
    submodule ``P.name`` where there is one, else ``P``."""
    root = Path(src) / "maskfocal"
    files = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        package = parts[-1] == "__init__"
        files[".".join(parts[:-1] if package else parts)] = (path, package)
    graph = {}
    for name, (path, package) in files.items():
        here = name if package else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = here.split(".")[:len(here.split(".")) - node.level + 1]
                    base = ".".join(parent + ([node.module] if node.module else []))
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.add(sub if sub in files else base)
            elif isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of ``graph``: its strongly connected components of more than one
    module (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for target in edges:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        cycles.append(sorted(component))
    return cycles


def layer_of(module: str) -> int | None:
    """The index in :data:`LAYERS` of a ``maskfocal.X...`` module (None: the facade, or a
    module no layer names)."""
    top = module.split(".")[1] if module.count(".") else None
    return next((i for i, (_, names) in enumerate(LAYERS) if top in names), None)


def back_arrows(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports from a module into a layer above its own."""
    return sorted((module, target) for module, targets in graph.items()
                  for target in targets
                  if None not in (layer_of(module), layer_of(target))
                  and layer_of(target) > layer_of(module))


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
        return sum(_status_kb(pid, "VmHWM:") for pid in self.pids()) / 1024


    def rss_mb(self) -> float:
        """Resident memory now of the server and its worker processes (Linux)."""
        return sum(_status_kb(pid, "VmRSS:") for pid in self.pids()) / 1024

    def open_files(self) -> int:
        """File descriptors the server and its workers hold (Linux)."""
        total = 0
        for pid in self.pids():
            try:
                total += len(list(Path(f"/proc/{pid}/fd").iterdir()))
            except FileNotFoundError:
                pass
        return total

    def pids(self) -> list[int]:
        return [self.process.pid, *children(self.process.pid)]


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        path = task / "children"
        if path.is_file():
            for child in path.read_text().split():
                found += [int(child), *children(int(child))]
    return found


def post_url(url: str, data: bytes, name: str = "crowd.png", query: str = "",
             fields: dict[str, str] | None = None) -> tuple[int, dict]:
    """A multipart POST with the standard library only (no client of the server's kind);
    ``fields``: form fields beside the image (``zones``)."""
    boundary = "maskfocal-test-boundary"
    body = b"".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{key}\"\r\n\r\n"
                    f"{value}\r\n".encode() for key, value in (fields or {}).items())
    body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
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


def soak(server: Server, seconds: float, clients: int = 4, every_s: float = 0.25,
         sample_s: float = 10.0, oversized: bytes | None = None) -> dict:
    """A long-running service under mixed traffic: ``clients`` threads that each send, one
    after another with ``every_s`` between them, a valid crowd photo, bytes that are no
    image, ``oversized`` (an image over the server's limits, when given) and a slow request
    that stops halfway (closed by the server's receive timeout); a poller asks ``/healthz``
    every second. Every ``sample_s``: resident memory, open file descriptors and the p95 of
    the valid requests answered in that window.

    Returns the samples, the memory slope in MB per minute over the second half of the run
    (a least-squares line; the first half holds the warm-up: allocator pools, caches), each
    status's count, and ``/healthz`` answers that were not 200.
    """
    import threading

    photos = [crowd_image("JPEG", (320, 240), seed=k) for k in range(4)]
    stop = threading.Event()
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    health_failures: list[str] = []

    def note(kind: str, status: int) -> None:
        with lock:
            statuses[f"{kind} {status}"] = statuses.get(f"{kind} {status}", 0) + 1

    def slow() -> None:
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
                sock.sendall(b"POST /api/count HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
                while sock.recv(4096):  # until the server lets go
                    pass
            note("slow", 0)
        except OSError as error:
            note(f"slow {type(error).__name__}", 0)

    def client(k: int) -> None:
        n = k
        while not stop.is_set():
            kind = ("valid", "valid", "invalid", "oversized", "slow")[n % 5]
            n += 1
            if kind == "slow":
                slow()
            elif kind == "oversized" and oversized is None:
                continue
            else:
                data = {"valid": photos[n % len(photos)], "invalid": b"no image " * 64,
                        "oversized": oversized}[kind]
                started = time.perf_counter()
                status, _ = post_url(server.url, data)
                if kind == "valid" and status == 200:
                    with lock:
                        latencies.append((time.monotonic(), time.perf_counter() - started))
                note(kind, status)
            stop.wait(every_s)

    def health() -> None:
        while not stop.is_set():
            try:
                with urllib.request.urlopen(f"{server.url}/healthz", timeout=5) as answer:
                    if answer.status != 200:
                        health_failures.append(str(answer.status))
            except OSError as error:
                health_failures.append(type(error).__name__)
            stop.wait(1.0)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    threads.append(threading.Thread(target=health))
    started = time.monotonic()
    for thread in threads:
        thread.start()
    samples = []
    try:
        while time.monotonic() - started < seconds:
            window = time.monotonic()
            time.sleep(min(sample_s, max(0.0, seconds - (window - started))))
            with lock:
                recent = [t for at, t in latencies if at >= window]
            samples.append({"s": round(time.monotonic() - started, 1),
                            "rss_mb": round(server.rss_mb(), 1), "fds": server.open_files(),
                            "p95_ms": round(1000 * float(np.percentile(recent, 95)), 1)
                            if recent else None, "valid_ok": len(recent)})
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    late = samples[len(samples) // 2:]
    slope = (float(np.polyfit([x["s"] / 60 for x in late], [x["rss_mb"] for x in late], 1)[0])
             if len(late) >= 2 else 0.0)
    return {"seconds": round(time.monotonic() - started, 1), "clients": clients,
            "samples": samples, "rss_slope_mb_per_min": round(slope, 2),
            "statuses": dict(sorted(statuses.items())), "health_failures": health_failures}


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
