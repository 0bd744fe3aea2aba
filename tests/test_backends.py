"""``--backend auto|torch|onnx``: ONNX Runtime by default on a CPU, the checkpoint exported
once into the cache (keyed by its bytes), the same heads as eager PyTorch; Faster R-CNN and
CUDA stay on PyTorch; what cannot be done is one line and exit 2 (issue 56)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from maskfocal import Counter
from maskfocal.cli import main
from maskfocal.errors import MaskfocalError
from maskfocal.export import cached_onnx

from .conftest import SHARED_DATA
from .test_inference import by_position, checkpoint

pytest.importorskip("onnxruntime")


@pytest.fixture
def default_backend(monkeypatch, tmp_path):
    """The user's default (no $MASKFOCAL_BACKEND) and an empty cache of this test's own."""
    monkeypatch.delenv("MASKFOCAL_BACKEND", raising=False)
    monkeypatch.setenv("MASKFOCAL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def same_heads(a, b) -> None:
    assert a.count == b.count
    assert np.abs(by_position(a.points) - by_position(b.points)).max(initial=0) <= 0.5


def test_auto_is_onnx_runtime_on_a_cpu_exported_once_and_keyed_by_the_weights(
        default_backend, tmp_path, monkeypatch, capsys):
    ck = checkpoint(tmp_path, "model.neck_channels=32", threshold=0.09)
    counter = Counter.from_checkpoint(ck, device="cpu")
    assert counter.predictor.backend == "onnx"
    exported = cached_onnx(ck)
    assert exported.parent == default_backend / "onnx" and exported.is_file()
    assert "exporting centernet.pt for ONNX Runtime, once" in capsys.readouterr().err
    eager = Counter.from_checkpoint(ck, device="cpu", backend="torch")
    assert eager.predictor.backend == "torch"
    image = np.random.default_rng(2).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    same_heads(counter(image), eager(image))
    assert counter(image).count > 0  # the threshold leaves heads to compare

    import maskfocal.export

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(maskfocal.export, "onnx_bytes", no_export)
    assert Counter.from_checkpoint(ck, device="cpu").predictor.backend == "onnx"  # cached
    assert "exporting" not in capsys.readouterr().err
    changed = checkpoint(tmp_path / "other", "model.neck_channels=32", threshold=0.2)
    assert cached_onnx(changed) != exported  # other weights, other file: never a stale one


def test_a_damaged_export_in_the_cache_is_exported_again(default_backend, tmp_path):
    ck = checkpoint(tmp_path, threshold=0.09)
    cached = cached_onnx(ck)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"half a file")
    assert Counter.from_checkpoint(ck, device="cpu").predictor.backend == "onnx"
    assert cached.stat().st_size > 1000


def test_auto_keeps_pytorch_where_onnx_cannot_run(default_backend, tmp_path, capsys):
    """Faster R-CNN does not export: auto counts with PyTorch, --backend onnx says why."""
    ck = checkpoint(tmp_path, "model.name=faster_rcnn", threshold=0.5)
    assert Counter.from_checkpoint(ck, device="cpu").predictor.backend == "torch"
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(image)
    capsys.readouterr()
    assert main(["count", str(image), "--checkpoint", str(ck), "--backend", "onnx"]) == 2
    error = capsys.readouterr().err.strip()
    assert "faster_rcnn is not exported to ONNX" in error and "\n" not in error
    assert not (default_backend / "onnx").exists() or not any((default_backend / "onnx")
                                                                .iterdir())


def test_a_cache_that_cannot_be_written(default_backend, tmp_path, capsys):
    """auto warns and counts with PyTorch; --backend onnx is one line, exit 2."""
    default_backend.write_text("a file where the cache folder should be")
    ck = checkpoint(tmp_path, threshold=0.09)
    with pytest.warns(UserWarning, match="counting with PyTorch"):
        assert Counter.from_checkpoint(ck, device="cpu").predictor.backend == "torch"
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(image)
    capsys.readouterr()
    assert main(["count", str(image), "--checkpoint", str(ck), "--backend", "onnx"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len([line for line in error if line.startswith("maskfocal: error")]) == 1
    assert "MASKFOCAL_CACHE" in error[-1] and "Traceback" not in "\n".join(error)


def test_a_missing_or_damaged_checkpoint_is_one_line_on_the_default_backend(default_backend,
                                                                           tmp_path, capsys):
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(image)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    for given in (tmp_path / "missing.pt", garbage, tmp_path):
        capsys.readouterr()
        assert main(["count", str(image), "--checkpoint", str(given)]) == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith("maskfocal") and "\n" not in error and "Traceback" not in error


def test_backend_errors_are_one_line(tmp_path, monkeypatch, capsys):
    ck = checkpoint(tmp_path, threshold=0.09)
    onnx_path = tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(ck), "--out", str(onnx_path)]) == 0
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(image)
    capsys.readouterr()
    assert main(["count", str(image), "--checkpoint", str(onnx_path), "--backend",
                 "torch"]) == 2
    assert "runs with ONNX Runtime only" in capsys.readouterr().err
    monkeypatch.setenv("MASKFOCAL_BACKEND", "tensorrt")
    assert main(["count", str(image), "--checkpoint", str(ck)]) == 2
    error = capsys.readouterr().err.strip()
    assert "unknown backend 'tensorrt' (from $MASKFOCAL_BACKEND)" in error and "\n" not in error
    assert main(["count", str(image), "--checkpoint", str(ck), "--backend", "tensorrt"]) == 2
    assert "invalid choice: 'tensorrt'" in capsys.readouterr().err
    with pytest.raises(MaskfocalError, match="unknown backend"):
        Counter.from_checkpoint(ck, backend="tensorrt")


def test_count_and_eval_take_the_backend_and_give_the_same_figures(default_backend, tmp_path,
                                                                   capsys):
    from .test_inference import one_image_dataset

    ck = checkpoint(tmp_path, "model.neck_channels=32", threshold=0.09)
    pixels = np.random.default_rng(4).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    root = one_image_dataset(tmp_path, "a", pixels, heads=5)
    found = {}
    for backend in ("torch", "onnx", "auto"):
        capsys.readouterr()
        assert main(["count", str(root / "test" / "a.png"), "--checkpoint", str(ck), "--json",
                     "--backend", backend]) == 0
        found[backend] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["count"]
        assert main(["eval", "--checkpoint", str(ck), "--format", "points", "--root",
                     str(root), "--split", "test", "--backend", backend, "--json"]) == 0
        metrics = json.loads(capsys.readouterr().out)
        assert metrics["mae"] == abs(found[backend] - 5)
    assert found["torch"] == found["onnx"] == found["auto"] > 0


@pytest.fixture(scope="module")
def shipped_pair(tmp_path_factory):
    """The default shipped model eagerly and through its export (one export per module)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MASKFOCAL_CACHE", str(tmp_path_factory.mktemp("cache")))
        eager = Counter.from_pretrained("crowd-r18", device="cpu", backend="torch")
        exported = Counter.from_pretrained("crowd-r18", device="cpu", backend="onnx")
    assert (eager.predictor.backend, exported.predictor.backend) == ("torch", "onnx")
    return eager, exported


def test_the_shipped_model_counts_20_crowds_alike_on_both_backends(shipped_pair):
    """Issue 56: over >= 20 photos, identical counts and every head within 0.5 px."""
    from maskfocal.data.synthetic import SyntheticConfig, generate_scene

    eager, exported = shipped_pair
    counts = []
    for seed in range(20):
        scene = generate_scene(SyntheticConfig(width=320, height=240, min_count=5,
                                               max_count=60), seed=seed)
        a, b = eager(scene.pixels), exported(scene.pixels)
        same_heads(a, b)
        counts.append(a.count)
    assert sum(counts) > 50  # heads to compare in most photos


def test_the_shipped_model_counts_20_real_photos_alike_on_both_backends(shipped_pair):
    """The same on ShanghaiTech B test photos (1024 x 768), where they are present."""
    photos = sorted((SHARED_DATA / "ShanghaiTech" / "part_B" / "test_data" / "images")
                    .glob("*.jpg"))[:20]
    if len(photos) < 20:
        pytest.skip("ShanghaiTech B test photos are not present")
    eager, exported = shipped_pair
    for photo in photos:
        same_heads(eager(photo), exported(photo))


def test_the_service_counts_with_the_backend_it_is_given(default_backend, tmp_path):
    from maskfocal.service import CountingService, ServeSettings
    from maskfocal.testing import crowd_image

    with pytest.raises(MaskfocalError, match="unknown backend"):
        ServeSettings(backend="tensorrt").check()
    ck = checkpoint(tmp_path, "model.neck_channels=32", threshold=0.09)
    answers = {}
    for backend in ("torch", None):  # None: the default, auto
        service = CountingService(ServeSettings(checkpoint=str(ck), backend=backend))
        answers[backend] = service.count_now(crowd_image(), None, False)["count"]
        assert service.health()["backend"] == ("torch" if backend else "onnx")
    assert answers["torch"] == answers[None] > 0


def test_counting_through_onnx_runtime_leaves_torchvision_unimported(default_backend, tmp_path):
    """Its import costs 160 MB resident (torchvision pulls in torch._dynamo); counting with an
    export needs neither (the torch backend and training do, and import it where used)."""
    import subprocess
    import sys

    ck = checkpoint(tmp_path, "model.neck_channels=32")
    Counter.from_checkpoint(ck, device="cpu")  # exported into the cache here
    program = ("import sys, numpy as np; from maskfocal import Counter; "
               f"counter = Counter.from_checkpoint({str(ck)!r}, device='cpu'); "
               "assert counter.predictor.backend == 'onnx'; "
               "counter(np.zeros((64, 96, 3), np.uint8)); "
               "print(sorted({m.split('.')[0] for m in sys.modules} & {'torchvision', 'timm'}),"
               " 'torch._dynamo' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == ["[]", "False"]
