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
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor, nn

from maskfocal import __version__
from maskfocal.errors import MaskfocalError
from maskfocal.families import DetectorFamily, family_for
from maskfocal.fileio import atomic_write_bytes, writable_file
from maskfocal.inference.backend import load_detector

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
