"""Faster R-CNN: MFL as its RPN's objectness loss. The exact special case is torchvision's
binary cross-entropy over the RPN's sampled anchors; Gaussian MFL leaves the RoI head alone."""

from __future__ import annotations

import torch

from maskfocal.losses.detector import rpn_objectness_loss
from maskfocal.losses.mask_focal import LOSS_PRESETS, MaskFocalLossConfig
from maskfocal.models.backbones import Backbone
from maskfocal.models.detectors import build_faster_rcnn
from maskfocal.targets.centernet import SpreadRule
from tests.models.test_detectors import batch


def heads(targets):
    return [{**t, "labels": torch.ones(len(t["boxes"]), dtype=torch.int64)} for t in targets]


def test_bce_special_case_equals_torchvision_objectness_loss():
    """Over the anchors the RPN sampled, with binary Y, gamma 0, w 0, no alpha and the mean
    over anchors, MFL is torchvision's binary cross-entropy exactly (every other setting
    differs by design: MFL sees every labelled anchor)."""
    torch.manual_seed(0)
    model = build_faster_rcnn(Backbone("resnet18"), channels=32).train()
    rpn = model.rpn
    seen = {}
    sampler, compute_loss, assign = rpn.fg_bg_sampler, rpn.compute_loss, \
        rpn.assign_targets_to_anchors

    def sample(labels):
        seen["sampled"] = sampler(labels)
        return seen["sampled"]

    def loss(objectness, deltas, labels, regression):
        seen.update(objectness=objectness, labels=labels)
        seen["stock"] = compute_loss(objectness, deltas, labels, regression)[0]
        return seen["stock"], torch.zeros(())

    def assigned(anchors, targets):
        seen.update(anchors=anchors, targets=targets)
        return assign(anchors, targets)

    rpn.fg_bg_sampler, rpn.compute_loss, rpn.assign_targets_to_anchors = sample, loss, assigned
    images, targets = batch()
    model(images, heads(targets))
    positive, negative = seen["sampled"]
    sampled = [torch.where(p.bool() | n.bool(), labels, torch.full_like(labels, -1))
               for p, n, labels in zip(positive, negative, seen["labels"], strict=True)]
    bce = MaskFocalLossConfig(mask="assigned", gamma=0.0, weight_power=0.0, alpha=None,
                              normalizer="anchors")
    ours = rpn_objectness_loss(seen["objectness"], seen["targets"], seen["anchors"], sampled,
                               bce, size_to_stride={8.0: 4}, rule=SpreadRule(), binary=True)
    torch.testing.assert_close(ours, seen["stock"], rtol=1e-5, atol=1e-6)
    assert sum(int(p.sum()) for p in positive) > 0  # heads were among the sampled anchors


def test_mfl_replaces_only_the_objectness_loss_and_is_finite():
    images, targets = batch()
    results = {}
    for name, mfl in (("native", None), ("mfl", LOSS_PRESETS["mfl"])):
        torch.manual_seed(0)
        model = build_faster_rcnn(Backbone("resnet18"), channels=32, mfl=mfl).train()
        with torch.no_grad():  # the same start: MFL's prior bias is the one difference
            model.rpn.head.cls_logits.bias.zero_()
        torch.manual_seed(1)
        results[name] = model(images, heads(targets))
        results[name]["loss_objectness"].backward()
        head = model.rpn.head.cls_logits.weight.grad
        assert head is not None and torch.isfinite(head).all() and head.abs().sum() > 0
    native, mfl = results["native"], results["mfl"]
    assert all(torch.isfinite(v) for v in mfl.values())
    assert not torch.isclose(native["loss_objectness"], mfl["loss_objectness"])
    for key in ("loss_classifier", "loss_box", "loss_rpn_box"):  # RoI head, RPN boxes
        torch.testing.assert_close(mfl[key], native[key])


def test_mfl_starts_from_the_focal_prior_and_empty_images_train():
    torch.manual_seed(0)
    model = build_faster_rcnn(Backbone("resnet18"), channels=32, mfl=LOSS_PRESETS["mfl"])
    bias = model.rpn.head.cls_logits.bias
    assert torch.allclose(torch.sigmoid(bias), torch.full_like(bias, 0.01))
    images, targets = batch()
    empty = model.train()(images[2:], heads(targets[2:]))
    assert all(torch.isfinite(v) for v in empty.values())


def test_limits_keep_dense_crowds():
    from maskfocal.models.detectors import MIN_DETECTIONS, RPN_POST_NMS

    model = build_faster_rcnn(Backbone("resnet18"), channels=32).eval()
    assert model.rpn.post_nms_top_n() == RPN_POST_NMS["testing"] >= 3139  # SHA's densest
    assert model.roi_heads.detections_per_img == MIN_DETECTIONS
