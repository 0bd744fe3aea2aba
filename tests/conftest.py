from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# Counting in the tests runs eager PyTorch unless a test asks otherwise: the default backend
# (auto: ONNX Runtime on a CPU) would export every tiny test model once, seconds each.
# tests/test_backends.py runs auto and onnx, and checks that their heads are torch's. Exports
# go to a cache of this run's own, never the user's (subprocesses inherit both).
os.environ["MASKFOCAL_BACKEND"] = "torch"
os.environ["MASKFOCAL_CACHE"] = tempfile.mkdtemp(prefix="maskfocal-test-cache-")
atexit.register(shutil.rmtree, os.environ["MASKFOCAL_CACHE"], ignore_errors=True)


def write_image(path: Path, width: int = 64, height: int = 48, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA
