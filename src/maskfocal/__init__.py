"""maskfocal: count people by detecting their heads, trained with Mask Focal Loss."""

from maskfocal.errors import DatasetError, MaskfocalError
from maskfocal.structures import AnnotatedImage

__version__ = "0.1.0"

__all__ = ["AnnotatedImage", "Counter", "DatasetError", "MaskfocalError", "__version__"]


def __getattr__(name: str):
    if name == "Counter":  # imported lazily: it pulls in torch and torchvision
        from maskfocal.inference import Counter

        return Counter
    raise AttributeError(f"module 'maskfocal' has no attribute {name!r}")
