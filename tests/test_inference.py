"""Counting in practice: the Counter API, tiles, video, overlays, ONNX."""

from __future__ import annotations

import csv
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from maskfocal import Counter
from maskfocal.checkpoint import save_checkpoint
from maskfocal.cli import main
from maskfocal.config import load_config
from maskfocal.families import build_model
from maskfocal.inference import Predictor
from maskfocal.inference.tiles import merge_across_tiles, plan_tiles, tile_spans
from maskfocal.models import CenterNet

SMALL = ["model.neck_channels=16", "model.head_channels=8"]


def checkpoint(folder, *overrides, threshold=0.3):
    config = load_config(None, [*SMALL, *overrides])
    torch.manual_seed(0)
    path = folder / f"{config.model.name}.pt"
    model = build_model(config)
    if config.model.name == "retinanet":  # scores of a fresh RetinaNet (~0.01) lie below the
        model.head.classification_head.cls_logits.bias.data.fill_(-2.2)  # decoding floor
    save_checkpoint(path, {"model": model.state_dict(),
                           "config": config.to_dict(), "threshold": threshold})
    return path


def dots(height, width, count, seed=0):
    """Single bright pixels on black, at least 12 px apart (some on tile borders)."""
    rng = np.random.default_rng(seed)
    pixels = np.zeros((height, width, 3), np.uint8)
    centres = []
    for _ in range(count):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        if pixels[max(0, y - 12):y + 13, max(0, x - 12):x + 13].any():
            continue
        pixels[y, x] = 255
        centres.append((x, y))
    return pixels, np.array(centres, dtype=float)


def dot_finder(batch):
    """A local 'model': one peak per dot at stride 4, receptive field 12 px."""
    cells = F.avg_pool2d(batch.mean(1, keepdim=True), 4)
    kernel = torch.tensor([1.0, 2.0, 1.0])
    kernel = (kernel[:, None] * kernel[None, :] / 16).view(1, 1, 3, 3)
    heat = F.conv2d(cells, kernel, padding=1)
    return {"heatmap": 1000 * (heat - 0.0117),
            "offset": torch.full_like(heat, 0.5).repeat(1, 2, 1, 1)}


def by_position(points):
    """Points in x-then-y order: equal scores may come out in either order."""
    return points[np.lexsort((points[:, 1], points[:, 0]))]


def dot_counter(**options):
    config = load_config(None, SMALL)
    return Counter(Predictor(CenterNet(backbone_name="resnet18", neck_channels=16,
                                       head_channels=8), config,
                             config.inference_options().replace(**options), runner=dot_finder),
                   0.5)


def test_tiled_count_equals_whole_image_count():
    pixels, centres = dots(700, 900, 400)
    whole = dot_counter(tile_above=None)(pixels, return_heatmap=True)
    tiled = dot_counter(tile_above=0, tile_size=256, tile_overlap=64)(pixels,
                                                                       return_heatmap=True)
    assert len(plan_tiles(700, 900, 256, 64)) > 9
    assert whole.count == len(centres)
    assert tiled.count == whole.count
    assert np.allclose(by_position(tiled.points), by_position(whole.points))
    assert tiled.heatmap.shape == whole.heatmap.shape == (175, 225)
    assert np.allclose(tiled.heatmap, whole.heatmap, atol=1e-6)


def test_heads_seen_by_two_tiles_are_merged():
    points = np.array([[100.0, 50.0], [103.0, 50.0], [200.0, 50.0], [203.0, 51.0]])
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    tiles = np.array([0, 1, 1, 1])  # the last pair is one tile's two heads: kept
    assert merge_across_tiles(points, scores, tiles, radius=8).tolist() == [0, 2, 3]
    assert merge_across_tiles(points, scores, tiles, radius=0).tolist() == [0, 1, 2, 3]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 5000), st.integers(64, 1024), st.integers(0, 200))
def test_tiles_cover_with_overlap_and_cores_partition(length, tile, overlap):
    if tile <= overlap + 4:
        with pytest.raises(ValueError):
            tile_spans(length, tile, overlap)
        return
    spans = tile_spans(length, tile, overlap)
    assert spans[0][0] == 0 and spans[-1][1] == length
    assert spans[0][2] == 0 and spans[-1][3] == length
    for (s0, e0, _, c1), (s1, e1, c0, _) in itertools.pairwise(spans):
        assert e0 - s1 >= overlap and s1 % 4 == 0 and c1 == c0  # overlap; cores touch
        assert s0 <= c1 <= e0 and s1 <= c0 <= e1
    assert all(end - start <= tile + 3 for start, end, _, _ in spans)


def test_counter_batches_and_input_types(tmp_path):
    counter = Counter.from_checkpoint(checkpoint(tmp_path, threshold=0.12), device="cpu")
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, (60 + 8 * i, 80, 3), dtype=np.uint8) for i in range(3)]
    single = [counter(image) for image in images]
    batched = counter(images)
    assert [r.count for r in batched] == [r.count for r in single]
    assert all(np.allclose(a.points, b.points, atol=1e-4)
               for a, b in zip(batched, single, strict=True))
    same = np.stack([images[0]] * 2)
    assert [r.count for r in counter(same)] == [single[0].count] * 2
    tensor = torch.from_numpy(same).permute(0, 3, 1, 2).float() / 255
    assert [r.count for r in counter(tensor)] == [single[0].count] * 2
    path = tmp_path / "a.png"
    Image.fromarray(images[0]).save(path)
    assert counter(str(path)).count == counter(Image.fromarray(images[0])).count \
        == single[0].count
    assert counter(images[0].astype(np.float32) / 255).count == single[0].count
    assert counter(np.zeros((50, 60), np.uint8)).count == counter(np.zeros((50, 60, 3),
                                                                          np.uint8)).count


def test_tiled_random_model_runs_and_stitches(tmp_path):
    counter = Counter.from_checkpoint(checkpoint(tmp_path), device="cpu", tile_above=200,
                                      tile_size=128, tile_overlap=32)
    result = counter(np.random.default_rng(0).integers(0, 255, (250, 330, 3), np.uint8),
                     return_heatmap=True)
    assert result.heatmap.shape == (63, 83) and result.count == len(result.points)
    assert (result.points[:, 0] < 330).all() and (result.points[:, 1] < 250).all()


def test_video_counts_every_nth_frame(tmp_path):
    av = pytest.importorskip("av")
    clip = tmp_path / "clip.mp4"
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
        for index in range(12):
            pixels, _ = dots(96, 160, 3 + index, seed=index)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    ck = checkpoint(tmp_path, threshold=0.12)
    out = tmp_path / "out"
    assert main(["count", str(clip), "--checkpoint", str(ck), "--every", "3",
                 "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "clip.counts.csv").open()))
    assert [int(r["frame"]) for r in rows] == [0, 3, 6, 9]
    assert [float(r["time_s"]) for r in rows] == pytest.approx([0.0, 0.3, 0.6, 0.9])
    with av.open(str(out / "clip.overlay.mp4")) as annotated:
        frames = list(annotated.decode(video=0))
    assert len(frames) == 4 and (frames[0].width, frames[0].height) == (160, 96)
    assert not list(out.glob(".*part*"))
    assert main(["count", str(tmp_path / "missing.mp4"), "--checkpoint", str(ck)]) == 2
    (tmp_path / "bad.mp4").write_bytes(b"no video here")
    assert main(["count", str(tmp_path / "bad.mp4"), "--checkpoint", str(ck)]) == 2


def test_overlay_and_contact_sheet():
    from maskfocal.inference import CountResult
    from maskfocal.visualize import contact_sheet, draw_overlay

    pixels = np.zeros((80, 120, 3), np.uint8)
    heat = np.zeros((20, 30), np.float32)
    heat[10, 15] = 1.0
    result = CountResult(1, np.array([[60.0, 40.0]]), np.array([0.9]), None, heat)
    picture = np.asarray(draw_overlay(pixels, result))
    assert picture.shape == (80, 120, 3) and picture[40, 62].any()  # heatmap blended in
    sheet = contact_sheet([(Image.fromarray(picture), "a: 1")] * 5, thumb=64, columns=2)
    assert sheet.size == (2 * 72 + 8, 3 * (64 + 18 + 8) + 8)


@pytest.mark.parametrize("name", ["centernet", pytest.param("fcos", marks=pytest.mark.slow),
                                  "retinanet"])
def test_onnx_counts_equal_pytorch(tmp_path, name):
    pytest.importorskip("onnxruntime")
    ck = checkpoint(tmp_path, f"model.name={name}", "model.neck_channels=32",
                    threshold={"centernet": 0.09, "fcos": 0.075, "retinanet": 0.1}[name])
    onnx_path = tmp_path / f"{name}.onnx"
    assert main(["export", "--checkpoint", str(ck), "--format", "onnx", "--out",
                 str(onnx_path)]) == 0
    eager = Counter.from_checkpoint(ck, device="cpu")
    exported = Counter.from_checkpoint(onnx_path, device="cpu")
    assert exported.threshold == eager.threshold
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in ((96, 128),
                                                                           (150, 100))]
    counts = []
    for image in images:
        a, b = eager(image), exported(image)
        counts.append(a.count)
        assert a.count == b.count
        assert np.allclose(by_position(a.points), by_position(b.points), atol=1e-3)
    assert max(counts) > 0  # the thresholds above leave heads to compare
    image_path = tmp_path / "one.png"
    Image.fromarray(images[0]).save(image_path)
    assert main(["count", str(image_path), "--checkpoint", str(onnx_path), "--json"]) == 0


def test_export_and_onnx_errors(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    garbage = tmp_path / "model.onnx"
    garbage.write_bytes(b"not onnx")
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(image)
    assert main(["count", str(image), "--checkpoint", str(garbage)]) == 2
    assert "not a readable ONNX model" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(tmp_path / "none.pt"), "--out",
                 str(tmp_path / "x.onnx")]) == 2
    assert main(["count", str(image), "--checkpoint", str(checkpoint(tmp_path)),
                 "--tile-size", "32"]) == 2


def test_input_scale_resizes_before_the_model_and_maps_heads_back(tmp_path):
    from maskfocal.data.transforms import fit_image

    image = torch.rand(3, 50, 100)
    assert fit_image(image, 2048, 2.0)[0].shape == (3, 100, 200)
    assert fit_image(image, 150, 2.0)[1] == 1.5  # data.max_eval_side still caps it
    path = checkpoint(tmp_path, "decode.input_scale=2.0", threshold=0.05)
    counter = Counter.from_checkpoint(path, device="cpu")
    seen = []
    counter.predictor.model.register_forward_hook(lambda module, inputs, output:
                                                  seen.append(tuple(inputs[0].shape[-2:])))
    result = counter(dots(60, 90, 5)[0], return_heatmap=True)
    assert seen == [(128, 192)]  # 120 x 180, padded to a multiple of 32
    assert result.count > 0 and (result.points[:, 0] < 90).all() and (
        result.points[:, 1] < 60).all()
    assert result.heatmap.shape == (15, 23)  # the image's own size at stride 4


def test_onnx_equals_pytorch_on_efficientnet_lite(tmp_path):
    """TensorFlow "same" padding (timm's dynamic pad, fixed for the export: it took minutes
    of symbolic shape reasoning) exports in seconds and gives the same maps."""
    pytest.importorskip("onnxruntime")
    ck = checkpoint(tmp_path, "model.backbone=efficientnet_lite0", "model.neck_channels=32",
                    threshold=0.09)
    onnx_path = tmp_path / "lite.onnx"
    assert main(["export", "--checkpoint", str(ck), "--out", str(onnx_path)]) == 0
    eager = Counter.from_checkpoint(ck, device="cpu")
    exported = Counter.from_checkpoint(onnx_path, device="cpu")
    for height, width in ((96, 128), (150, 100)):  # 150 x 100 pads to 160 x 128
        image = np.random.default_rng(height).integers(0, 255, (height, width, 3), np.uint8)
        a, b = eager(image, return_heatmap=True), exported(image, return_heatmap=True)
        assert a.heatmap.shape == b.heatmap.shape
        assert np.allclose(a.heatmap, b.heatmap, atol=1e-4)
        assert a.count == b.count


def one_image_dataset(folder, name, pixels, heads):
    """``folder/data``: a points-format test split of one image with ``heads`` heads."""
    import json

    root = folder / "data"
    (root / "test").mkdir(parents=True)
    Image.fromarray(pixels).save(root / "test" / f"{name}.png")
    (root / "test" / f"{name}.json").write_text(json.dumps({"points": [[10.0, 10.0]] * heads}))
    return root


def test_eval_count_counter_and_service_agree_on_a_tiled_image_at_the_model_scale(tmp_path,
                                                                                  capsys):
    """One prediction path: a photo large enough to tile at the model's input scale gets the
    same heads from ``eval``, ``count``, :class:`Counter` and the web service."""

    from maskfocal.evaluation import evaluate_checkpoint

    ck = checkpoint(tmp_path, "decode.input_scale=1.5", threshold=0.09)
    # wider than the 2,048 px above which counting tiles (it once tiled at scale 1 there,
    # while eval scaled the whole photo down to 2,048)
    pixels = np.random.default_rng(3).integers(0, 255, (200, 2100, 3), dtype=np.uint8)
    root = one_image_dataset(tmp_path, "wide", pixels, heads=5)
    assert not Counter.from_checkpoint(ck, device="cpu").predictor.tiled(200, 2100)  # default
    counter = Counter.from_checkpoint(ck, device="cpu", tile_above=2048)
    assert counter.predictor.tiled(200, 2100)
    assert len(counter.predictor.tiles(200, 2100)) == 4  # 682 px tiles: 1,024 once scaled
    expected = counter(pixels).count
    assert expected > 0
    metrics = evaluate_checkpoint(ck, "points", str(root), split="test",
                                  save_dir=tmp_path / "eval", device="cpu", tile_above=2048)
    rows = (tmp_path / "eval" / "per_image.csv").read_text().splitlines()
    assert rows[1].split(",")[3] == str(expected)
    assert metrics["mae"] == abs(expected - 5)
    capsys.readouterr()
    assert main(["count", str(root / "test" / "wide.png"), "--checkpoint", str(ck), "--json",
                 "--device", "cpu", "--tile-above", "2048"]) == 0
    assert f'"count": {expected}' in capsys.readouterr().out
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from maskfocal.service import ServeSettings, create_app

    settings = ServeSettings(checkpoint=str(ck), inference={"tile_above": 2048})
    with TestClient(create_app(settings)) as client:
        answer = client.post("/api/count", files={"image": ("wide.png",
                                                        (root / "test" / "wide.png")
                                                        .read_bytes(), "image/png")})
    assert answer.status_code == 200 and answer.json()["count"] == expected
    # and without tiles (the default: scaled down to data.max_eval_side), the same agreement
    scaled_down = Counter.from_checkpoint(ck, device="cpu")(pixels).count
    assert evaluate_checkpoint(ck, "points", str(root), split="test",
                               device="cpu")["mae"] == abs(scaled_down - 5)


def test_eval_of_an_onnx_export_scores_what_its_checkpoint_scores(tmp_path):
    pytest.importorskip("onnxruntime")
    from maskfocal.evaluation import evaluate_checkpoint

    ck = checkpoint(tmp_path, "data.synthetic.test_images=3", threshold=0.09)
    onnx_path = tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(ck), "--out", str(onnx_path)]) == 0
    scored = {}
    for name, path in (("eager", ck), ("onnx", onnx_path)):
        scored[name] = evaluate_checkpoint(path, "synthetic", None, split="test",
                                           save_dir=tmp_path / name, device="cpu")
    predicted = {name: [row.split(",")[3] for row in
                        (tmp_path / name / "per_image.csv").read_text().splitlines()[1:]]
                 for name in scored}
    assert predicted["onnx"] == predicted["eager"]
    assert any(int(count) > 0 for count in predicted["eager"])  # heads to compare
    assert scored["onnx"]["mae"] == scored["eager"]["mae"]
    assert scored["onnx"]["f1_sigma8"] == scored["eager"]["f1_sigma8"]


def test_faster_rcnn_counts_everywhere_and_refuses_onnx_in_one_line(tmp_path, capsys):
    """The two-stage family through the one prediction path: Counter (tiled, which once
    failed for every box family: it asked them for a heatmap stride), count and eval agree;
    export says why it cannot, and writes nothing."""
    import json

    from maskfocal.evaluation import evaluate_checkpoint

    ck = checkpoint(tmp_path, "model.name=faster_rcnn", threshold=0.5)
    pixels = np.random.default_rng(5).integers(0, 255, (160, 300, 3), dtype=np.uint8)
    root = one_image_dataset(tmp_path, "a", pixels, heads=3)
    tiled = {"tile_above": 256, "tile_size": 192, "tile_overlap": 32}
    counter = Counter.from_checkpoint(ck, device="cpu", **tiled)
    assert counter.predictor.tiled(160, 300)
    result = counter(pixels)
    assert result.count > 0 and result.boxes is not None and len(result.boxes) == result.count
    whole = Counter.from_checkpoint(ck, device="cpu")(pixels).count
    metrics = evaluate_checkpoint(ck, "points", str(root), split="test", device="cpu")
    assert metrics["mae"] == abs(whole - 3)
    capsys.readouterr()
    assert main(["count", str(root / "test" / "a.png"), "--checkpoint", str(ck), "--json",
                 "--tile-above", "256", "--tile-size", "192", "--tile-overlap", "32"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["count"] == result.count
    out = tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(ck), "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert "faster_rcnn is not exported to ONNX" in error and "\n" not in error
    assert not out.exists()


def grid_of_dots(spacing: int, height: int = 240, width: int = 320) -> np.ndarray:
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[spacing // 2::spacing, spacing // 2::spacing] = 255
    return pixels


def test_auto_scale_brings_the_spacing_of_heads_to_the_target():
    from maskfocal.decode import Detections

    predictor = dot_counter(scale="auto").predictor
    assert predictor.scale_target == 18.0 and predictor.input_scale == 1.0

    def spaced(step: float, n: int = 6) -> Detections:
        points = torch.tensor([[x * step, 0.0] for x in range(n)])
        return Detections(points, torch.ones(n), None)

    assert predictor.auto_scale(spaced(12)) == 1.5  # 18 / 12
    assert predictor.auto_scale(spaced(10)) == 1.75  # 1.8: the nearest of the scales
    assert predictor.auto_scale(spaced(4)) == 2.0  # at most 2
    assert predictor.auto_scale(spaced(40)) == 1.0  # at least 1
    assert predictor.auto_scale(spaced(12, n=4)) == 1.0  # too few heads: the fixed scale
    assert predictor.at_scale(1.5).scale_target is None  # a chosen scale is every photo's


def test_auto_counts_each_photo_at_its_chosen_scale():
    counter = dot_counter(scale="auto", tile_above=None)
    for spacing, scale in ((30, 1.0), (12, 1.5)):
        pixels = grid_of_dots(spacing)
        first = counter.predictor.at_scale(1.0).find([pixels], 0.5)[0][0]
        assert counter.predictor.auto_scale(first) == scale
        fixed = Counter(counter.predictor.at_scale(scale), 0.5)(pixels)
        auto = counter(pixels)
        assert auto.count == fixed.count > 0
        assert np.allclose(by_position(auto.points), by_position(fixed.points))


def test_a_models_scale_target_makes_auto_its_default(tmp_path):
    path = checkpoint(tmp_path, "decode.scale_target=12")
    assert Predictor.from_checkpoint(path, device="cpu").scale_target == 12.0
    assert Predictor.from_checkpoint(path, device="cpu", scale=1.25).scale_target is None
    (tmp_path / "plain").mkdir()
    plain = checkpoint(tmp_path / "plain")
    assert Predictor.from_checkpoint(plain, device="cpu").scale_target is None


@pytest.mark.parametrize("value", ["0", "-1", "big", "nan"])
def test_a_bad_scale_is_a_one_line_error(tmp_path, capsys, value):
    image = tmp_path / "a.png"
    Image.fromarray(grid_of_dots(20)).save(image)
    assert main(["count", str(image), "--checkpoint", str(checkpoint(tmp_path)),
                 "--scale", value]) == 2
    assert "--scale" in capsys.readouterr().err


def test_count_takes_scale_auto_or_a_number_and_eval_checks_it(tmp_path, capsys):
    image = tmp_path / "a.png"
    Image.fromarray(grid_of_dots(20)).save(image)
    path = checkpoint(tmp_path, threshold=0.12)
    assert main(["count", str(image), "--checkpoint", str(path), "--scale", "auto",
                 "--json"]) == 0
    assert main(["count", str(image), "--checkpoint", str(path), "--scale", "1.5",
                 "--json"]) == 0
    assert main(["eval", "--checkpoint", str(path), "--format", "synthetic",
                 "--scale", "zero"]) == 2
    assert "--scale" in capsys.readouterr().err


def test_a_photo_is_shrunk_while_8_bit_within_one_grey_level_of_the_float_resize():
    """Issue 56: a huge photo counted whole is scaled down before its float copy exists."""
    from maskfocal.data.transforms import fit_image, fit_pixels, to_tensor

    pixels = np.random.default_rng(0).integers(0, 255, (300, 500, 3), dtype=np.uint8)
    for max_side, scale in ((200, 1.0), (200, 1.5), (2048, 1.5), (2048, 1.0)):
        lean, lean_scale = fit_pixels(pixels, max_side, scale)
        full, full_scale = fit_image(to_tensor(pixels), max_side, scale)
        assert lean_scale == full_scale and lean.shape == full.shape and lean.dtype == full.dtype
        if lean_scale >= 1:
            assert torch.equal(lean, full)  # enlarged or as it is: the same path
        else:
            assert (lean - full).abs().max() <= 1 / 255 + 1e-6


def _scene_jpeg(path, width, height, seed=4, orientation=None):
    from maskfocal.data.synthetic import SyntheticConfig, generate_scene

    scene = generate_scene(SyntheticConfig(width=width, height=height, min_count=40,
                                           max_count=80), seed=seed)
    image = Image.fromarray(scene.pixels)
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    image.save(path, quality=95, exif=exif)
    return scene.pixels


def test_a_huge_jpeg_counted_whole_is_read_smaller_with_its_heads_in_its_own_pixels(tmp_path):
    """A JPEG shrunk at least twofold for the network is decoded at 1/2, 1/4 or 1/8 (never
    below the network's side), and its heads and zones are in the photo's own pixels."""
    from maskfocal.structures import read_rgb
    from maskfocal.zones import zones_from_dict

    photo = tmp_path / "big.jpg"
    _scene_jpeg(photo, 2400, 1800)
    counter = Counter.from_checkpoint(checkpoint(tmp_path, threshold=0.1), device="cpu",
                                      max_eval_side=600, scale=1.0)
    assert counter.predictor.decode_side(1800, 2400) == 600
    pixels, size = read_rgb(photo, counter.predictor.decode_side)
    assert pixels.shape == (450, 600, 3) and size == (1800, 2400)
    whole = counter(counter.read_image(photo))
    read_small = counter(photo)
    assert whole.count > 10
    assert abs(read_small.count - whole.count) <= max(2, 0.05 * whole.count)
    assert read_small.points[:, 0].max() > 1200 and read_small.points[:, 1].max() > 900
    assert (read_small.points <= [2400, 1800]).all()
    everything = zones_from_dict({"zones": [{"name": "all", "polygon": [
        [0, 0], [2400, 0], [2400, 1800], [0, 1800]]}]}, "zones", None)
    assert counter(photo, zones=everything).zones == {"all": read_small.count}
    # never where the photo is counted in tiles, at a scale per photo, or shrunk less
    assert counter.predictor.decode_side(1100, 1100) is None
    assert Counter.from_checkpoint(checkpoint(tmp_path), device="cpu", max_eval_side=600,
                                   tile_above=1000).predictor.decode_side(1800, 2400) is None
    assert Counter.from_checkpoint(checkpoint(tmp_path), device="cpu", max_eval_side=600,
                                   scale="auto").predictor.decode_side(1800, 2400) is None


def test_read_rgb_gives_the_upright_size_and_reads_other_formats_whole(tmp_path):
    from maskfocal.structures import read_rgb

    turned = tmp_path / "turned.jpg"
    _scene_jpeg(turned, 1600, 1200, orientation=6)  # a phone held upright
    pixels, size = read_rgb(turned, lambda height, width: 400)
    assert size == (1600, 1200) and pixels.shape == (400, 300, 3)
    assert read_rgb(turned)[0].shape == (1600, 1200, 3)
    flat = tmp_path / "flat.png"
    Image.fromarray(np.zeros((1200, 1600, 3), np.uint8)).save(flat)
    pixels, size = read_rgb(flat, lambda height, width: 400)
    assert pixels.shape == (1200, 1600, 3) and size == (1200, 1600)
