"""maskfocal: count people by detecting their heads, trained with Mask Focal Loss."""

from maskfocal.errors import DatasetError, MaskfocalError
from maskfocal.structures import AnnotatedImage

__version__ = "0.1.0"

__all__ = ["AnnotatedImage", "DatasetError", "MaskfocalError", "__version__"]
