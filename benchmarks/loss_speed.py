"""mask_focal_loss forward + backward against CenterNet's loss written plainly.

    .venv/bin/python benchmarks/loss_speed.py [--shape 8 1 256 256]

The baseline is CenterNet's ``_neg_loss`` (src/lib/models/losses.py) on clamped sigmoid
probabilities, the way CenterNet computes it. Both run on the same logits and heatmap in this
process; the ratio is ours / baseline (target: at most 1.3).
"""

from __future__ import annotations

import argparse
import time

import torch

from maskfocal.losses import LOSS_PRESETS, mask_focal_loss
from maskfocal.targets import gaussian_heatmaps, point_sigmas


def centernet_neg_loss(logits: torch.Tensor, heatmap: torch.Tensor) -> torch.Tensor:
    """CenterNet's focal loss, as in its code: sigmoid, clamp, log of the probabilities."""
    pred = torch.clamp(torch.sigmoid(logits), min=1e-4, max=1 - 1e-4)
    pos_inds = heatmap.eq(1).float()
    neg_inds = heatmap.lt(1).float()
    neg_weights = torch.pow(1 - heatmap, 4)
    pos_loss = (torch.log(pred) * torch.pow(1 - pred, 2) * pos_inds).sum()
    neg_loss = (torch.log(1 - pred) * torch.pow(pred, 2) * neg_weights * neg_inds).sum()
    num_pos = pos_inds.sum()
    return -(pos_loss + neg_loss) / num_pos.clamp(min=1)


def time_backward(function, logits: torch.Tensor, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        z = logits.detach().requires_grad_(True)
        start = time.perf_counter()
        function(z).backward()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", type=int, nargs=4, default=[8, 1, 256, 256])
    parser.add_argument("--heads", type=int, default=300, help="heads per image")
    parser.add_argument("--repeats", type=int, default=31)
    args = parser.parse_args()
    torch.manual_seed(0)
    batch, channels, height, width = args.shape
    centers = [torch.rand(args.heads, 2) * torch.tensor([width, height]) for _ in range(batch)]
    sigmas = [torch.from_numpy(point_sigmas(c.numpy(), min_sigma=0.7, max_sigma=6))
              for c in centers]
    heatmap = gaussian_heatmaps(centers, sigmas, height, width)[:, None].expand(
        -1, channels, -1, -1).contiguous()
    logits = torch.randn(args.shape) - 2
    options = LOSS_PRESETS["mfl"]
    mask = heatmap >= options.tau

    def ours(z):
        return mask_focal_loss(z, heatmap, mask, **options.loss_options())

    def plain(z):
        return centernet_neg_loss(z, heatmap)

    for function in (ours, plain):  # warm up
        time_backward(function, logits, 3)
    baseline = time_backward(plain, logits, args.repeats)
    mfl = time_backward(ours, logits, args.repeats)
    print(f"shape {tuple(args.shape)}, {args.heads} heads per image, median of {args.repeats}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"CenterNet loss (plain)      {baseline * 1e3:8.2f} ms")
    print(f"mask_focal_loss (mfl)       {mfl * 1e3:8.2f} ms")
    print(f"ratio mfl / plain           {mfl / baseline:8.2f}x   (target <= 1.3x)")


if __name__ == "__main__":
    main()
