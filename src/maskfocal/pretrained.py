"""Models shipped inside the package: a photo is counted with no download and no checkpoint.

>>> from maskfocal import Counter
>>> Counter.from_pretrained()("crowd.jpg").count

Each model is a ``.safetensors`` file under ``maskfocal/weights`` (weights that cannot run
code; its config and calibrated threshold are in the metadata). ``docs/MODEL.md`` is the
model card: training data, budget, test figures and where it fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from maskfocal.errors import MaskfocalError


@dataclass(frozen=True)
class ShippedModel:
    file: str  # under maskfocal/weights
    summary: str


MODELS = {
    "crowd-r18": ShippedModel(
        "crowd_r18.safetensors",
        "CenterNet-ResNet18 + MFL from random initialisation on ShanghaiTech B train "
        "(research use); fp16"),
    "crowd-lite0": ShippedModel(
        "crowd_lite0.safetensors",
        "CenterNet on ImageNet EfficientNet-Lite0 (Apache-2.0 weights), 2.4 CPU hours so far "
        "on ShanghaiTech A+B and SCUT-HEAD B train with head-free and mined hard negatives "
        "(research use; lineage in docs/MODEL.md); counts at scale 1.5; fp16"),
}
DEFAULT_MODEL = "crowd-r18"


def pretrained_path(name: str | None = None) -> Path:
    """The file of shipped model ``name`` (default :data:`DEFAULT_MODEL`)."""
    name = name or DEFAULT_MODEL
    if name not in MODELS:
        raise MaskfocalError(f"no shipped model {name!r}; shipped: {', '.join(MODELS)}")
    path = Path(str(resources.files("maskfocal") / "weights" / MODELS[name].file))
    if not path.is_file():
        raise MaskfocalError(f"{path}: the shipped model {name!r} is missing from this "
                             "installation (reinstall maskfocal, or give --checkpoint)")
    return path


def checkpoint_or_shipped(checkpoint: str | Path | None, *, say: bool = True) -> Path:
    """``checkpoint``: a file, or the name of a shipped model (``crowd-r18``) where no file of
    that name exists; the default shipped model (saying so on stderr) when it is None."""
    if checkpoint is not None:
        if str(checkpoint) in MODELS and not Path(checkpoint).exists():
            return pretrained_path(str(checkpoint))
        return Path(checkpoint)
    path = pretrained_path()
    if say:
        import sys

        print(f"using the shipped model {DEFAULT_MODEL} ({MODELS[DEFAULT_MODEL].summary}); "
              "--checkpoint to use your own", file=sys.stderr)
    return path
