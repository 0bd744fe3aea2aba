from __future__ import annotations

import numpy as np
import pytest

from maskfocal import AnnotatedImage


def test_empty_image_is_first_class():
    image = AnnotatedImage(image_path=None, points=[], width=10, height=8,
                           pixels=np.zeros((8, 10, 3), np.uint8))
    assert image.num_heads == 0 and image.points.shape == (0, 2)
    assert image.select(np.zeros(0, bool)).num_heads == 0
    assert image.load_image().shape == (8, 10, 3)


def test_validation_and_select():
    with pytest.raises(ValueError, match="one per head"):
        AnnotatedImage(None, [[1, 2]], 10, 10, boxes=[[0, 0, 1, 1], [1, 1, 2, 2]])
    image = AnnotatedImage(None, [[1, 2], [3, 4]], 10, 10, boxes=[[0, 0, 2, 2], [2, 2, 4, 4]],
                           attributes={"blur": np.array([0, 1])})
    kept = image.select(np.array([False, True]))
    assert kept.points.tolist() == [[3, 4]] and kept.attributes["blur"].tolist() == [1]
