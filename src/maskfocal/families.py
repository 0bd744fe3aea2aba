"""Detector families: everything that differs between detectors, in one place.

A family builds its model from a :class:`DetectorSpec` (turning its records into the small
option types that ``models/``, ``targets/`` and ``losses/`` take), decodes the model's outputs
into :class:`~maskfocal.decode.Detections`, names its exported outputs and post-processes
them, and says which config keys it ignores. Every model keeps one contract, torchvision's:
``model(images, targets)`` in training returns its loss dict (keys :attr:`~DetectorFamily.
loss_keys`), ``model(images)`` in eval its raw outputs; so the family holds no loss and no
forward pass. The family is chosen once, from ``model.name`` (:func:`family_for`); no code
outside this module asks which detector it holds.

- :class:`CenterNetFamily`: our CenterNet: raw maps, its loss (its own penalty-reduced focal
  loss or MFL) inside the model, peak decoding here.
- :class:`BoxFamily` (:class:`FCOSFamily`, :class:`RetinaNetFamily`, :class:`FasterRCNNFamily`):
  torchvision's detectors, which compute their losses (stock, or MFL over their own assignment;
  Faster R-CNN's in its RPN) and detections themselves; heads are the box centres.

Adding a detector is one subclass here and its entry in :data:`FAMILIES` (docs/architecture.md,
"Architecture").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from maskfocal.decode import (
    SCORE_FLOOR,
    Detections,
    box_postprocess,
    boxes_to_detections,
    decode_centernet,
)
from maskfocal.decode.options import DecodeOptions
from maskfocal.errors import MaskfocalError
from maskfocal.losses import LOSS_KEYS as CENTERNET_LOSS_KEYS
from maskfocal.losses import LOSS_PRESETS, CenterNetLoss, MaskFocalLossConfig
from maskfocal.losses.options import LossOptions
from maskfocal.models import BACKBONES, Backbone, CenterNet
from maskfocal.models.options import ModelOptions
from maskfocal.options import read_record
from maskfocal.targets.centernet import SpreadRule

__all__ = ["FAMILIES", "LOSS_NAMES", "BoxFamily", "CenterNetFamily", "DetectorFamily",
           "DetectorSpec", "FasterRCNNFamily", "build_model", "family_for"]

LOSS_NAMES = ("auto", "native", "mfl")
"""``loss.name``: the detector's own loss, Mask Focal Loss, or ``auto`` (the default): the one
the MFL experiment measured best for the detector, its family's
:attr:`~DetectorFamily.default_loss`."""



@dataclass
class DetectorSpec:
    """What a detector is: the records that build and decode it, each declared in its own
    layer. A saved model carries one (its config's ``model``, ``loss`` and ``decode``
    sections, read by :meth:`from_saved`); a training config (:class:`maskfocal.config.Config`)
    has the same three sections, so a family takes either."""

    model: ModelOptions = field(default_factory=ModelOptions)
    loss: LossOptions = field(default_factory=LossOptions)
    decode: DecodeOptions = field(default_factory=DecodeOptions)

    @classmethod
    def from_saved(cls, config: dict[str, Any]) -> DetectorSpec:
        """The spec of a saved config (a checkpoint's, a ``.safetensors``' or an ONNX
        export's); keys of the other sections (data, training) are not read."""
        if not isinstance(config, dict):
            raise MaskfocalError(f"expected a config mapping, got {type(config).__name__}")
        spec = cls(*(read_record(kind, config.get(section) or {}, f"{section}.",
                                 others=SAVED_ELSEWHERE.get(section, ()))
                     for section, kind in (("model", ModelOptions), ("loss", LossOptions),
                                           ("decode", DecodeOptions))))
        for key, value, valid in (("model.backbone", spec.model.backbone, BACKBONES),
                                  ("loss.name", spec.loss.name, LOSS_NAMES)):
            if value not in valid:
                raise MaskfocalError(f"{key}: {value!r} is not one of: {', '.join(valid)}")
        family = family_for(spec)
        if spec.loss.name == "auto":  # saved before the loss was resolved when loading
            spec.loss.name = family.default_loss
        return spec


SAVED_ELSEWHERE = {"model": ("init_from",),
                   "decode": ("threshold", "calibrate", "input_scale", "scale_target")}
"""Keys of a saved config's ``model`` and ``decode`` sections that a :class:`DetectorSpec` does
not read: the inference options (``InferenceOptions.from_saved`` reads them) and training's
(``init_from``, ``calibrate``). A test pins them to the config's sections; any other key there
is an error naming it."""

MFL_KEYS = tuple(f"loss.{f.name}" for f in dataclasses.fields(MaskFocalLossConfig))
SPREAD_KEYS = tuple(f"loss.{f.name}" for f in dataclasses.fields(SpreadRule))


def spread_rule(loss: LossOptions) -> SpreadRule:
    """The Gaussian-spread options of the loss config (``loss.box_spread`` ...)."""
    return SpreadRule(**{f.name: getattr(loss, f.name) for f in dataclasses.fields(SpreadRule)})


def mfl_options(loss: LossOptions) -> MaskFocalLossConfig:
    """The MFL options of the loss config (``loss.mask``, ``loss.gamma`` ...)."""
    return MaskFocalLossConfig(**{f.name: getattr(loss, f.name)
                                  for f in dataclasses.fields(MaskFocalLossConfig)})


class DetectorFamily:
    """What the rest of the package asks of a detector, bound to one
    :class:`DetectorSpec` (or a training config, which has its sections).

    Subclasses set the class attributes and implement the methods that raise here.
    """

    loss_keys: ClassVar[tuple[str, ...]]
    """Keys of the model's loss dict (``model(images, targets)`` in training), stable (a test
    pins them)."""
    export_outputs: ClassVar[tuple[str, ...]]
    """Names of the exported graph's outputs (:meth:`export_forward`)."""
    has_heatmap: ClassVar[bool] = False
    """Whether the model predicts a heatmap (:meth:`heatmaps`)."""
    min_side: ClassVar[int] = 32
    """Batches are zero-padded to at least this side (the padding holds no heads)."""
    ignores: ClassVar[dict[str, str]] = {}
    """Config keys this family never reads, and why: setting one is an error."""
    export_refusal: ClassVar[str | None] = None
    """Why this family cannot be exported to ONNX; None: it can."""
    default_loss: ClassVar[str]
    """What ``loss.name=auto`` (the default) becomes: the loss the MFL experiment at
    convergence measured best for this detector (docs/experiments/mfl.md, "At convergence")."""

    def __init__(self, spec: DetectorSpec) -> None:
        self.spec = spec

    # the config --------------------------------------------------------------------------
    def ignored_keys(self) -> dict[str, str]:
        """Keys this family ignores under this config (and why), e.g. MFL's options under
        ``loss.name=native``."""
        ignored = dict(self.ignores)
        if self.spec.loss.name == "native":
            ignored.update(dict.fromkeys(MFL_KEYS, "loss.name=native uses the detector's own "
                                                   "loss, not Mask Focal Loss (loss.name=mfl "
                                                   "does)"))
        return ignored

    def validate(self) -> None:
        """Settings this family cannot build, as a one-line error before any work."""

    # building ----------------------------------------------------------------------------
    def build(self, *, pretrained: bool = True) -> nn.Module:
        """The model, with its backbone's starting weights (``model.pretrained``,
        ``model.weights``) loaded unless ``pretrained`` is False (weights about to be replaced
        by a checkpoint's)."""
        raise NotImplementedError

    def decoder(self) -> nn.Module:
        """What :meth:`decode` and :meth:`from_exported` need of the model when its outputs
        come from elsewhere (an ONNX export): no network, no weights."""
        raise NotImplementedError

    def backbone(self, *, pretrained: bool = True) -> Backbone:
        """The backbone ``model.backbone`` with its starting weights (see :meth:`build`)."""
        model = self.spec.model
        return Backbone(model.backbone, model.weights if pretrained else None,
                        imagenet=pretrained and model.pretrained == "imagenet",
                        freeze_bn=model.freeze_bn)

    # inference ---------------------------------------------------------------------------
    def decode(self, model: nn.Module, outputs, valid_sizes: Sequence[tuple[int, int]], *,
               threshold: float) -> list[Detections]:
        """Heads (score >= ``threshold``) of each image, in input pixels, sorted by score;
        heads beyond an image's valid (unpadded) size are dropped."""
        raise NotImplementedError

    def candidate_floor(self, model: nn.Module, floor: float) -> float:
        """Let ``model`` keep candidates down to score ``floor``; returns the floor it had, to
        set back. Heatmap decoding filters only at :meth:`decode`'s threshold: nothing to do."""
        return floor

    def heatmaps(self, outputs, valid_sizes: Sequence[tuple[int, int]]
                 ) -> list[np.ndarray | None]:
        """Per image, the (ceil(h/stride), ceil(w/stride)) probabilities of its valid area,
        or None for a family without a heatmap."""
        return [None] * len(valid_sizes)

    @property
    def stride(self) -> int:
        """Output stride of the heatmap (:meth:`heatmaps`)."""
        raise MaskfocalError(f"{self.spec.model.name} predicts no heatmap")

    # export ------------------------------------------------------------------------------
    def export_names(self, model: nn.Module) -> tuple[str, ...]:
        return self.export_outputs

    def export_forward(self, model: nn.Module, images: Tensor) -> dict[str, Tensor]:
        """The exported graph: normalisation, backbone and heads; raw outputs by name."""
        raise NotImplementedError

    def from_exported(self, model: nn.Module, outputs: dict[str, Tensor],
                      image_size: tuple[int, int], batch: int):
        """What ``model(images)`` would return in eval, from the exported graph's outputs (``model``
        serves for decoding only: strides, anchors, box coding, NMS)."""
        raise NotImplementedError


class CenterNetFamily(DetectorFamily):
    loss_keys = CENTERNET_LOSS_KEYS
    export_outputs = ("heatmap", "offset", "size")
    has_heatmap = True
    default_loss = "mfl"  # with loss.mask's default, peak: CenterNet's own loss exactly, and
    # MFL's options (loss.mask=gaussian ...) stay live for the ablations
    ignores: ClassVar[dict[str, str]] = {
        "loss.target_map": "CenterNet's heatmap is always Gaussian (binary maps are FCOS's "
                           "and RetinaNet's focal-loss special case)",
        "model.head_convs": "CenterNet's heads have one 3x3 conv; head_convs is FCOS's and "
                            "RetinaNet's",
        "decode.nms_threshold": "CenterNet decodes by max-pool peaks, not NMS",
    }

    def heatmap_loss(self) -> MaskFocalLossConfig:
        """The heatmap loss: CenterNet's own (MFL's ``centernet`` preset) or the configured
        MFL."""
        loss = self.spec.loss
        return LOSS_PRESETS["centernet"] if loss.name == "native" else mfl_options(loss)

    def build(self, *, pretrained: bool = True) -> nn.Module:
        model = self.spec.model
        loss = self.spec.loss
        return CenterNet(self.backbone(pretrained=pretrained),
                         neck_channels=model.neck_channels, head_channels=model.head_channels,
                         size_head=model.size_head, stride=model.output_stride,
                         loss=CenterNetLoss(self.heatmap_loss(), spread_rule(loss),
                                            heatmap_weight=loss.heatmap_weight,
                                            offset_weight=loss.offset_weight,
                                            size_weight=loss.size_weight))

    @property
    def stride(self) -> int:
        return self.spec.model.output_stride

    def decoder(self) -> nn.Module:
        return nn.Module()  # peaks are decoded from the maps alone

    def decode(self, model, outputs, valid_sizes, *, threshold):
        decode = self.spec.decode
        return decode_centernet(outputs, threshold=threshold, stride=self.stride,
                                peak_window=decode.peak_window,
                                max_detections=decode.max_detections,
                                image_sizes=list(valid_sizes))

    def heatmaps(self, outputs, valid_sizes):
        stride = self.stride
        probabilities = torch.sigmoid(outputs["heatmap"][:, 0].float()).cpu().numpy()
        return [probabilities[b, :-(-h // stride), :-(-w // stride)]
                for b, (h, w) in enumerate(valid_sizes)]

    def export_names(self, model):
        return tuple(name for name in self.export_outputs if name in model.heads)

    def export_forward(self, model, images):
        return model(images)

    def from_exported(self, model, outputs, image_size, batch):
        return outputs


class BoxFamily(DetectorFamily):
    """torchvision's box detectors: they compute their own losses and detections."""

    builder: ClassVar[str]
    """The function of :mod:`maskfocal.models.detectors` that builds the model."""
    decoder_builder: ClassVar[str]
    """The one that builds its post-processing alone (:meth:`decoder`)."""
    # FCOS at convergence: count level with MFL, F1 better (docs/experiments/mfl.md)
    default_loss = "native"
    ignores: ClassVar[dict[str, str]] = {
        "loss.mask": "FCOS and RetinaNet use their own assignment as MFL's positive mask",
        "loss.tau": "loss.tau is the gaussian mask's threshold, which FCOS and RetinaNet do not "
                    "use (their own assignment is the mask)",
        "loss.heatmap_weight": "FCOS and RetinaNet weight their losses themselves",
        "loss.offset_weight": "FCOS and RetinaNet have no offset head",
        "loss.size_weight": "FCOS and RetinaNet have no size head",
        "model.size_head": "FCOS and RetinaNet always regress boxes",
        "model.output_stride": "FCOS and RetinaNet predict on their pyramid's strides (4 to 64)",
        "decode.peak_window": "FCOS and RetinaNet decode with NMS, not max-pool peaks",
    }

    def validate(self) -> None:
        channels = self.spec.model.neck_channels
        if channels % 32:
            raise MaskfocalError(f"model.neck_channels={channels}: {self.spec.model.name}'s "
                                 "heads use GroupNorm with 32 groups, so it must be a multiple "
                                 "of 32")

    def ignored_keys(self) -> dict[str, str]:
        ignored = super().ignored_keys()
        if self.spec.loss.name == "native":
            why = "loss.name=native is torchvision's stock focal loss, on binary targets"
            ignored.update(dict.fromkeys(("loss.target_map", *SPREAD_KEYS), why))
        return ignored

    def build(self, *, pretrained: bool = True) -> nn.Module:
        from maskfocal.models import detectors

        spec = self.spec
        mfl = None
        if spec.loss.name == "mfl":  # the detector's own assignment is the positive mask
            mfl = dataclasses.replace(mfl_options(spec.loss), mask="assigned")
        return getattr(detectors, self.builder)(
            self.backbone(pretrained=pretrained), channels=spec.model.neck_channels,
            head_convs=spec.model.head_convs,
            mfl=mfl, binary=spec.loss.target_map == "binary",
            spread=spread_rule(spec.loss), score_floor=SCORE_FLOOR,
            nms_threshold=spec.decode.nms_threshold)

    min_side = 128  # at stride 64 a side needs two cells: GroupNorm refuses one per group

    def decode(self, model, outputs, valid_sizes, *, threshold):
        return boxes_to_detections(outputs, valid_sizes, threshold=threshold)

    def decoder(self) -> nn.Module:
        from maskfocal.models import detectors

        return getattr(detectors, self.decoder_builder)(
            score_floor=SCORE_FLOOR, nms_threshold=self.spec.decode.nms_threshold)

    def candidate_floor(self, model, floor):
        previous = model.score_thresh  # torchvision filters inside, before NMS
        model.score_thresh = floor
        return previous

    def export_forward(self, model, images):
        normalised = model.transform.normalize(images)
        features = list(model.backbone(normalised).values())
        return model.head(features)

    def from_exported(self, model, outputs, image_size, batch):
        from maskfocal.models.detectors import PYRAMID_STRIDES

        return box_postprocess(model, outputs, image_size, batch, PYRAMID_STRIDES)


class FCOSFamily(BoxFamily):
    builder = "build_fcos"
    decoder_builder = "fcos_decoder"
    loss_keys = ("loss_classification", "loss_box", "loss_centerness")
    export_outputs = ("cls_logits", "bbox_regression", "bbox_ctrness")


class RetinaNetFamily(BoxFamily):
    builder = "build_retinanet"
    decoder_builder = "retinanet_decoder"
    loss_keys = ("loss_classification", "loss_box")
    export_outputs = ("cls_logits", "bbox_regression")


class FasterRCNNFamily(BoxFamily):
    """torchvision's two-stage Faster R-CNN: MFL (``loss.name=mfl``) is its RPN's objectness
    loss over the RPN's own assignment; the RoI head keeps its cross-entropy and box loss."""

    builder = "build_faster_rcnn"
    loss_keys = ("loss_classifier", "loss_box", "loss_objectness", "loss_rpn_box")
    export_outputs = ()
    ignores: ClassVar[dict[str, str]] = {
        **BoxFamily.ignores,
        "loss.mask": "Faster R-CNN's RPN uses its own assignment as MFL's positive mask",
        "loss.tau": "loss.tau is the gaussian mask's threshold, which Faster R-CNN's RPN does "
                    "not use (its own assignment is the mask)",
        "loss.heatmap_weight": "Faster R-CNN weights its losses itself",
        "loss.offset_weight": "Faster R-CNN has no offset head",
        "loss.size_weight": "Faster R-CNN has no size head",
        "model.size_head": "Faster R-CNN always regresses boxes",
        "model.head_convs": "Faster R-CNN's RoI head is two fully connected layers, not conv "
                            "branches",
        "model.output_stride": "Faster R-CNN proposes on its pyramid's strides (4 to 64)",
        "decode.peak_window": "Faster R-CNN decodes with NMS, not max-pool peaks",
    }

    def validate(self) -> None:
        """No GroupNorm in its heads: any neck width builds."""

    def candidate_floor(self, model, floor):
        previous = model.roi_heads.score_thresh
        model.roi_heads.score_thresh = floor
        return previous

    export_refusal = (
        "faster_rcnn is not exported to ONNX: its second stage runs on proposals whose number "
        "depends on the image (the RPN's NMS and top-k inside the graph), so the graph would "
        "not be the fixed head-outputs graph every other family exports; count with the "
        "checkpoint itself, or export centernet, fcos or retinanet")

    def decoder(self) -> nn.Module:
        raise MaskfocalError(self.export_refusal)

    def export_forward(self, model, images):
        raise MaskfocalError(self.export_refusal)

    def from_exported(self, model, outputs, image_size, batch):
        raise MaskfocalError(self.export_refusal)


FAMILIES: dict[str, type[DetectorFamily]] = {
    "centernet": CenterNetFamily,
    "fcos": FCOSFamily,
    "retinanet": RetinaNetFamily,
    "faster_rcnn": FasterRCNNFamily,
}
"""``model.name`` -> its family; the vocabulary of ``model.name``."""


def family_for(spec: DetectorSpec) -> DetectorFamily:
    """The family of ``spec.model.name``, bound to ``spec`` (a :class:`DetectorSpec` or a
    training config)."""
    try:
        return FAMILIES[spec.model.name](spec)
    except KeyError:
        raise MaskfocalError(f"model.name: {spec.model.name!r} is not one of: "
                             f"{', '.join(FAMILIES)}") from None


def build_model(spec: DetectorSpec, *, pretrained: bool = True) -> nn.Module:
    """The detector a spec (or config) names, with the loss it asks for (see
    :meth:`DetectorFamily.build`)."""
    return family_for(spec).build(pretrained=pretrained)
