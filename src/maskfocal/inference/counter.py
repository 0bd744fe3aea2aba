"""The one-call API: load a trained model and count heads in images.

>>> from maskfocal import Counter
>>> counter = Counter.from_pretrained()  # the shipped model; or from_checkpoint("best.pt")
>>> result = counter("crowd.jpg")
>>> result.count, result.points.shape
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from maskfocal.data.readers.common import IMAGE_EXTENSIONS
from maskfocal.decode import Detections
from maskfocal.errors import MaskfocalError
from maskfocal.fileio import written_here
from maskfocal.structures import as_rgb, load_rgb, read_rgb
from maskfocal.zones import Zones, load_zones

from .options import KEEP, InferenceOptions
from .predictor import Predictor

__all__ = ["CountResult", "Counter", "expand_inputs"]


@dataclass
class CountResult:
    """Heads found in one image, in its own pixels."""

    count: int
    points: np.ndarray  # (n, 2) x, y
    scores: np.ndarray  # (n,)
    boxes: np.ndarray | None  # (n, 4) x1 y1 x2 y2, when the model predicts sizes
    heatmap: np.ndarray | None = None  # (ceil(H/4), ceil(W/4)) probabilities, on request
    zones: dict[str, int] | None = None  # heads per zone, when counted with zones
    density: dict[str, float] | None = None  # people per m² per zone, with a ground scale

    def to_json(self) -> dict:
        """``{"count", "points"}`` and, where counted with zones, ``zones`` and ``density``
        (:class:`~maskfocal.inference.records.CountRecord`, the one result record)."""
        from .records import CountRecord

        return CountRecord(self).to_json(points=True)


class Counter:
    """A trained counter: ``counter(image) -> CountResult``, ``counter([a, b]) -> [...]``.

    A :class:`~maskfocal.inference.Predictor` (the model or its ONNX export, the device, the
    input scale, tiling) and the threshold that turns its candidates into heads.

    Args:
        predictor: what finds the heads.
        threshold: the score threshold; default: the checkpoint's, calibrated on validation
            when training ended.
    """

    def __init__(self, predictor: Predictor, threshold: float | None = None) -> None:
        if threshold is not None:
            _check_threshold(threshold)
            predictor = copy.copy(predictor)
            predictor.options = predictor.options.replace(threshold=float(threshold))
        self.predictor = predictor

    @property
    def threshold(self) -> float:
        """The score threshold: the model's calibrated one, or the one given in its place."""
        return self.predictor.threshold

    @property
    def options(self) -> InferenceOptions:
        """The threshold, input scale, size cap and tiling it counts with."""
        return self.predictor.options

    def with_options(self, options: InferenceOptions) -> Counter:
        """The same model counting with other inference options."""
        predictor = copy.copy(self.predictor)
        predictor.options = options
        return Counter(predictor)

    @classmethod
    def from_pretrained(cls, name: str | None = None, device: str = "auto", **options
                        ) -> Counter:
        """A model shipped inside the package (:data:`maskfocal.pretrained.MODELS`; default
        ``crowd-r18``, see ``docs/MODEL.md``), loaded with no network; ``options`` (``backend``
        included) as for :meth:`from_checkpoint`."""
        from maskfocal.pretrained import pretrained_path

        return cls.from_checkpoint(pretrained_path(name), device=device, **options)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto", *,
                        backend: str | None = None,
                        threshold: float | None = None, scale: float | str | None = None,
                        max_eval_side: int | None = None, tile_above: int | None = KEEP,
                        tile_size: int | None = None, tile_overlap: int | None = None,
                        **options) -> Counter:
        """A ``.pt`` checkpoint of ``maskfocal train``, ``.safetensors`` weights (the shipped
        kind), or a ``.onnx`` file of ``maskfocal export`` (run with ONNX Runtime).

        The inference options (:class:`~maskfocal.inference.InferenceOptions`) default to the
        model's own: ``threshold`` (its calibrated score), ``scale`` (a number, or ``"auto"``:
        a scale per photo), ``max_eval_side`` (a photo counted whole is scaled down to this
        longer side), ``tile_above`` (count larger photos in tiles; ``None``: never; the model's
        own: :data:`~maskfocal.inference.options.KEEP`),
        ``tile_size`` and ``tile_overlap``. ``backend``: ``auto`` (ONNX Runtime on a CPU, the
        checkpoint exported once into the user's cache; PyTorch on CUDA), ``torch`` or
        ``onnx``; None: ``$MASKFOCAL_BACKEND``, else ``auto``. ``options``: the
        :class:`Predictor`'s (batch size, progress, merge radius). An invalid option is an
        error before the model loads."""
        if threshold is not None:
            _check_threshold(threshold)
        return cls(Predictor.from_checkpoint(
            path, device=device, backend=backend, threshold=threshold, scale=scale,
            max_eval_side=max_eval_side, tile_above=tile_above, tile_size=tile_size,
            tile_overlap=tile_overlap, **options))

    @property
    def config(self):
        """The full training config of the model (loaded when asked: counting never needs
        it)."""
        return self.predictor.config

    @property
    def family(self):
        return self.predictor.family

    @property
    def has_heatmap(self) -> bool:
        """Whether the model predicts a heatmap (CenterNet)."""
        return self.predictor.has_heatmap

    @staticmethod
    def read_image(image) -> np.ndarray:
        """A path, PIL image, (H, W[, C]) array or (C, H, W) tensor as (H, W, 3) uint8.

        Numeric types are scaled by their range (see :func:`maskfocal.structures.as_rgb`);
        what cannot be read is a :class:`MaskfocalError` (a ``ValueError``)."""
        if isinstance(image, (str, Path)):
            return load_rgb(image)
        return as_rgb(image)

    def _read(self, image, reduce: bool) -> tuple[np.ndarray, tuple[int, int]]:
        """The pixels to count and the image's own (height, width): a JPEG path counted whole
        and shrunk at least twofold is decoded smaller where ``reduce``
        (:meth:`Predictor.decode_side`); the heads are placed back in the image's pixels."""
        if reduce and isinstance(image, (str, Path)):
            return read_rgb(image, self.predictor.decode_side)
        pixels = self.read_image(image)
        return pixels, pixels.shape[:2]

    @staticmethod
    def _is_batch(images) -> bool:
        if isinstance(images, (list, tuple)):
            return True
        return isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4

    def __call__(self, images, *, threshold: float | None = None,
                 return_heatmap: bool = False, stop=None,
                 zones: Zones | str | Path | None = None) -> CountResult | list[CountResult]:
        """Count heads in one image (a path, PIL image, (H, W, 3) array or (3, H, W) tensor)
        or a batch (a list of those, an (N, H, W, 3) array or an (N, 3, H, W) tensor), at
        ``threshold`` (default: the counter's). ``stop`` (a :class:`threading.Event`), once
        set, ends the work before its next forward pass (``Stopped``). ``zones``
        (:class:`~maskfocal.zones.Zones` or a zone file) adds heads per zone, and people per
        m² when the file gives a ground scale."""
        if zones is not None and not isinstance(zones, Zones):
            zones = load_zones(zones)
        if threshold is None:
            threshold = self.threshold
        else:
            _check_threshold(threshold)
        if return_heatmap and not self.has_heatmap:
            raise MaskfocalError("only CenterNet predicts a heatmap")
        batch = self._is_batch(images)
        read = [self._read(image, not return_heatmap) for image in (images if batch
                                                                      else [images])]
        if zones is not None:  # a zone that does not fit is an error before any work
            for _, size in read:
                zones.check(*size)
        found = self.predictor.find([pixels for pixels, _ in read], threshold,
                                    heatmaps=return_heatmap, stop=stop)
        results = []
        for (detections, maps), (pixels, size) in zip(found, read, strict=True):
            results.append(_result(detections, maps, pixels.shape[:2], size))
            if zones is not None:
                _add_zones(results[-1], zones, size)
        return results if batch else results[0]

    def track(self, video, *, lines=None, every: int = 1, fps: float | None = None,
              threshold: float | None = None, zones: Zones | str | Path | None = None):
        """Follow heads through a clip: yields a :class:`~maskfocal.flow.FlowState` per
        counted frame (its ``result``, confirmed ``tracks`` ``{id: (x, y)}``, the
        ``crossings`` it completed and the running ``lines`` totals ``{line: {"in", "out",
        "net"}}``).

        ``video``: a video file, or frames ((H, W, 3) arrays; ``fps`` their rate, default
        25). ``lines``: a lines file or :class:`~maskfocal.flow.Line` objects (module
        :mod:`maskfocal.flow`). ``every``: count every N-th frame (tracking wants 1 or a
        small N). Needs the flow extra (``pip install 'maskfocal[flow]'``).

        >>> for state in Counter.from_pretrained().track("clip.mp4", lines="lines.json"):
        ...     print(state.frame, len(state.tracks), state.lines)
        """
        from contextlib import nullcontext

        from maskfocal.flow import Flow
        from maskfocal.media import VideoFrames

        if every < 1:
            raise MaskfocalError(f"every must be at least 1, got {every}")
        reading = isinstance(video, str | Path)
        with VideoFrames(video) if reading else nullcontext() as source:
            rate = float(source.rate) if reading else float(fps or 25.0)
            frames = (((index, seconds, frame.to_ndarray(format="rgb24"))
                       for index, seconds, frame in source if index % every == 0) if reading
                      else ((index, index / rate, self.read_image(pixels))
                            for index, pixels in enumerate(video) if index % every == 0))
            flow = Flow(lines, fps=rate / every,
                        threshold=self.threshold if threshold is None else threshold,
                        source=str(video) if reading else "frames")
            for index, seconds, pixels in frames:
                yield self._flow_step(flow, index, seconds, pixels, threshold, zones)

    def _flow_step(self, flow, index: int, seconds: float, pixels: np.ndarray,
                   threshold: float | None, zones):
        result, candidates = self.with_candidates(pixels, flow.candidates, threshold=threshold,
                                                  zones=zones)
        return flow.update(index, seconds, result, pixels.shape[:2], candidates)

    def with_candidates(self, image, share: float, *, threshold: float | None = None,
                        return_heatmap: bool = False, zones: Zones | None = None,
                        stop=None) -> tuple[CountResult, CountResult]:
        """One image counted as ``self(image, ...)`` counts it, and its candidates: every head
        scored at least ``share`` of the threshold (a superset; a tracker keeps tracks alive
        on them). Decoding keeps the higher-scored head wherever two compete, so the heads
        at or above the threshold are the same either way."""
        threshold = self.threshold if threshold is None else threshold
        _check_threshold(threshold)
        pixels = self.read_image(image)
        if zones is not None and not isinstance(zones, Zones):
            zones = load_zones(zones)
        if zones is not None:
            zones.check(*pixels.shape[:2])
        found = self(pixels, threshold=threshold * share, return_heatmap=return_heatmap,
                     stop=stop)
        keep = found.scores >= threshold
        result = CountResult(int(keep.sum()), found.points[keep], found.scores[keep],
                             None if found.boxes is None else found.boxes[keep], found.heatmap)
        if zones is not None:
            _add_zones(result, zones, pixels.shape[:2])
        return result, found


def _add_zones(result: CountResult, zones: Zones, size: tuple[int, int]) -> None:
    """Heads per zone (and per m² with a ground scale) of a result on an image of ``size``
    (height, width)."""
    result.zones = zones.count(result.points, *size)
    result.density = zones.density(result.zones)


def _check_threshold(threshold: float) -> None:
    if not 0 < threshold < 1:
        raise MaskfocalError(f"threshold must be in (0, 1), got {threshold}")


def _result(detections: Detections, heatmap: np.ndarray | None,
            found_on: tuple[int, int] | None = None, size: tuple[int, int] | None = None
            ) -> CountResult:
    """The result of ``detections``; found on an image of ``found_on`` (height, width) read
    smaller than the image's own ``size``, its points and boxes are scaled to ``size``."""
    if found_on is not None and tuple(found_on) != tuple(size):
        detections = detections.scaled((size[1] / found_on[1], size[0] / found_on[0]))
    return CountResult(count=detections.count, points=detections.points.cpu().numpy(),
                       scores=detections.scores.cpu().numpy(),
                       boxes=None if detections.boxes is None
                       else detections.boxes.cpu().numpy(), heatmap=heatmap)


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
