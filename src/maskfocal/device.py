"""Which device runs the model: decided here, once, for training, evaluation and counting."""

from __future__ import annotations

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
