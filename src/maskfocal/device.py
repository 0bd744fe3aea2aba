"""Which device runs the model, which backend, and how many CPU threads: decided here, once,
for training, evaluation and counting.

**Threads.** One rule for intra-op threads, torch's and ONNX Runtime's alike (an ONNX session
takes torch's number): ``--threads N`` where given, else the CPUs this process may actually
use (:func:`usable_cpus`: its affinity mask and its cgroup's CPU quota, not the machine's
count: a container limited to 2 CPUs on a 64-core host gets 2), divided among the processes
that share them (``serve --workers N``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from maskfocal.errors import MaskfocalError

DEVICES = ("auto", "cpu", "cuda")
"""``train.device`` and ``--device``: ``auto`` is CUDA when available, else the CPU (``cuda:N``
picks one GPU)."""


def select_device(name: str) -> torch.device:
    """The :class:`torch.device` that ``name`` asks for; one that cannot be had is a
    one-line error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MaskfocalError(f"device {name!r} asked for, but no CUDA device is available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise MaskfocalError(f"unknown device {name!r} (use {', '.join(DEVICES)})") from None


BACKENDS = ("auto", "torch", "onnx")
"""``--backend``: what runs a model's network. ``torch``: eager PyTorch; ``onnx``: ONNX Runtime
on the model's ONNX export (a ``.pt`` or ``.safetensors`` exported once into the cache,
:func:`maskfocal.export.cached_onnx`); ``auto``: ONNX Runtime on a CPU where the model's family
exports (every one but Faster R-CNN), PyTorch on CUDA and where it does not."""


BACKEND_VARIABLE = "MASKFOCAL_BACKEND"
"""The environment variable that sets the backend where none is given (default ``auto``)."""


def check_backend(name: str | None) -> str:
    """``name``, or the default where None (``$MASKFOCAL_BACKEND``, else ``auto``); one not
    in :data:`BACKENDS` is a one-line error."""
    if name is None:
        name = os.environ.get(BACKEND_VARIABLE) or "auto"
        where = f" (from ${BACKEND_VARIABLE})"
    else:
        where = ""
    if name not in BACKENDS:
        raise MaskfocalError(f"unknown backend {name!r}{where} (use {', '.join(BACKENDS)})")
    return name


CGROUP = Path("/sys/fs/cgroup")


def usable_cpus(cgroup: Path = CGROUP) -> int:
    """The CPUs this process may use: the smaller of its affinity mask and its cgroup's CPU
    quota (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``; a quota of
    1.5 CPUs gives 2), at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 1
    quota = _cgroup_quota(cgroup)
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def _cgroup_quota(cgroup: Path) -> float | None:
    """CPUs allowed by the cgroup's quota, or None without one."""
    try:
        fields = (cgroup / "cpu.max").read_text().split()
        if len(fields) == 2 and fields[0] != "max" and float(fields[1]) > 0:
            return float(fields[0]) / float(fields[1])
        return None
    except (OSError, ValueError):
        pass
    try:
        quota = float((cgroup / "cpu" / "cpu.cfs_quota_us").read_text())
        period = float((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def set_threads(threads: int | None = None, *, share: int = 1) -> int:
    """Set torch's intra-op threads (ONNX Runtime sessions take the same number): ``threads``
    where given, else :func:`usable_cpus` divided among ``share`` processes; returns it."""
    if threads is not None and threads < 1:
        raise MaskfocalError(f"--threads must be at least 1, got {threads}")
    chosen = threads or max(1, usable_cpus() // max(share, 1))
    torch.set_num_threads(chosen)
    return chosen
