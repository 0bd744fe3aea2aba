"""The one prediction path: a detector (eager, or an ONNX export) run over whole images or
their tiles, at the model's own input scale, decoded by its family.

Counting (:class:`~maskfocal.inference.Counter`, ``maskfocal count``, video, the web service),
``maskfocal eval``, training's validation and every benchmark go through :class:`Predictor`,
so that the same image, model and threshold give the same heads everywhere.
"""

from __future__ import annotations

import copy
import math
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from maskfocal.data.training import pad_batch
from maskfocal.data.transforms import fit_pixels, resize, to_tensor
from maskfocal.decode import SCORE_FLOOR, Detections
from maskfocal.device import select_device
from maskfocal.errors import MaskfocalError
from maskfocal.families import DetectorSpec, family_for
from maskfocal.structures import AnnotatedImage

from .options import AUTO_TARGET, InferenceOptions, check_tiling
from .scoring import Predictions
from .tiles import ALIGN, MERGE_RADIUS, Tile, in_core, merge_across_tiles, plan_tiles

__all__ = ["AUTO_SCALES", "AUTO_TARGET", "Predictor", "check_tiling"]

AUTO_SCALES = (1.0, 1.25, 1.5, 1.75, 2.0)
"""The scales a photo may be counted at with ``scale="auto"``."""
AUTO_MIN_HEADS = 5
"""Fewer heads than this in the first pass: no spacing to read; the fixed scale counts."""


def head_spacing(detections: Detections, threshold: float) -> float | None:
    """The median distance from each head found above ``threshold`` to its nearest neighbour
    (px of the photo), or None with fewer than :data:`AUTO_MIN_HEADS` heads."""
    kept = detections.above(threshold)
    if kept.count < AUTO_MIN_HEADS:
        return None
    from scipy.spatial import cKDTree

    points = kept.points.numpy()
    distance, _ = cKDTree(points).query(points, k=2)
    return max(float(np.median(distance[:, 1])), 1e-3)


class Predictor:
    """A detector with everything that decides what it sees: ``find(images, threshold)``.

    Every image is scaled by ``options.input_scale`` (the test-time scale chosen on
    validation), or, with ``options.scale_target`` set (``scale="auto"``), by a scale chosen
    per photo from its heads (:meth:`auto_scale`: a first pass at scale 1, then the scale of
    :data:`AUTO_SCALES` nearest to the target over the spacing of the heads it found). When
    the scaled image's longer side exceeds ``options.tile_above``, it is run in overlapping
    tiles of ``options.tile_size`` scaled pixels (the tiles are cut from the original and
    scaled one by one, so memory is bounded by a tile, whatever the photo); otherwise it is run
    whole, and scaled further down if its longer side would exceed ``options.max_eval_side``.

    Args:
        model: the detector; with ``runner`` it only decodes (strides, anchors, NMS).
        spec: what the detector is (:class:`~maskfocal.families.DetectorSpec`, or a training
            config, which has the same sections): its family decodes.
        options: the threshold, input scale, size cap and tiling
            (:class:`~maskfocal.inference.InferenceOptions`).
        device: where the model runs.
        runner: runs a padded (B, 3, H, W) batch and returns what ``model(batch)``
            would (:class:`maskfocal.inference.backend.OnnxRunner`); default: ``model`` itself.
        merge_radius: heads of two tiles closer than this (original pixels) are one head.
        batch_size: images per forward pass (and tiles, on CUDA; on a CPU one tile a pass).
        progress: a progress bar over the tiles of a tiled image.
        saved_config: the saved config it came with (what :attr:`config` reads when asked).
    """

    def __init__(self, model: nn.Module, spec: DetectorSpec, options: InferenceOptions,
                 device: torch.device | str = "cpu", *,
                 runner: Callable[[Tensor], object] | None = None,
                 merge_radius: float = MERGE_RADIUS, batch_size: int = 4,
                 progress: bool = False, saved_config: dict | None = None) -> None:
        if not merge_radius >= 0:
            raise MaskfocalError(f"merge radius must be >= 0, got {merge_radius}")
        if batch_size < 1:
            raise MaskfocalError(f"batch size must be at least 1, got {batch_size}")
        self.device = torch.device(device)
        self.model = model.eval() if runner is not None else model.eval().to(self.device)
        self.spec = spec
        self.options = options
        self.family = family_for(spec)
        self.runner = runner if runner is not None else self.model  # one path: call it
        self.merge_radius = merge_radius
        self.batch_size = batch_size
        self.progress = progress
        self.saved_config = saved_config

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto", *,
                        backend: str | None = None, merge_radius: float = MERGE_RADIUS,
                        batch_size: int = 4, progress: bool = False, **changes) -> Predictor:
        """A ``.pt`` checkpoint of ``maskfocal train``, ``.safetensors`` weights (the shipped
        kind) or a ``.onnx`` file of ``maskfocal export`` (run with ONNX Runtime), with the
        :class:`InferenceOptions` it carries, ``changes`` applied (``threshold``, ``scale``: a
        number or ``"auto"``, ``max_eval_side``, ``tile_above``, ``tile_size``, ``tile_overlap``;
        ``None`` keeps the model's). An invalid change is an error before the model loads.

        ``backend`` (:data:`maskfocal.device.BACKENDS`): ``auto`` runs ONNX Runtime on a CPU
        (the checkpoint exported once into the cache, :func:`maskfocal.export.open_backend`)
        and PyTorch on CUDA or for Faster R-CNN; ``torch`` or ``onnx`` insist; None:
        ``$MASKFOCAL_BACKEND``, else ``auto``."""
        if "input_scale" in changes:  # its name before the options had one home
            warnings.warn("input_scale= is now scale= (as the --scale flag)",
                          DeprecationWarning, stacklevel=2)
            changes["scale"] = changes.pop("input_scale")
        from maskfocal.export import open_backend

        InferenceOptions().replace(**changes)  # checked before the model loads (the backend
        loaded = open_backend(path, select_device(device), backend)  # is, in open_backend)
        return cls(loaded.model, loaded.spec, loaded.options.replace(**changes),
                   loaded.device, runner=loaded.runner, merge_radius=merge_radius,
                   batch_size=batch_size, progress=progress, saved_config=loaded.saved_config)

    @property
    def config(self):
        """The full config the model was trained with (the experiments read its data and
        splits): loaded from the saved one when first asked, so that counting never imports
        the config."""
        if hasattr(self.spec, "to_dict"):  # built from a training config
            return self.spec
        from maskfocal.config import config_from_dict

        return config_from_dict(self.saved_config or {})

    @property
    def backend(self) -> str:
        """What runs the network: ``"onnx"`` (ONNX Runtime) or ``"torch"`` (eager)."""
        return "torch" if self.runner is self.model else "onnx"

    @property
    def threshold(self) -> float:
        """The checkpoint's calibrated score threshold, or the one given in its place."""
        return self.options.threshold

    @property
    def input_scale(self) -> float:
        return self.options.input_scale

    @property
    def scale_target(self) -> float | None:
        return self.options.scale_target

    @property
    def max_eval_side(self) -> int:
        return self.options.max_eval_side

    @property
    def tile_above(self) -> int | None:
        return self.options.tile_above

    @property
    def tile_size(self) -> int:
        return self.options.tile_size

    @property
    def tile_overlap(self) -> int:
        return self.options.tile_overlap

    @property
    def has_heatmap(self) -> bool:
        """Whether the model predicts a heatmap (CenterNet)."""
        return self.family.has_heatmap

    def at_scale(self, input_scale: float) -> Predictor:
        """The same model seeing every image at another input scale (for choosing one)."""
        other = copy.copy(self)
        other.options = self.options.with_scale(input_scale)
        return other

    def auto_scale(self, detections: Detections) -> float:
        """The scale to count a photo at, from the heads found in it at scale 1: the one of
        :data:`AUTO_SCALES` nearest to ``scale_target`` over the median distance between
        neighbouring heads (px of the photo); ``input_scale`` where fewer than
        :data:`AUTO_MIN_HEADS` were found. Measured on crowd-lite0's 110 validation photos:
        experiments/auto_scale.py, docs/MODEL.md."""
        spacing = head_spacing(detections, self.threshold)
        if spacing is None:
            return self.input_scale
        return min(AUTO_SCALES, key=lambda s: abs(s - self.scale_target / spacing))

    # the detection core --------------------------------------------------------------------
    @torch.no_grad()
    def detect(self, images: Sequence[Tensor], threshold: float, *, heatmaps: bool = False
               ) -> list[tuple[Detections, np.ndarray | None]]:
        """Heads of each (3, h, w) image as given (in its pixels) and, with ``heatmaps``, its
        heatmap: pad to a multiple of 32, run the model (or the runner), decode."""
        batch = pad_batch(list(images), min_side=self.family.min_side).to(self.device)
        outputs = self.runner(batch)
        sizes = [tuple(image.shape[-2:]) for image in images]
        detections = self.family.decode(self.model, outputs, sizes, threshold=threshold)
        maps = self.family.heatmaps(outputs, sizes) if heatmaps else [None] * len(sizes)
        return list(zip(detections, maps, strict=True))

    # whole images --------------------------------------------------------------------------
    def tiled(self, height: int, width: int) -> bool:
        """Whether an image of this size is counted in tiles (at ``input_scale``, also when
        the scale is chosen per photo)."""
        return (self.tile_above is not None
                and max(height, width) * self.input_scale > self.tile_above)

    def decode_side(self, height: int, width: int) -> int | None:
        """The least longer side a photo of this size may be read at (where that is at most
        half its own) for the same network input and, within a head or two, the same count:
        a photo counted whole and shrunk to ``max_eval_side`` is read at least that large and
        shrunk from there (reading it smaller and enlarging it, as the input scale would,
        lost 3 % of the heads on an 8000x6000 mosaic; see
        :func:`maskfocal.structures.read_rgb`). None where it is counted in tiles, at a scale
        chosen per photo, or not shrunk that far."""
        longer = max(height, width)
        if self.tiled(height, width) or self.scale_target is not None \
                or self.max_eval_side >= longer * self.input_scale:
            return None
        side = max(self.max_eval_side, math.ceil(self.max_eval_side / self.input_scale))
        return side if 2 * side <= longer else None

    @torch.no_grad()
    def find(self, images: Sequence[np.ndarray], threshold: float, *, heatmaps: bool = False,
             stop: threading.Event | None = None) -> list[tuple[Detections, np.ndarray | None]]:
        """Heads of each (H, W, 3) uint8 image in its own pixels (on the CPU) and, with
        ``heatmaps``, its heatmap on the image's stride grid. Images that pad to the same
        size share a forward pass (the same result as one at a time). ``stop``, once set,
        ends the work before the next forward pass with :class:`Stopped` (a caller's
        deadline: the web service's timeout)."""
        results: list = [None] * len(images)
        fitted: dict[int, tuple[Tensor, float]] = {}
        for i, image in enumerate(images):
            if self.tiled(*image.shape[:2]):
                results[i] = self._find_tiled(image, threshold, heatmaps, stop)
            elif self.scale_target is not None:
                results[i] = self._find_auto(image, threshold, heatmaps, stop)
            else:
                fitted[i] = fit_pixels(image, self.max_eval_side, self.input_scale)
        sizes = {i: tuple(tensor.shape[-2:]) for i, (tensor, _) in fitted.items()}
        for indices in _same_padded_size(sizes, self.batch_size):
            _check(stop)
            found = self.detect([fitted[i][0] for i in indices], threshold, heatmaps=heatmaps)
            for i, (detections, maps) in zip(indices, found, strict=True):
                scale = fitted[i][1]
                if maps is not None and scale != 1:
                    maps = _rescaled(maps, images[i].shape[:2], self.family.stride)
                results[i] = (_on_cpu(detections.scaled(1 / scale)), maps)
        return results

    def _find_auto(self, image: np.ndarray, threshold: float, heatmap: bool,
                   stop: threading.Event | None) -> tuple[Detections, np.ndarray | None]:
        """One photo at the scale :meth:`auto_scale` chooses from a first pass at scale 1
        (which is the count where the choice is 1)."""
        first = self.at_scale(1.0)
        floor = min(threshold, self.threshold)
        (detections, maps), = first.find([image], floor, heatmaps=heatmap, stop=stop)
        scale = self.auto_scale(detections)
        if scale != 1.0:
            (detections, maps), = self.at_scale(scale).find([image], threshold,
                                                            heatmaps=heatmap, stop=stop)
        return detections.above(threshold), maps

    def tiles(self, height: int, width: int) -> list[Tile]:
        """The tiles of an image of this size, in its own pixels: ``tile_size`` and
        ``tile_overlap`` scaled pixels, so each tile is ``tile_size`` once scaled."""
        size = max(64, int(self.tile_size / self.input_scale))
        overlap = math.ceil(self.tile_overlap / self.input_scale)
        if size - overlap <= ALIGN:
            raise MaskfocalError(f"tile size {self.tile_size} px and overlap "
                                 f"{self.tile_overlap} px leave no step at input scale "
                                 f"{self.input_scale:g}")
        return plan_tiles(height, width, size, overlap)

    def _find_tiled(self, image: np.ndarray, threshold: float, heatmap: bool,
                    stop: threading.Event | None = None
                    ) -> tuple[Detections, np.ndarray | None]:
        height, width = image.shape[:2]
        tiles = self.tiles(height, width)
        stride = self.family.stride if heatmap else 1  # only heatmap families have one
        canvas = (np.zeros((-(-height // stride), -(-width // stride)), np.float32)
                  if heatmap else None)
        points, scores, boxes, owners = [], [], [], []
        scale = self.input_scale
        shapes = {n: (round((t.y1 - t.y0) * scale), round((t.x1 - t.x0) * scale))
                  for n, t in enumerate(tiles)}
        # one tile per pass on a CPU: a tile is a large image already, so a batch of them
        # buys no speed there (measured: 63 s against 70 s for 24 tiles) and holds four
        # tiles' activations at once (+500 MB eager, +900 MB in ONNX Runtime)
        groups = _same_padded_size(shapes, 1 if self.device.type == "cpu" else self.batch_size)
        for group in tqdm(groups, desc=f"{len(tiles)} tiles", unit="batch", leave=False,
                          disable=not self.progress or len(groups) < 2):
            _check(stop)
            crops = [to_tensor(image[tiles[n].y0:tiles[n].y1, tiles[n].x0:tiles[n].x1])
                     for n in group]
            found = self.detect([resize(c, scale) if scale != 1 else c for c in crops],
                                threshold, heatmaps=heatmap)
            for number, (detections, maps) in zip(group, found, strict=True):
                tile = tiles[number]
                detections = _on_cpu(detections.scaled(1 / scale))
                shift = torch.tensor([tile.x0, tile.y0], dtype=torch.float32)
                tile_points = (detections.points + shift).numpy()
                keep = in_core(tile_points, tile)
                points.append(tile_points[keep])
                scores.append(detections.scores.numpy()[keep])
                owners.append(np.full(int(keep.sum()), number))
                if detections.boxes is not None:
                    boxes.append((detections.boxes + shift.repeat(2)).numpy()[keep])
                if canvas is not None and maps is not None:
                    if scale != 1:
                        maps = _rescaled(maps, (tile.y1 - tile.y0, tile.x1 - tile.x0), stride)
                    rows = slice(tile.cy0 // stride, -(-tile.cy1 // stride))
                    cols = slice(tile.cx0 // stride, -(-tile.cx1 // stride))
                    canvas[rows, cols] = maps[rows.start - tile.y0 // stride:
                                              rows.stop - tile.y0 // stride,
                                              cols.start - tile.x0 // stride:
                                              cols.stop - tile.x0 // stride]
        all_points = np.concatenate(points).reshape(-1, 2)
        all_scores = np.concatenate(scores)
        keep = merge_across_tiles(all_points, all_scores, np.concatenate(owners),
                                  self.merge_radius)
        keep = keep[np.argsort(-all_scores[keep], kind="stable")]
        all_boxes = (torch.from_numpy(np.concatenate(boxes).reshape(-1, 4)[keep])
                     if boxes else None)
        return Detections(torch.from_numpy(all_points[keep]),
                          torch.from_numpy(all_scores[keep]), all_boxes), canvas

    # datasets ------------------------------------------------------------------------------
    def candidates(self, images: Sequence[AnnotatedImage], floor: float = SCORE_FLOOR, *,
                   workers: int = 0, progress: bool = False) -> Predictions:
        """Every head of every image with a score of at least ``floor`` (so any higher
        threshold is a filter), found exactly as counting finds them, with the truths
        beside them. ``workers`` decode images in parallel."""
        self.model.eval()
        loader = DataLoader(_Pixels(images), batch_size=None, num_workers=workers,
                            collate_fn=_as_is)
        detections = []
        previous = self.family.candidate_floor(self.model, floor)
        try:
            for pixels in tqdm(loader, desc="evaluating", unit="img", disable=not progress,
                               leave=False):
                (found, _), = self.find([pixels], floor)
                detections.append(found)
        finally:
            self.family.candidate_floor(self.model, previous)
        return Predictions(detections=detections,
                           gt_points=[image.points for image in images],
                           gt_boxes=[image.boxes for image in images],
                           names=[image.name for image in images])


class _Pixels(Dataset):
    """The decoded (H, W, 3) uint8 pixels of annotated images."""

    def __init__(self, images: Sequence[AnnotatedImage]) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.images[index].load_image()


class Stopped(MaskfocalError):
    """The work was stopped by its caller (``stop`` was set) before it finished."""


def _check(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise Stopped("stopped before the count finished")


def _as_is(item):
    return item


def _on_cpu(detections: Detections) -> Detections:
    return Detections(detections.points.cpu(), detections.scores.cpu(),
                      None if detections.boxes is None else detections.boxes.cpu())


def _same_padded_size(sizes: dict[int, tuple[int, int]], batch_size: int
                      ) -> list[list[int]]:
    """Keys in batches of at most ``batch_size`` whose images pad to the same size, so that
    a batched result equals the one-at-a-time result (padding is black, which a network
    sees near the border)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for key, (height, width) in sizes.items():
        groups.setdefault((-(-height // 32), -(-width // 32)), []).append(key)
    return [keys[start:start + batch_size] for keys in groups.values()
            for start in range(0, len(keys), batch_size)]


def _rescaled(heatmap: np.ndarray, shape: tuple[int, int], stride: int) -> np.ndarray:
    """A heatmap of a scaled image, resized to the original (height, width)'s stride grid."""
    size = (-(-shape[1] // stride), -(-shape[0] // stride))
    return np.asarray(Image.fromarray(heatmap).resize(size, Image.Resampling.BILINEAR))
