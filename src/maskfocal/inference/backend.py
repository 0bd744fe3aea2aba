"""What runs a saved model: its weights in eager PyTorch (``.pt``, ``.safetensors``) or its
ONNX export in ONNX Runtime, each with the :class:`~maskfocal.families.DetectorSpec` that
decodes it and the :class:`~maskfocal.inference.InferenceOptions` it carries. Reading one
never imports the training config (:mod:`maskfocal.config`) or the engine.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from maskfocal.checkpoint import load_checkpoint
from maskfocal.errors import MaskfocalError
from maskfocal.families import DetectorSpec, family_for

from .options import InferenceOptions

__all__ = ["Backend", "OnnxRunner", "load_backend", "load_detector", "non_finite_weights"]


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
        runner = OnnxRunner(path, device)
        return Backend(runner.model, runner.spec, runner.options, torch.device("cpu"), runner,
                       runner.saved_config)
    model, spec, options, state = load_detector(path)
    return Backend(model, spec, options, device, None, state["config"])


def non_finite_weights(path: str | Path) -> list[str]:
    """The names of the ONNX file's floating-point initializers (its weights) that hold NaN
    or infinity: as the ``.pt`` and ``.safetensors`` loaders refuse them (a model that counts
    0 everywhere is worse than an error)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path), load_external_data=False)
    damaged = []
    for tensor in model.graph.initializer:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
        if not np.issubdtype(dtype, np.floating):
            continue
        values = (np.frombuffer(tensor.raw_data, dtype) if tensor.raw_data  # no copy
                  else numpy_helper.to_array(tensor))
        if not np.isfinite(values).all():
            damaged.append(tensor.name)
    return damaged


MEMORY_PATTERN = False
"""ONNX Runtime's memory pattern plans one block for each input shape it has seen; photos come
in every shape, and without it a 2048x1536 pass peaked 380 MB lower at the same speed
(benchmarks/tiling_memory.py measures both)."""


class OnnxRunner:
    """Runs an exported model with ONNX Runtime; called like the eager model in eval
    (returns what ``model(images)`` would).

    ``model`` is the family's decoder (:meth:`~maskfocal.families.DetectorFamily.decoder`):
    the anchors, box coder, score floor and NMS of a box detector, nothing for CenterNet; no
    network and no weights are built.
    """

    def __init__(self, path: str | Path, device: torch.device) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise MaskfocalError(f"{path}: no such file")
        self.path = path
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # as many as eager PyTorch
        options.enable_mem_pattern = MEMORY_PATTERN
        try:  # the weights are read before the session exists: the two peaks do not add up
            damaged = non_finite_weights(path)
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as error:  # onnx's DecodeError, ORT's own Fail/InvalidGraph/...
            raise MaskfocalError(f"{path}: not a readable ONNX model "
                                 f"({str(error).splitlines()[0][:200]})") from None
        if damaged:
            raise MaskfocalError(f"{path}: {len(damaged)} weight tensors hold NaN or infinity "
                                 f"(first: {damaged[0]}); export the model again from a "
                                 "sound checkpoint")
        metadata = self.session.get_modelmeta().custom_metadata_map
        if "config" not in metadata:
            raise MaskfocalError(f"{path}: an ONNX model without maskfocal metadata (export "
                                 "it with `maskfocal export`)")
        try:
            saved = json.loads(metadata["config"])
            if "threshold" in metadata:  # exports before the threshold had one home
                saved["decode"] = {**saved.get("decode", {}),
                                   "threshold": float(metadata["threshold"])}
            self.names = tuple(metadata["outputs"].split(","))
        except (KeyError, ValueError, TypeError, AttributeError) as error:
            raise MaskfocalError(f"{path}: damaged maskfocal metadata ({error})") from None
        self.spec, self.options = read_saved(saved, path)
        self.saved_config = saved
        self.family = family_for(self.spec)
        self.model = self.family.decoder().eval()  # decoding only: no network, no weights

    def __call__(self, images: Tensor):
        arrays = self.session.run(list(self.names),
                                  {"images": images.detach().cpu().float().numpy()})
        outputs = {name: torch.from_numpy(np.asarray(a)) for name, a in
                   zip(self.names, arrays, strict=True)}
        return self.family.from_exported(self.model, outputs, tuple(images.shape[-2:]),
                                         len(images))
