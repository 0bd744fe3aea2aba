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


def test_stride_two_output_trains_and_decodes_what_stride_four_merges():
    """Two heads 3 px apart share a stride-4 cell; at stride 2 both come back."""
    from maskfocal.config import load_config
    from maskfocal.data.transforms import Sample
    from maskfocal.decode import decode_centernet
    from maskfocal.families import build_model, family_for

    config = load_config(None, ["model.output_stride=2", "model.neck_channels=16",
                                "model.head_channels=8"])
    family = family_for(config)
    model = build_model(config)
    assert family.stride == 2 and model(torch.rand(1, 3, 64, 64))["heatmap"].shape == (
        1, 1, 32, 32)
    points = torch.tensor([[20.0, 20.0], [23.0, 20.0]])
    sample = Sample(torch.rand(3, 64, 64), points, torch.cat([points - 3, points + 3], 1), True)
    from maskfocal.data.training import detection_targets

    losses = model.train()(sample.image[None], detection_targets([sample]))
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.upsample.parameters())
    from tests.decode.test_centernet_round_trip import perfect_outputs

    found = {}
    for stride in (4, 2):
        targets = encode_centernet([points], [sample.boxes], [True], 64, 64, stride=stride)
        outputs = perfect_outputs(targets, (1, 64 // stride, 64 // stride))
        found[stride] = decode_centernet(outputs, threshold=0.5, stride=stride)[0]
    assert found[2].count == 2 and found[4].count < 2
    torch.testing.assert_close(found[2].points[found[2].points[:, 0].argsort()], points,
                               atol=1e-4, rtol=0)
    with pytest.raises(MaskfocalError, match="output_stride must be"):
        load_config(None, ["model.output_stride=3"])
