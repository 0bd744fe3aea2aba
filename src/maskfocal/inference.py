"""The one-call API: load a trained model and count heads in images.

>>> from maskfocal import Counter
>>> counter = Counter.from_checkpoint("runs/demo/best.pt")
>>> result = counter("crowd.jpg")
>>> result.count, result.points.shape
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from maskfocal.config import Config, config_from_dict
from maskfocal.data.readers.common import IMAGE_EXTENSIONS
from maskfocal.data.training import pad_batch
from maskfocal.data.transforms import Sample, fit_for_eval, to_tensor
from maskfocal.engine.checkpoint import load_checkpoint
from maskfocal.engine.tasks import decode_outputs, forward
from maskfocal.errors import MaskfocalError
from maskfocal.models import CenterNet, build_model
from maskfocal.structures import load_rgb

__all__ = ["CountResult", "Counter", "expand_inputs"]


@dataclass
class CountResult:
    """Heads found in one image, in its own pixels."""

    count: int
    points: np.ndarray  # (n, 2) x, y
    scores: np.ndarray  # (n,)
    boxes: np.ndarray | None  # (n, 4) x1 y1 x2 y2, when the model predicts sizes
    heatmap: np.ndarray | None = None  # (H/4, W/4) probabilities, on request

    def to_json(self) -> dict:
        return {"count": self.count,
                "points": [[round(float(x), 2), round(float(y), 2)] for x, y in self.points]}


def _select_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Counter:
    """A trained counter: ``counter(image) -> CountResult``.

    Args:
        model: the detector (in eval mode on ``device``).
        config: its resolved config.
        threshold: the score threshold (calibrated on validation when training ended).
    """

    def __init__(self, model: torch.nn.Module, config: Config, threshold: float,
                 device: torch.device) -> None:
        self.model = model.eval().to(device)
        self.config = config
        self.threshold = threshold
        self.device = device

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto") -> Counter:
        state = load_checkpoint(path)
        config = config_from_dict(state["config"])
        model = build_model(config, pretrained=False)
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as error:
            raise MaskfocalError(f"{path}: weights do not fit the model its config describes "
                                 f"({str(error).splitlines()[0]})") from None
        return cls(model, config, float(state.get("threshold", config.decode.threshold)),
                   _select_device(device))

    @staticmethod
    def read_image(image) -> np.ndarray:
        """A path, PIL image, (H, W[, 3|4]) array or (3, H, W) tensor as (H, W, 3) uint8."""
        if isinstance(image, (str, Path)):
            return load_rgb(image)
        if isinstance(image, Image.Image):
            return np.asarray(image.convert("RGB"))
        if isinstance(image, torch.Tensor):  # (3, H, W) float in [0, 1]
            return (image.detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy() * 255).round() \
                .astype(np.uint8)
        array = np.asarray(image)
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=2)
        if array.ndim != 3 or array.shape[2] not in (3, 4):
            raise MaskfocalError(f"expected an (H, W, 3) image, got shape {array.shape}")
        return array[..., :3].astype(np.uint8)

    @torch.no_grad()
    def __call__(self, image, *, return_heatmap: bool = False) -> CountResult:
        """Count heads in a path, PIL image, (H, W, 3) uint8 array or (3, H, W) tensor."""
        pixels = self.read_image(image)
        no_heads = torch.zeros(0, 2)
        sample = fit_for_eval(Sample(to_tensor(pixels), no_heads, no_heads.new_zeros(0, 4),
                                     False), self.config.data.max_eval_side)
        batch = pad_batch([sample.image]).to(self.device)
        outputs = forward(self.model, batch)
        detections = decode_outputs(self.model, outputs, [sample.valid_size],
                                    threshold=self.threshold, decode=self.config.decode)[0]
        detections = detections.scaled(1 / sample.scale)
        heatmap = None
        if return_heatmap:
            if not isinstance(self.model, CenterNet):
                raise MaskfocalError("only CenterNet predicts a heatmap")
            heatmap = torch.sigmoid(outputs["heatmap"][0, 0].float()).cpu().numpy()
        return CountResult(count=detections.count, points=detections.points.cpu().numpy(),
                           scores=detections.scores.cpu().numpy(),
                           boxes=None if detections.boxes is None
                           else detections.boxes.cpu().numpy(), heatmap=heatmap)


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Image files from files and folders (a folder's images, sorted, not recursive)."""
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            paths += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        elif path.is_file():
            paths.append(path)
        else:
            raise MaskfocalError(f"{path}: no such file or folder")
    if not paths:
        raise MaskfocalError(f"no images found in: {' '.join(inputs)}")
    return paths
