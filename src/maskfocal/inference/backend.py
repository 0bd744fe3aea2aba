"""What runs a saved model: its weights in eager PyTorch (``.pt``, ``.safetensors``) or its
ONNX export in ONNX Runtime, each with the :class:`~maskfocal.families.DetectorSpec` that
decodes it and the :class:`~maskfocal.inference.InferenceOptions` it carries. Reading one
never imports the training config (:mod:`maskfocal.config`) or the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from maskfocal.checkpoint import load_checkpoint
from maskfocal.errors import MaskfocalError
from maskfocal.families import DetectorSpec

from .options import InferenceOptions

__all__ = ["Backend", "load_backend", "load_detector"]


@dataclass
class Backend:
    """A loaded model: ``model`` decodes (and, without ``runner``, runs) on ``device``;
    ``runner``, where set, runs the forward pass instead (ONNX Runtime)."""

    model: nn.Module
    spec: DetectorSpec
    options: InferenceOptions
    device: torch.device
    runner: Callable[[Tensor], Any] | None = None
    saved_config: dict | None = None


def read_saved(config: dict, path: str | Path) -> tuple[DetectorSpec, InferenceOptions]:
    """The spec and inference options a saved config holds; one this version cannot read is
    a one-line error naming the file."""
    from maskfocal import __version__

    try:
        return DetectorSpec.from_saved(config), InferenceOptions.from_saved(config)
    except MaskfocalError as error:
        raise MaskfocalError(f"{path}: its config does not fit this maskfocal {__version__}: "
                             f"{error}") from None


def load_detector(path: str | Path) -> tuple[nn.Module, DetectorSpec, InferenceOptions,
                                             dict[str, Any]]:
    """(model, spec, options, state) of a ``.pt`` checkpoint or ``.safetensors`` weights: the
    model its config describes, with its weights (never re-fetching ``model.weights``), in
    eval mode, on the CPU."""
    from maskfocal.families import family_for

    state = load_checkpoint(path)
    spec, options = read_saved(state["config"], path)
    model = family_for(spec).build(pretrained=False)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        raise MaskfocalError(f"{path}: weights do not fit the model its config describes "
                             f"({str(error).splitlines()[0]})") from None
    return model.eval(), spec, options, state


def load_backend(path: str | Path, device: torch.device) -> Backend:
    """A ``.pt``, ``.safetensors`` or ``.onnx`` file (by its suffix) ready to run on
    ``device`` (an ONNX export decodes on the CPU and runs where ONNX Runtime can)."""
    if Path(path).suffix.lower() == ".onnx":
        from maskfocal.export import OnnxRunner

        runner = OnnxRunner(path, device)
        return Backend(runner.model, runner.spec, runner.options, torch.device("cpu"), runner,
                       runner.saved_config)
    model, spec, options, state = load_detector(path)
    return Backend(model, spec, options, device, None, state["config"])
