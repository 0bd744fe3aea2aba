"""The one-call API: load a trained model and count heads in images.

>>> from maskfocal import Counter
>>> counter = Counter.from_pretrained()  # the shipped model; or from_checkpoint("best.pt")
>>> result = counter("crowd.jpg")
>>> result.count, result.points.shape
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from maskfocal.config import Config
from maskfocal.data.readers.common import IMAGE_EXTENSIONS
from maskfocal.data.transforms import fit_image, to_tensor
from maskfocal.decode import Detections
from maskfocal.engine.checkpoint import load_model, threshold_of
from maskfocal.engine.device import select_device
from maskfocal.engine.evaluate import detect_batch
from maskfocal.errors import MaskfocalError
from maskfocal.families import family_for
from maskfocal.io import written_here
from maskfocal.structures import as_rgb, load_rgb
from maskfocal.tiling import ALIGN, in_core, merge_across_tiles, plan_tiles

__all__ = ["CountResult", "Counter", "expand_inputs"]


@dataclass
class CountResult:
    """Heads found in one image, in its own pixels."""

    count: int
    points: np.ndarray  # (n, 2) x, y
    scores: np.ndarray  # (n,)
    boxes: np.ndarray | None  # (n, 4) x1 y1 x2 y2, when the model predicts sizes
    heatmap: np.ndarray | None = None  # (ceil(H/4), ceil(W/4)) probabilities, on request

    def to_json(self) -> dict:
        return {"count": self.count,
                "points": [[round(float(x), 2), round(float(y), 2)] for x, y in self.points]}


def check_tiling(tile_above: int | None, tile_size: int, tile_overlap: int) -> None:
    """Tiling options that cover every pixel, or a one-line error before any work."""
    if tile_above is not None and tile_above < 0:
        raise MaskfocalError(f"tile threshold {tile_above} px must be >= 0")
    if tile_size < 64:
        raise MaskfocalError(f"tile size {tile_size} px must be at least 64")
    if tile_overlap < 0:
        raise MaskfocalError(f"tile overlap {tile_overlap} px must be >= 0 (a negative "
                             "overlap leaves gaps between tiles)")
    if tile_size - tile_overlap <= ALIGN:
        raise MaskfocalError(f"tile size {tile_size} px must exceed the overlap "
                             f"{tile_overlap} px by more than {ALIGN}")


class Counter:
    """A trained counter: ``counter(image) -> CountResult``, ``counter([a, b]) -> [...]``.

    Args:
        model: the detector (in eval mode on ``device``). With ``runner`` it only decodes.
        config: its resolved config.
        threshold: the score threshold (calibrated on validation when training ended).
        runner: runs a padded (B, 3, H, W) batch and returns what ``model`` would (the
            ONNX Runtime runner of :mod:`maskfocal.export`); default: ``model`` itself.
        tile_above: images whose longer side exceeds this are counted in tiles at full
            resolution, so memory is bounded by the tile (``None``: never tile; such images
            are scaled down to ``data.max_eval_side`` instead).
        tile_size, tile_overlap: tile side and the least overlap of neighbours, in pixels.
        merge_radius: heads of two tiles closer than this (pixels) are one head.
        batch_size: images (or tiles) per forward pass.
        progress: show a progress bar over the tiles of a tiled image.
    """

    def __init__(self, model: torch.nn.Module, config: Config, threshold: float,
                 device: torch.device, *, runner: Callable[[Tensor], object] | None = None,
                 tile_above: int | None = 2048, tile_size: int = 1024, tile_overlap: int = 128,
                 merge_radius: float = 8.0, batch_size: int = 4, progress: bool = False
                 ) -> None:
        check_tiling(tile_above, tile_size, tile_overlap)
        if not 0 < threshold < 1:
            raise MaskfocalError(f"threshold must be in (0, 1), got {threshold}")
        if not merge_radius >= 0:
            raise MaskfocalError(f"merge radius must be >= 0, got {merge_radius}")
        if batch_size < 1:
            raise MaskfocalError(f"batch size must be at least 1, got {batch_size}")
        self.model = model.eval().to(device)
        self.config = config
        self.family = family_for(config)
        self.threshold = threshold
        self.device = device
        self.runner = runner
        self.tile_above = tile_above
        self.tile_size = tile_size
        self.tile_overlap = tile_overlap
        self.merge_radius = merge_radius
        self.batch_size = batch_size
        self.progress = progress

    @classmethod
    def from_pretrained(cls, name: str | None = None, device: str = "auto",
                        **options) -> Counter:
        """A model shipped inside the package (:data:`maskfocal.pretrained.MODELS`; default
        ``crowd-r18``, see ``docs/MODEL.md``), loaded with no network."""
        from maskfocal.pretrained import pretrained_path

        return cls.from_checkpoint(pretrained_path(name), device=device, **options)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto", **options) -> Counter:
        """A ``.pt`` checkpoint of ``maskfocal train``, ``.safetensors`` weights (the shipped
        kind), or a ``.onnx`` file of ``maskfocal export`` (run with ONNX Runtime).
        ``options``: see the class."""
        torch_device = select_device(device)
        if Path(path).suffix.lower() == ".onnx":
            from maskfocal.export import OnnxRunner

            runner = OnnxRunner(path, torch_device)
            return cls(runner.model, runner.config, runner.threshold, torch.device("cpu"),
                       runner=runner, **options)
        model, config, state = load_model(path)
        return cls(model, config, threshold_of(state, config), torch_device, **options)

    @staticmethod
    def read_image(image) -> np.ndarray:
        """A path, PIL image, (H, W[, C]) array or (C, H, W) tensor as (H, W, 3) uint8.

        Numeric types are scaled by their range (see :func:`maskfocal.structures.as_rgb`);
        what cannot be read is a :class:`MaskfocalError` (a ``ValueError``)."""
        if isinstance(image, (str, Path)):
            return load_rgb(image)
        return as_rgb(image)

    @property
    def has_heatmap(self) -> bool:
        """Whether the model predicts a heatmap (CenterNet)."""
        return self.family.has_heatmap

    @staticmethod
    def _is_batch(images) -> bool:
        if isinstance(images, (list, tuple)):
            return True
        return isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4

    @torch.no_grad()
    def __call__(self, images, *, return_heatmap: bool = False
                 ) -> CountResult | list[CountResult]:
        """Count heads in one image (a path, PIL image, (H, W, 3) array or (3, H, W) tensor)
        or a batch (a list of those, an (N, H, W, 3) array or an (N, 3, H, W) tensor)."""
        if return_heatmap and not self.has_heatmap:
            raise MaskfocalError("only CenterNet predicts a heatmap")
        if not self._is_batch(images):
            return self._count([self.read_image(images)], return_heatmap)[0]
        return self._count([self.read_image(image) for image in images], return_heatmap)

    def _count(self, images: list[np.ndarray], heatmap: bool) -> list[CountResult]:
        results: list[CountResult | None] = [None] * len(images)
        fitted: dict[int, tuple[Tensor, float]] = {}
        for i, image in enumerate(images):
            if self._tiled(image):
                results[i] = self._count_tiled(image, heatmap)
            else:
                fitted[i] = fit_image(to_tensor(image), self.config.data.max_eval_side,
                                      self.config.decode.input_scale)
        sizes = {i: tuple(tensor.shape[-2:]) for i, (tensor, _) in fitted.items()}
        for indices in _same_padded_size(sizes, self.batch_size):
            found = self._detect([fitted[i][0] for i in indices], heatmap)
            for i, (detections, maps) in zip(indices, found, strict=True):
                scale = fitted[i][1]
                if heatmap and scale != 1:
                    maps = _rescaled(maps, images[i].shape, self.family.stride)
                results[i] = _result(detections.scaled(1 / scale), maps)
        return results  # type: ignore[return-value]

    def _tiled(self, image: np.ndarray) -> bool:
        return self.tile_above is not None and max(image.shape[:2]) > self.tile_above

    def _detect(self, tensors: list[Tensor], heatmap: bool
                ) -> list[tuple[Detections, np.ndarray | None]]:
        """Detections (input pixels) and, on request, heatmaps of unpadded images."""
        return detect_batch(self.family, self.model, tensors, threshold=self.threshold,
                            device=self.device, runner=self.runner, heatmaps=heatmap)

    def _count_tiled(self, image: np.ndarray, heatmap: bool) -> CountResult:
        height, width = image.shape[:2]
        tiles = plan_tiles(height, width, self.tile_size, self.tile_overlap)
        stride = self.family.stride if heatmap else 1
        canvas = (np.zeros((-(-height // stride), -(-width // stride)), np.float32)
                  if heatmap else None)
        points, scores, boxes, owners = [], [], [], []
        sizes = {number: (t.y1 - t.y0, t.x1 - t.x0) for number, t in enumerate(tiles)}
        groups = _same_padded_size(sizes, self.batch_size)
        for group in tqdm(groups, desc=f"{len(tiles)} tiles", unit="batch", leave=False,
                          disable=not self.progress or len(groups) < 2):
            found = self._detect([to_tensor(image[tiles[n].y0:tiles[n].y1,
                                                  tiles[n].x0:tiles[n].x1]) for n in group],
                                 heatmap)
            for number, (detections, maps) in zip(group, found, strict=True):
                tile = tiles[number]
                shift = torch.tensor([tile.x0, tile.y0], dtype=torch.float32)
                tile_points = (detections.points.cpu() + shift).numpy()
                keep = in_core(tile_points, tile)
                points.append(tile_points[keep])
                scores.append(detections.scores.cpu().numpy()[keep])
                owners.append(np.full(int(keep.sum()), number))
                if detections.boxes is not None:
                    boxes.append((detections.boxes.cpu() + shift.repeat(2)).numpy()[keep])
                if canvas is not None and maps is not None:
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
        all_boxes = np.concatenate(boxes).reshape(-1, 4)[keep] if boxes else None
        return CountResult(count=len(keep), points=all_points[keep], scores=all_scores[keep],
                           boxes=all_boxes, heatmap=canvas)


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


def _result(detections: Detections, heatmap: np.ndarray | None) -> CountResult:
    return CountResult(count=detections.count, points=detections.points.cpu().numpy(),
                       scores=detections.scores.cpu().numpy(),
                       boxes=None if detections.boxes is None
                       else detections.boxes.cpu().numpy(), heatmap=heatmap)


def _rescaled(heatmap: np.ndarray | None, shape: tuple[int, ...], stride: int = 4
              ) -> np.ndarray | None:
    """A heatmap of a scaled-down image, resized to the original image's stride grid."""
    if heatmap is None:
        return None
    size = (-(-shape[1] // stride), -(-shape[0] // stride))
    return np.asarray(Image.fromarray(heatmap).resize(size, Image.Resampling.BILINEAR))


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Image files from files and folders (a folder's images, sorted, not recursive; not the
    overlays and sheets that maskfocal itself wrote there)."""
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            ours = written_here(path)
            paths += sorted(p for p in path.iterdir()
                            if p.suffix.lower() in IMAGE_EXTENSIONS and p.name not in ours)
        elif path.is_file():
            paths.append(path)
        else:
            raise MaskfocalError(f"{path}: no such file or folder")
    if not paths:
        raise MaskfocalError(f"no images found in: {' '.join(inputs)}")
    return paths
