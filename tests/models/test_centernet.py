from __future__ import annotations

import pytest
import torch

from maskfocal.config import Config, LossConfig
from maskfocal.errors import MaskfocalError
from maskfocal.families import CenterNetFamily
from maskfocal.losses import centernet_losses
from maskfocal.models import CenterNet, build_classifier
from maskfocal.targets.centernet import encode_centernet


def heatmap_loss(name: str = "mfl"):
    return CenterNetFamily(Config(loss=LossConfig(name=name))).heatmap_loss()


def tiny_batch():
    points = [torch.tensor([[10.0, 12.0], [40.5, 30.2], [50.0, 8.0]]), torch.zeros(0, 2)]
    boxes = [torch.cat([p - 4, p + 4], dim=1) for p in points]
    return points, boxes


@pytest.mark.parametrize("backbone", ["resnet18", "mobilenet_v3_large", "vgg16_bn"])
@pytest.mark.parametrize("loss_name", ["native", "mfl"])
def test_every_parameter_gets_a_gradient_and_outputs_are_finite(backbone, loss_name):
    torch.manual_seed(0)
    model = CenterNet(backbone_name=backbone, neck_channels=16, head_channels=8)
    images = torch.rand(2, 3, 64, 64)
    outputs = model(images)
    assert outputs["heatmap"].shape == (2, 1, 16, 16)
    assert outputs["offset"].shape == (2, 2, 16, 16) and outputs["size"].shape == (2, 2, 16, 16)
    points, boxes = tiny_batch()
    targets = encode_centernet(points, boxes, [True, True], 64, 64)
    losses = centernet_losses(outputs, targets, heatmap_loss(loss_name))
    assert tuple(losses) == ("loss_heatmap", "loss_offset", "loss_size")  # pinned keys
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    missing = [name for name, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())]
    # With a whole image of zeros-free random input every parameter takes part.
    assert not missing


def test_heatmap_bias_starts_at_the_prior():
    model = CenterNet(neck_channels=16, head_channels=8)
    assert model.heads["heatmap"][-1].bias.item() == pytest.approx(-2.1972, abs=1e-4)


def test_empty_batch_gives_finite_loss_and_zero_regression():
    model = CenterNet(neck_channels=16, head_channels=8)
    outputs = model(torch.rand(1, 3, 64, 64))
    targets = encode_centernet([torch.zeros(0, 2)], [torch.zeros(0, 4)], [False], 64, 64)
    losses = centernet_losses(outputs, targets, heatmap_loss())
    assert torch.isfinite(losses["loss_heatmap"]) and losses["loss_heatmap"] > 0
    assert losses["loss_offset"] == 0 and losses["loss_size"] == 0


def test_weights_from_a_local_file(tmp_path):
    torch.manual_seed(1)
    reference = build_classifier("resnet18")
    path = tmp_path / "r18.pth"
    torch.save(reference.state_dict(), path)
    loaded = build_classifier("resnet18", str(path))
    assert torch.equal(loaded.conv1.weight, reference.conv1.weight)
    torch.save({"not": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(MaskfocalError, match="not resnet18 weights"):
        build_classifier("resnet18", str(tmp_path / "bad.pth"))
    with pytest.raises(MaskfocalError, match="unknown weights"):
        build_classifier("resnet18", "NoSuch_Weights.V9")
