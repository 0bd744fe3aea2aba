"""ONNX export, and running an exported model with ONNX Runtime.

The graph takes a padded (B, 3, H, W) float batch in [0, 1] (H, W multiples of 32; batch,
height and width are dynamic) and ends at the network's raw outputs: CenterNet's heatmap
logits, offsets and sizes; FCOS's and RetinaNet's per-anchor class logits and box
regressions (and FCOS's centerness). Decoding (peaks, thresholds, anchors, box decoding,
NMS) is *not* in the graph: it runs in the same Python code as eager PyTorch, so counts from
ONNX Runtime equal PyTorch's, and the threshold can change without a re-export. The file's
metadata holds the config and the calibrated threshold, so the ``.onnx`` file alone is a
counter (``maskfocal count --checkpoint model.onnx``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from maskfocal import __version__
from maskfocal.errors import MaskfocalError
from maskfocal.families import DetectorFamily, family_for
from maskfocal.inference.backend import load_detector, read_saved
from maskfocal.io import atomic_write_bytes, writable_file

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
    graph = _ExportGraph(model, family).eval()
    names = graph.names
    example = torch.rand(1, 3, *example_size)
    import onnx

    batch, height, width = (torch.export.Dim("batch", min=1, max=1024),
                            torch.export.Dim("height", min=1, max=4096),
                            torch.export.Dim("width", min=1, max=4096))
    with torch.no_grad():
        program = torch.onnx.export(
            graph, (example,), input_names=["images"], output_names=list(names),
            dynamic_shapes={"images": {0: batch, 2: 32 * height, 3: 32 * width}},
            opset_version=OPSET, dynamo=True, verbose=False)
    proto = program.model_proto
    metadata = {"maskfocal_version": __version__, "config": json.dumps(state["config"]),
                "outputs": ",".join(names)}
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
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


def non_finite_weights(path: str | Path) -> list[str]:
    """The names of the ONNX file's floating-point initializers (its weights) that hold NaN
    or infinity: as the ``.pt`` and ``.safetensors`` loaders refuse them (a model that counts
    0 everywhere is worse than an error)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path), load_external_data=False)
    return [tensor.name for tensor in model.graph.initializer
            if np.issubdtype((values := numpy_helper.to_array(tensor)).dtype, np.floating)
            and not np.isfinite(values).all()]


class OnnxRunner:
    """Runs an exported model with ONNX Runtime; called like the eager model in
    :class:`maskfocal.Counter` (returns what its family's ``forward`` would).

    ``model`` is the detector built from the file's config without weights: it is used only
    for decoding (strides, anchors, box coding, NMS), never for the forward pass.
    """

    def __init__(self, path: str | Path, device: torch.device) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise MaskfocalError(f"{path}: no such file")
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # as many as eager PyTorch
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as error:  # ORT raises its own Fail/InvalidGraph/... types
            raise MaskfocalError(f"{path}: not a readable ONNX model "
                                 f"({str(error).splitlines()[0][:200]})") from None
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
        damaged = non_finite_weights(path)
        if damaged:
            raise MaskfocalError(f"{path}: {len(damaged)} weight tensors hold NaN or infinity "
                                 f"(first: {damaged[0]}); export the model again from a "
                                 "sound checkpoint")
        self.family = family_for(self.spec)
        self.model = self.family.build(pretrained=False).eval()

    def __call__(self, images: Tensor):
        arrays = self.session.run(list(self.names),
                                  {"images": images.detach().cpu().float().numpy()})
        outputs = {name: torch.from_numpy(np.asarray(a)) for name, a in
                   zip(self.names, arrays, strict=True)}
        return self.family.from_exported(self.model, outputs, tuple(images.shape[-2:]),
                                         len(images))
