"""FCOS and RetinaNet: MFL's binary special case equals torchvision's stock loss; Gaussian MFL
is finite and trains; empty images."""

from __future__ import annotations

import pytest
import torch

from maskfocal.losses.mask_focal import LOSS_PRESETS
from maskfocal.models.backbones import Backbone
from maskfocal.models.detectors import build_fcos, build_retinanet
from maskfocal.targets.anchors import anchor_heatmap_values, level_sizes, strides_of_anchors
from maskfocal.targets.centernet import SpreadRule

BUILDERS = {"fcos": build_fcos, "retinanet": build_retinanet}


def batch():
    generator = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 128, 128, generator=generator) for _ in range(3)]
    corners = torch.rand(5, 2, generator=generator) * 100
    sizes = 6 + torch.rand(5, 2, generator=generator) * 20
    targets = [
        {"boxes": torch.cat([corners, corners + sizes], dim=1), "labels": torch.zeros(5).long()},
        {"boxes": torch.tensor([[40.0, 40.0, 52.0, 54.0]]), "labels": torch.zeros(1).long()},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0).long()},  # an empty image
    ]
    return images, targets


def losses_and_grads(model, images, targets):
    torch.manual_seed(0)
    model.train()
    model.zero_grad()
    losses = model(images, targets)
    losses["loss_classification"].backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return losses, grads


@pytest.mark.parametrize("name", ["fcos", "retinanet"])
def test_binary_special_case_equals_stock_loss(name):
    torch.manual_seed(0)
    model = BUILDERS[name](Backbone("resnet18"), channels=32)
    images, targets = batch()
    stock, stock_grads = losses_and_grads(model, images, targets)
    torch.manual_seed(0)  # the same weights, the loss given to the head's constructor
    model = BUILDERS[name](Backbone("resnet18"), channels=32, mfl=LOSS_PRESETS["focal"],
                           binary=True)
    ours, our_grads = losses_and_grads(model, images, targets)
    torch.testing.assert_close(ours["loss_classification"], stock["loss_classification"],
                               rtol=1e-5, atol=1e-6)
    for key in stock:  # regression and centerness are untouched
        torch.testing.assert_close(ours[key], stock[key], rtol=1e-5, atol=1e-6)
    assert stock_grads.keys() == our_grads.keys()
    for key, grad in stock_grads.items():
        torch.testing.assert_close(our_grads[key], grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["fcos", "retinanet"])
def test_gaussian_mfl_differs_is_finite_and_reaches_every_head_parameter(name):
    torch.manual_seed(0)
    model = BUILDERS[name](Backbone("resnet18"), channels=32, mfl=LOSS_PRESETS["mfl"])
    images, targets = batch()
    losses, grads = losses_and_grads(model, images, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    head_params = [n for n, p in model.named_parameters() if n.startswith("head.classification")]
    assert head_params and all(n in grads for n in head_params)
    empty = model(images[2:], targets[2:])
    assert all(torch.isfinite(v) for v in empty.values())
    assert empty["loss_box"] == 0


def test_anchor_heatmap_matches_per_level_heatmap():
    sizes = ((8.0,), (16.0,))
    table = level_sizes(sizes, (4, 8))
    anchors = torch.tensor([[-4.0, -4.0, 4.0, 4.0], [36.0, 36.0, 44.0, 44.0],
                            [32.0, 32.0, 48.0, 48.0]])
    strides = strides_of_anchors(anchors, table)
    assert strides.tolist() == [4, 4, 8]
    centers = (anchors[:, :2] + anchors[:, 2:]) / 2
    boxes = torch.tensor([[36.0, 36.0, 44.0, 44.0]])  # a head centred on (40, 40)
    values = anchor_heatmap_values(centers, strides, boxes, True, SpreadRule())
    assert values[0] == 0 and values[1] == 1.0 and values[2] == 1.0  # peaks on both levels


@pytest.mark.parametrize("per_image", [False, True])
def test_mfl_renders_each_image_and_level_as_anchor_heatmap_values(per_image):
    """The batch's Y, rendered on the host in one go, is each image's ``anchor_heatmap_values``
    over its own non-ignored anchors: ignored anchors (-2), an empty image, point spreads."""
    from maskfocal.losses.detector import detector_classification_loss
    from maskfocal.losses.mask_focal import MaskFocalLossConfig, mask_focal_loss

    table = level_sizes(((16.0,), (32.0,)), (8, 16))
    anchors = []
    for size, stride in table.items():
        ys, xs = torch.meshgrid(torch.arange(0.0, 96, stride), torch.arange(0.0, 128, stride),
                                indexing="ij")
        centers = torch.stack([xs.flatten(), ys.flatten()], dim=1)
        anchors.append(torch.cat([centers - size / 2, centers + size / 2], dim=1))
    anchors = torch.cat(anchors)
    _, targets = batch()
    targets[1]["real_boxes"] = torch.tensor(False)
    generator = torch.Generator().manual_seed(1)
    matched = [torch.randint(-2, max(1, len(t["boxes"])), (len(anchors),), generator=generator)
               if len(t["boxes"]) else torch.full((len(anchors),), -1) for t in targets]
    logits = torch.randn(len(targets), len(anchors), 1, generator=generator)
    options = MaskFocalLossConfig(weight_power=2.0)
    loss = detector_classification_loss(logits, targets, [anchors] * len(targets), matched,
                                        options, size_to_stride=table, rule=SpreadRule(),
                                        per_image=per_image)
    parts = []
    for z, target, m in zip(logits, targets, matched, strict=True):
        valid = m != -2
        kept = anchors[valid]
        y = anchor_heatmap_values((kept[:, :2] + kept[:, 2:]) / 2,
                                  strides_of_anchors(kept, table), target["boxes"],
                                  bool(target.get("real_boxes", True)), SpreadRule())
        parts.append((z[valid, 0], y, (m >= 0)[valid], len(target["boxes"])))
    if per_image:
        expected = torch.stack([mask_focal_loss(z, y, f, num_objects=n, **options.loss_options())
                                for z, y, f, n in parts]).mean()
    else:
        expected = mask_focal_loss(*(torch.cat([p[i] for p in parts]) for i in range(3)),
                                   num_objects=sum(p[3] for p in parts),
                                   **options.loss_options())
    assert torch.isfinite(loss) and torch.equal(loss, expected)
