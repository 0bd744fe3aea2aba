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
import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList

from maskfocal import __version__
from maskfocal.config import Config, config_from_dict
from maskfocal.engine.checkpoint import load_model, threshold_of
from maskfocal.errors import MaskfocalError
from maskfocal.io import atomic_write_bytes, writable_file
from maskfocal.models import CenterNet, build_model
from maskfocal.models.detectors import PYRAMID_STRIDES

CENTERNET_OUTPUTS = ("heatmap", "offset", "size")
BOX_OUTPUTS = {"fcos": ("cls_logits", "bbox_regression", "bbox_ctrness"),
               "retinanet": ("cls_logits", "bbox_regression")}
OPSET = 18


class _ExportGraph(nn.Module):
    """The exported part of a model: normalisation, backbone and heads; tuple outputs."""

    def __init__(self, model: nn.Module, names: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        if isinstance(self.model, CenterNet):
            outputs = self.model(images)
        else:
            normalised = self.model.transform.normalize(images)
            features = list(self.model.backbone(normalised).values())
            outputs = self.model.head(features)
        return tuple(outputs[name] for name in self.names)


def output_names(model: nn.Module, config: Config) -> tuple[str, ...]:
    if isinstance(model, CenterNet):
        return tuple(name for name in CENTERNET_OUTPUTS if name in model.heads)
    return BOX_OUTPUTS[config.model.name]


def export_onnx(checkpoint: str | Path, out: str | Path, *, example_size: tuple[int, int] =
                (384, 512), overwrite: bool = False) -> Path:
    """Write ``checkpoint``'s model as ONNX to ``out`` (atomically); returns the path.

    An existing ``out`` is replaced only when it is an earlier maskfocal export, or with
    ``overwrite``; either way, never the checkpoint itself.
    """
    out = writable_file(out, "--out")
    if out.exists():
        if out.resolve() == Path(checkpoint).resolve():
            raise MaskfocalError(f"--out {out} is the checkpoint itself; choose another --out")
        if not overwrite and not is_maskfocal_onnx(out):
            raise MaskfocalError(f"{out} exists and is not a maskfocal ONNX export; choose "
                                 "another --out or pass --overwrite to replace it")
    model, config, state = load_model(checkpoint)
    names = output_names(model, config)
    graph = _ExportGraph(model, names).eval()
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
    metadata = {"maskfocal_version": __version__, "config": json.dumps(config.to_dict()),
                "threshold": repr(threshold_of(state, config)),
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


class OnnxRunner:
    """Runs an exported model with ONNX Runtime; called like the eager model in
    :class:`maskfocal.Counter` (returns what :func:`maskfocal.engine.tasks.forward` would).

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
            self.config = config_from_dict(json.loads(metadata["config"]))
            self.threshold = float(metadata["threshold"])
            self.names = tuple(metadata["outputs"].split(","))
        except (KeyError, ValueError, TypeError) as error:
            raise MaskfocalError(f"{path}: damaged maskfocal metadata ({error})") from None
        if not 0 < self.threshold < 1:
            raise MaskfocalError(f"{path}: its threshold {self.threshold!r} is not in (0, 1)")
        self.model = build_model(self.config, pretrained=False).eval()

    def __call__(self, images: Tensor):
        arrays = self.session.run(list(self.names),
                                  {"images": images.detach().cpu().float().numpy()})
        outputs = {name: torch.from_numpy(np.asarray(a)) for name, a in
                   zip(self.names, arrays, strict=True)}
        if isinstance(self.model, CenterNet):
            return outputs
        return box_postprocess(self.model, outputs, tuple(images.shape[-2:]), len(images))


def feature_sizes(height: int, width: int, strides: list[int]) -> list[tuple[int, int]]:
    """Feature sizes at each stride: every stride-2 step of the backbone rounds up."""
    sizes = []
    for stride in strides:
        steps = int(math.log2(stride))
        h, w = height, width
        for _ in range(steps):
            h, w = -(-h // 2), -(-w // 2)
        sizes.append((h, w))
    return sizes


@torch.no_grad()
def box_postprocess(model: nn.Module, head_outputs: dict[str, Tensor],
                    image_size: tuple[int, int], batch: int) -> list[dict[str, Tensor]]:
    """torchvision's FCOS/RetinaNet inference after the heads: anchors, decode, NMS."""
    sizes = feature_sizes(*image_size, list(PYRAMID_STRIDES))
    images = ImageList(torch.empty(batch, 0, *image_size), [image_size] * batch)
    features = [torch.empty(batch, 0, h, w) for h, w in sizes]
    anchors = model.anchor_generator(images, features)
    per_level = [h * w for h, w in sizes]
    total = head_outputs["cls_logits"].shape[1]
    if total % sum(per_level):
        raise MaskfocalError(f"ONNX outputs have {total} anchors; the config's levels "
                             f"{sizes} do not divide them")
    per_level = [n * (total // sum(per_level)) for n in per_level]
    split_outputs = {k: list(v.split(per_level, dim=1)) for k, v in head_outputs.items()}
    split_anchors = [list(a.split(per_level)) for a in anchors]
    return model.postprocess_detections(split_outputs, split_anchors, images.image_sizes)
