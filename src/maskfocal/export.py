"""ONNX export, and running an exported model with ONNX Runtime.

The graph takes a padded (B, 3, H, W) float batch in [0, 1] (H, W multiples of 32; batch,
height and width are dynamic) and ends at the network's raw outputs: CenterNet's heatmap
logits, offsets and sizes; FCOS's and RetinaNet's per-anchor class logits and box
regressions (and FCOS's centerness). Decoding (peaks, thresholds, anchors, box decoding,
NMS) is *not* in the graph: it runs in the same Python code as eager PyTorch, so counts from
ONNX Runtime equal PyTorch's, and the threshold can change without a re-export. The file's
metadata holds the config and the calibrated threshold, so the ``.onnx`` file alone is a
counter (``maskfocal count --checkpoint model.onnx``); running one is
:class:`maskfocal.inference.backend.OnnxRunner`'s work.

Counting on a CPU runs ONNX Runtime by default (``--backend auto``, :func:`open_backend`): a
``.pt`` or ``.safetensors`` is exported once into the user's cache folder, keyed by the
SHA-256 of its bytes (:func:`cached_onnx`), and run from there.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from maskfocal import __version__
from maskfocal.device import check_backend
from maskfocal.errors import MaskfocalError
from maskfocal.families import DetectorFamily, family_for
from maskfocal.fileio import atomic_write_bytes, cache_folder, writable_file
from maskfocal.inference.backend import Backend, load_backend, load_detector

OPSET = 18


class _ExportGraph(nn.Module):
    """The exported part of a model (its family's :meth:`~DetectorFamily.export_forward`):
    normalisation, backbone and heads; tuple outputs."""

    def __init__(self, model: nn.Module, family: DetectorFamily) -> None:
        super().__init__()
        self.model = model
        self.family = family
        self.names = family.export_names(model)

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        outputs = self.family.export_forward(self.model, images)
        return tuple(outputs[name] for name in self.names)


def export_onnx(checkpoint: str | Path, out: str | Path, *, example_size: tuple[int, int] =
                (384, 512), overwrite: bool = False) -> Path:
    """Write ``checkpoint``'s model as ONNX to ``out`` (atomically); returns the path.

    An existing ``out`` is replaced only when it is an earlier maskfocal export, or with
    ``overwrite``; either way, never the checkpoint itself.
    """
    out = writable_file(out, "--out")
    if out.suffix.lower() != ".onnx":  # what count, eval and serve recognise as ONNX
        raise MaskfocalError(f"--out {out}: an ONNX model's file name must end in .onnx")
    if out.exists():
        if out.resolve() == Path(checkpoint).resolve():
            raise MaskfocalError(f"--out {out} is the checkpoint itself; choose another --out")
        if not overwrite and not is_maskfocal_onnx(out):
            raise MaskfocalError(f"{out} exists and is not a maskfocal ONNX export; choose "
                                 "another --out or pass --overwrite to replace it")
    if Path(checkpoint).suffix.lower() == ".onnx" or is_maskfocal_onnx(checkpoint):
        raise MaskfocalError(f"{checkpoint} is an ONNX export already and cannot be exported "
                             "again; export the .pt or .safetensors it came from")
    model, spec, _, state = load_detector(checkpoint)
    family = family_for(spec)
    if family.export_refusal:
        raise MaskfocalError(f"{checkpoint}: {family.export_refusal}")
    atomic_write_bytes(out, onnx_bytes(model, family, state["config"], example_size))
    return out


def onnx_bytes(model: nn.Module, family: DetectorFamily, config: dict,
               example_size: tuple[int, int] = (384, 512)) -> bytes:
    """The serialised ONNX model of ``model`` (in eval mode), its config in the metadata.
    The exporter's progress lines are kept off stdout (``count --json`` writes there)."""
    import onnx

    from maskfocal.models.efficientnet import with_static_padding

    graph = _ExportGraph(with_static_padding(copy.deepcopy(model)), family).eval()
    names = graph.names
    example = torch.rand(1, 3, *example_size)
    batch, height, width = (torch.export.Dim("batch", min=1, max=1024),
                            torch.export.Dim("height", min=1, max=4096),
                            torch.export.Dim("width", min=1, max=4096))
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            graph, (example,), input_names=["images"], output_names=list(names),
            dynamic_shapes={"images": {0: batch, 2: 32 * height, 3: 32 * width}},
            opset_version=OPSET, dynamo=True, verbose=False)
    proto = program.model_proto
    metadata = {"maskfocal_version": __version__, "config": json.dumps(config),
                "outputs": ",".join(names)}
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_onnx(checkpoint: str | Path) -> Path:
    """Where the ONNX export of ``checkpoint`` (a ``.pt`` or ``.safetensors``) lives in the
    cache folder (:func:`maskfocal.fileio.cache_folder`): named by the SHA-256 of the
    checkpoint's bytes and this maskfocal's version (a new version may export differently),
    so changed weights never meet a stale export. :func:`open_backend` writes it."""
    return cache_folder() / "onnx" / f"{file_sha256(checkpoint)}-{__version__}.onnx"


def open_backend(path: str | Path, device: torch.device, backend: str | None = None
                 ) -> Backend:
    """What runs the model in ``path`` under ``backend`` (:data:`maskfocal.device.BACKENDS`;
    None: ``$MASKFOCAL_BACKEND``, else ``auto``).

    ``torch``: eager PyTorch (an ``.onnx`` file cannot, asked for it; the environment's
    default leaves it to ONNX Runtime). ``onnx``: ONNX Runtime; a ``.pt`` or
    ``.safetensors`` runs from its export in the cache (:func:`cached_onnx`), exported the first
    time (atomically: two processes exporting at once both leave a whole file). ``auto``: as
    ``onnx`` on a CPU, as ``torch`` on CUDA and for a family that does not export (Faster
    R-CNN); where the export cannot be written or fails, it warns and runs eagerly. Decoding is
    the same Python code either way, so the counts are the same (tests/test_backends.py).
    """
    asked, backend = backend, check_backend(backend)
    if Path(path).suffix.lower() == ".onnx":  # $MASKFOCAL_BACKEND=torch does not forbid it
        if asked == "torch":
            raise MaskfocalError(f"{path}: an ONNX export runs with ONNX Runtime only (use "
                                 "--backend onnx or auto, or count its .pt or .safetensors)")
        return load_backend(path, device)
    if (backend == "torch" or (backend == "auto" and device.type != "cpu")
            or not Path(path).is_file()):  # no file: the loader's one-line error
        return load_backend(path, device)
    cached = cached_onnx(path)
    if cached.is_file():
        try:
            return load_backend(cached, device)
        except MaskfocalError:  # damaged in the cache: export it again
            pass
    model, spec, options, state = load_detector(path)
    eager = Backend(model, spec, options, device, None, state["config"])
    family = family_for(spec)
    if family.export_refusal:
        if backend == "onnx":
            raise MaskfocalError(f"{path}: {family.export_refusal}")
        return eager
    print(f"maskfocal: exporting {Path(path).name} for ONNX Runtime, once (cached as {cached})",
          file=sys.stderr, flush=True)
    try:
        atomic_write_bytes(cached, onnx_bytes(model, family, state["config"]))
    except Exception as error:  # a read-only cache, a full disk, an exporter that fails
        reason = f"{type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}"
        if backend == "onnx":
            raise MaskfocalError(f"{path}: no ONNX export could be written to {cached.parent} "
                                 f"({reason}); set MASKFOCAL_CACHE to a writable folder or use "
                                 "--backend torch") from None
        warnings.warn(f"{path}: counting with PyTorch, as no ONNX export could be written to "
                      f"{cached.parent} ({reason})", stacklevel=2)
        return eager
    return load_backend(cached, device)


def quantize_int8(model: str | Path, out: str | Path, batches: Iterable[np.ndarray], *,
                  method: str = "minmax") -> Path:
    """ONNX Runtime's static int8 quantization of the export ``model`` (QDQ, weights per
    channel, activations uint8), calibrated on ``batches`` ((1, 3, H, W) float32 in [0, 1], H
    and W multiples of 32: what the predictor feeds the graph) by ``method`` (``minmax``,
    ``percentile`` or ``entropy``: ONNX Runtime's calibrators); written atomically to
    ``out`` with ``model``'s maskfocal metadata, so it counts as the float file does."""
    import tempfile

    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(batches)

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"images": np.asarray(batch, np.float32)}

    metadata = onnx.load(str(model), load_external_data=False).metadata_props
    with tempfile.TemporaryDirectory() as scratch, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared, quantized = Path(scratch) / "prepared.onnx", Path(scratch) / "int8.onnx"
        quant_pre_process(str(model), str(prepared))
        quantize_static(str(prepared), str(quantized), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8,
                        calibrate_method={"minmax": CalibrationMethod.MinMax,
                                          "percentile": CalibrationMethod.Percentile,
                                          "entropy": CalibrationMethod.Entropy}[method])
        proto = onnx.load(str(quantized))
    del proto.metadata_props[:]
    proto.metadata_props.extend(metadata)
    out = Path(out)
    atomic_write_bytes(out, proto.SerializeToString())
    return out


def is_maskfocal_onnx(path: str | Path) -> bool:
    """Whether ``path`` is an ONNX file that ``maskfocal export`` wrote (its metadata)."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # protobuf's DecodeError and friends: not ONNX at all
        return False
    return any(entry.key == "maskfocal_version" for entry in proto.metadata_props)
