"""Gaussian heatmaps and positive masks (``shared/MFL.md``, "Symbols").

``Y(x) = max_i exp(-|x - c_i|^2 / (2 s_i^2))``: one Gaussian per head centred on its peak pixel
``(floor(x_i), floor(y_i))``, which holds exactly 1; overlaps merge by max, not sum. Rendering is
vectorised over heads: heads are grouped by window size and every window of a group is scattered
into the map at once with an ``amax`` reduction, so there is no Python loop per head.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["HEATMAP_MASKS", "MASK_KINDS", "box_mask", "gaussian_heatmap", "gaussian_heatmaps",
           "multilevel_heatmaps", "positive_mask"]

HEATMAP_MASKS = ("peak", "gaussian", "box")
"""``loss.mask``: MFL's positive masks on a heatmap (CenterNet)."""
MASK_KINDS = (*HEATMAP_MASKS, "assigned")
"""Every positive mask: the heatmap masks and a box detector's own assignment."""
CUTOFF_SIGMAS = 3.0  # values farther than 3 sigma (per axis) from the peak are 0


def _as_sigma_pairs(sigmas: Tensor | Sequence, num_heads: int, device: torch.device) -> Tensor:
    sigmas = torch.as_tensor(sigmas, dtype=torch.float32, device=device)
    if sigmas.ndim == 0:
        sigmas = sigmas.expand(num_heads)
    if sigmas.ndim == 1:
        sigmas = sigmas[:, None].expand(-1, 2)
    if sigmas.shape != (num_heads, 2):
        raise ValueError(f"sigmas must have shape (N,) or (N, 2) for N = {num_heads} heads, "
                         f"got {tuple(sigmas.shape)}")
    if num_heads and not bool((sigmas > 0).all()):
        raise ValueError("every sigma must be positive")
    return sigmas


def _render_flat(peaks: Tensor, sigmas: Tensor, slots: Tensor, height: int, width: int,
                 num_slots: int) -> Tensor:
    """Max-merge the Gaussians of all heads into ``num_slots`` (height, width) maps.

    ``peaks``: (N, 2) integer peak pixels (x, y), all inside the map; ``sigmas``: (N, 2);
    ``slots``: (N,) which map each head belongs to. Returns (num_slots, height, width).

    The maps are drawn on a canvas padded by the largest window radius, so that no window needs
    a bounds check, then cropped. Each window is the outer product of two 1-D Gaussians.
    """
    device = peaks.device
    if len(peaks) == 0:
        return torch.zeros(num_slots, height, width, dtype=torch.float32, device=device)
    radii = torch.ceil(CUTOFF_SIGMAS * sigmas).long()  # (N, 2) window half-sizes rx, ry
    pad = int(radii.max())
    padded_h, padded_w = height + 2 * pad, width + 2 * pad
    canvas = torch.zeros(num_slots * padded_h * padded_w, dtype=torch.float32, device=device)
    # Sort heads by window size (rx, ry) so that each size is one contiguous slice.
    order = torch.argsort(radii[:, 0] * (pad + 1) + radii[:, 1])
    radii, sigmas = radii[order], sigmas[order]
    peak_row = (slots[order] * padded_h + peaks[order, 1] + pad) * padded_w  # (N,)
    peak_col = peaks[order, 0] + pad  # (N,)
    counts = torch.unique_consecutive(radii[:, 0] * (pad + 1) + radii[:, 1],
                                      return_counts=True)[1]
    start = 0
    for count in counts.tolist():  # one pass per window size, not per head
        group = slice(start, start + count)
        rx, ry = radii[start].tolist()
        start += count
        dx = torch.arange(-rx, rx + 1, device=device)
        dy = torch.arange(-ry, ry + 1, device=device)
        inv_x = -0.5 / sigmas[group, 0:1] ** 2  # (n, 1)
        inv_y = -0.5 / sigmas[group, 1:2] ** 2
        gx = torch.exp(dx.square() * inv_x)  # (n, wx), 1 at dx = 0
        gy = torch.exp(dy.square() * inv_y)  # (n, wy)
        values = gy[:, :, None] * gx[:, None, :]  # (n, wy, wx); exactly 1 at the peak
        rows = peak_row[group, None] + dy * padded_w  # (n, wy)
        cols = peak_col[group, None] + dx  # (n, wx)
        index = rows[:, :, None] + cols[:, None, :]  # (n, wy, wx)
        canvas.scatter_reduce_(0, index.view(-1), values.view(-1), reduce="amax")
    canvas = canvas.view(num_slots, padded_h, padded_w)
    return canvas[:, pad:pad + height, pad:pad + width].contiguous()


def _peaks_inside(centers: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Integer peak pixels (N, 2) and the (N,) mask of heads whose peak lies in the map."""
    peaks = torch.floor(centers).long()
    inside = ((peaks[:, 0] >= 0) & (peaks[:, 0] < width)
              & (peaks[:, 1] >= 0) & (peaks[:, 1] < height))
    return peaks, inside


@torch.no_grad()
def gaussian_heatmap(centers: Tensor | Sequence, sigmas: Tensor | Sequence | float,
                     height: int, width: int) -> Tensor:
    """The Gaussian heatmap Y of one image, (height, width) float32.

    Args:
        centers: (N, 2) head centres x, y in feature-map pixels.
        sigmas: (N,) isotropic or (N, 2) (sigma_x, sigma_y) spreads in feature-map pixels.
        height, width: the map size.

    The peak pixel of head i is ``(floor(x_i), floor(y_i))`` and holds exactly 1.0; heads whose
    peak falls outside the map are skipped; values beyond 3 sigma on an axis are 0.
    """
    centers = torch.as_tensor(centers, dtype=torch.float32).reshape(-1, 2)
    sigmas = _as_sigma_pairs(sigmas, len(centers), centers.device)
    peaks, inside = _peaks_inside(centers, height, width)
    slots = torch.zeros(int(inside.sum()), dtype=torch.long, device=centers.device)
    return _render_flat(peaks[inside], sigmas[inside], slots, height, width, 1)[0]


@torch.no_grad()
def gaussian_heatmaps(centers_per_image: Sequence[Tensor], sigmas_per_image: Sequence[Tensor],
                      height: int, width: int) -> Tensor:
    """Heatmaps of a batch, (B, height, width): every head of every image in one pass."""
    if len(centers_per_image) != len(sigmas_per_image):
        raise ValueError("need one sigma tensor per image")
    centers, sigmas, slots = [], [], []
    for slot, (c, s) in enumerate(zip(centers_per_image, sigmas_per_image, strict=True)):
        c = torch.as_tensor(c, dtype=torch.float32).reshape(-1, 2)
        centers.append(c)
        sigmas.append(_as_sigma_pairs(s, len(c), c.device))
        slots.append(torch.full((len(c),), slot, dtype=torch.long, device=c.device))
    if not centers:
        return torch.zeros(0, height, width)
    centers_all, sigmas_all, slots_all = torch.cat(centers), torch.cat(sigmas), torch.cat(slots)
    peaks, inside = _peaks_inside(centers_all, height, width)
    return _render_flat(peaks[inside], sigmas_all[inside], slots_all[inside], height, width,
                        len(centers_per_image))


@torch.no_grad()
def multilevel_heatmaps(centers: Tensor | Sequence, sigmas: Tensor | Sequence,
                        image_height: int, image_width: int,
                        strides: Sequence[int]) -> list[Tensor]:
    """Heatmaps of one image on every pyramid level: a list of (ceil(H/s), ceil(W/s)).

    ``centers`` and ``sigmas`` are in image pixels; on a level of stride s both are divided by s.
    """
    centers = torch.as_tensor(centers, dtype=torch.float32).reshape(-1, 2)
    sigmas = _as_sigma_pairs(sigmas, len(centers), centers.device)
    maps = []
    for stride in strides:
        height = -(-image_height // stride)
        width = -(-image_width // stride)
        maps.append(gaussian_heatmap(centers / stride, sigmas / stride, height, width))
    return maps


@torch.no_grad()
def box_mask(boxes: Tensor | Sequence, height: int, width: int, stride: int = 1) -> Tensor:
    """(height, width) bool: locations whose pixel centre lies inside any box (N, 4) x1y1x2y2.

    Box coordinates are in image pixels; location (i, j) has centre ((j + 0.5) s, (i + 0.5) s).
    """
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    mask = torch.zeros(height, width, dtype=torch.bool, device=boxes.device)
    if len(boxes) == 0:
        return mask
    xs = (torch.arange(width, device=boxes.device) + 0.5) * stride
    ys = (torch.arange(height, device=boxes.device) + 0.5) * stride
    # Column and row ranges per box, then a difference image summed into coverage counts.
    left, top, right, bottom = boxes.T.contiguous()  # searchsorted wants contiguous values
    x0 = torch.searchsorted(xs, left, right=False)
    x1 = torch.searchsorted(xs, right, right=True)
    y0 = torch.searchsorted(ys, top, right=False)
    y1 = torch.searchsorted(ys, bottom, right=True)
    valid = (x1 > x0) & (y1 > y0)
    x0, x1, y0, y1 = x0[valid], x1[valid], y0[valid], y1[valid]
    diff = torch.zeros(height + 1, width + 1, dtype=torch.int32, device=boxes.device)
    ones = torch.ones_like(x0, dtype=torch.int32)
    diff.index_put_((y0, x0), ones, accumulate=True)
    diff.index_put_((y0, x1), -ones, accumulate=True)
    diff.index_put_((y1, x0), -ones, accumulate=True)
    diff.index_put_((y1, x1), ones, accumulate=True)
    coverage = diff.cumsum(0).cumsum(1)[:height, :width]
    return coverage > 0


def positive_mask(kind: str, heatmap: Tensor, *, tau: float = 0.5, boxes: Tensor | None = None,
                  stride: int = 1, assigned: Tensor | None = None) -> Tensor:
    """The area-based positive mask M, bool, shaped like ``heatmap`` (MFL.md, "Symbols").

    ``peak``: Y == 1 (one pixel per head); ``gaussian``: Y >= tau; ``box``: inside a head box
    (``boxes`` in image pixels, ``stride`` of this map; 2-D maps only); ``assigned``: the
    detector's own positive set, passed as ``assigned``.
    """
    if kind == "peak":
        return heatmap == 1
    if kind == "gaussian":
        if not 0 < tau <= 1:
            raise ValueError(f"tau must be in (0, 1], got {tau}")
        return heatmap >= tau
    if kind == "box":
        if boxes is None:
            raise ValueError("mask 'box' needs boxes")
        return box_mask(boxes, heatmap.shape[-2], heatmap.shape[-1], stride).to(heatmap.device)
    if kind == "assigned":
        if assigned is None:
            raise ValueError("mask 'assigned' needs the detector's assigned positives")
        if assigned.shape != heatmap.shape:
            raise ValueError(f"assigned mask shape {tuple(assigned.shape)} differs from the "
                             f"heatmap's {tuple(heatmap.shape)}")
        return assigned.bool()
    raise ValueError(f"unknown mask {kind!r}; choose one of: {', '.join(MASK_KINDS)}")
