"""Encode the ground truth, feed it back as a perfect prediction, recover the same heads."""

from __future__ import annotations

import torch

from maskfocal.decode import decode_centernet
from maskfocal.targets.centernet import encode_centernet


def perfect_outputs(targets, shape):
    batch, height, width = shape
    eps = 1e-6
    heatmap = torch.logit(targets.heatmap.clamp(eps, 1 - eps))
    offset = torch.zeros(batch * height * width, 2)  # channels last, flat over the batch
    size = torch.zeros(batch * height * width, 2)
    flat = targets.batch_index * height * width + targets.peak_index
    offset[flat] = targets.offset
    size[flat] = targets.size

    def channels_first(values):
        return values.view(batch, height, width, 2).permute(0, 3, 1, 2)

    return {"heatmap": heatmap, "offset": channels_first(offset), "size": channels_first(size)}


def test_round_trip_recovers_points_and_boxes_including_empty():
    generator = torch.Generator().manual_seed(0)
    # Heads on a jittered grid, well apart, as in a real crowd of distinct heads.
    grid = torch.stack(torch.meshgrid(torch.arange(6), torch.arange(5), indexing="xy"),
                       -1).reshape(-1, 2).float()
    points = grid * 20 + 8 + torch.rand(grid.shape, generator=generator) * 6
    sizes = 6 + torch.rand(len(points), 2, generator=generator) * 8
    boxes = torch.cat([points - sizes / 2, points + sizes / 2], dim=1)
    targets = encode_centernet([points, torch.zeros(0, 2)], [boxes, torch.zeros(0, 4)],
                               [True, True], 128, 128)
    outputs = perfect_outputs(targets, (2, 32, 32))
    found, empty = decode_centernet(outputs, threshold=0.5)
    assert empty.count == 0
    assert found.count == len(points)
    def grid_order(xy):  # heads sit in 20 px grid cells: sort by cell
        return torch.argsort(torch.div(xy[:, 0], 20, rounding_mode="floor") * 1000
                             + torch.div(xy[:, 1], 20, rounding_mode="floor"))

    order, expected = grid_order(found.points), grid_order(points)
    torch.testing.assert_close(found.points[order], points[expected], atol=1e-4, rtol=0)
    torch.testing.assert_close(found.boxes[order], boxes[expected], atol=1e-4, rtol=0)


def test_one_peak_per_isolated_head_with_wide_mask():
    # A perfect prediction of a wide Gaussian still gives one peak per head under 3x3 pooling.
    points = torch.tensor([[30.0, 30.0], [90.0, 60.0]])
    boxes = torch.cat([points - 30, points + 30], dim=1)  # large heads: wide Gaussians
    targets = encode_centernet([points], [boxes], [True], 128, 128)
    found = decode_centernet(perfect_outputs(targets, (1, 32, 32)), threshold=0.05)[0]
    assert found.count == 2


def test_no_cap_below_ten_thousand():
    heatmap = torch.full((1, 1, 256, 256), -10.0)
    heatmap[0, 0, ::2, ::2] = 5.0  # 16,384 isolated peaks
    outputs = {"heatmap": heatmap, "offset": torch.zeros(1, 2, 256, 256)}
    found = decode_centernet(outputs, threshold=0.5, max_detections=20000)[0]
    assert found.count == 128 * 128
    assert decode_centernet(outputs, threshold=0.5)[0].count == 10000
