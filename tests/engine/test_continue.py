"""Training that goes on from a model: a shipped model's name as the start, hard negatives mined
from a model and trained on, and a validation over several sources that weighs each the same."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from maskfocal.checkpoint import load_checkpoint
from maskfocal.cli import main
from maskfocal.config import load_config
from maskfocal.data.hard_negatives import far_from_heads, read_hard_negatives
from maskfocal.data.splits import build_splits, sources
from maskfocal.data.synthetic import SyntheticConfig, write_mot
from maskfocal.data.training import TrainingSet
from maskfocal.data.transforms import window_around
from maskfocal.decode import Detections
from maskfocal.engine import train
from maskfocal.errors import MaskfocalError
from maskfocal.inference import Predictions, balanced_threshold, calibrate_threshold, per_source
from maskfocal.mining import mine
from maskfocal.pretrained import pretrained_path
from maskfocal.structures import AnnotatedImage

TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"
SCENE = SyntheticConfig(width=192, height=160, max_count=40)


@pytest.fixture(scope="module")
def two_sources(tmp_path_factory) -> tuple[Path, Path]:
    """Two small datasets on disk (MOT layout): sparse scenes and dense ones."""
    root = tmp_path_factory.mktemp("sources")
    write_mot(root / "a", {"train": 10}, seed=1, config=SCENE)
    dense = SyntheticConfig(width=192, height=160, min_count=60, max_count=120)
    write_mot(root / "b", {"train": 10}, seed=2, config=dense)
    return root / "a", root / "b"


def on_disk(a: Path, b: Path, *overrides: str):
    return load_config(TINY, ["data.format=mot", f"data.root={a}", f"data.extra_train=[mot:{b}]",
                              "data.val_split=null", "data.val_fraction=0.2",
                              "data.test_split=null", *overrides])


def predictions(counts: list[int], truths: list[int]) -> Predictions:
    """One candidate per found head, all with score 0.5."""
    return Predictions(
        detections=[Detections(torch.zeros(n, 2), torch.full((n,), 0.5), None) for n in counts],
        gt_points=[np.zeros((t, 2), np.float32) for t in truths], gt_boxes=[None] * len(truths))


def test_the_relative_error_weighs_each_source_the_same():
    # source a: truth 10 and 10, found 12 and 8 -> MAE 2, mean 10: relative 0.2
    # source b: truth 1000, found 900 -> MAE 100, mean 1000: relative 0.1
    found = predictions([12, 8, 900], [10, 10, 1000])
    result = per_source(found, 0.3, ["a", "a", "b"])
    assert result["per_source"]["a"] == {"images": 2, "mae": 2.0, "mean_count": 10.0}
    assert result["per_source"]["b"]["mae"] == 100.0
    assert result["val_relative_mae"] == pytest.approx(0.15)
    # above 0.5 nothing is found: relative 1.0 for both, so the threshold stays below
    threshold, error = balanced_threshold(found, ["a", "a", "b"])
    assert threshold < 0.5 and error == pytest.approx(0.15)


def test_balanced_and_pooled_thresholds_differ_where_one_source_dominates():
    """A few big crowds (undercounted unless the threshold is low) and many small scenes
    (overcounted unless it is high): the pooled MAE follows the big crowds alone."""
    big = Detections(torch.zeros(1200, 2), torch.cat([torch.full((1000,), 0.6),
                                                      torch.full((200,), 0.2)]), None)
    small = Detections(torch.zeros(20, 2), torch.cat([torch.full((10,), 0.6),
                                                      torch.full((10,), 0.2)]), None)
    found = Predictions(detections=[big, small, small],
                        gt_points=[np.zeros((1200, 2)), np.zeros((10, 2)), np.zeros((10, 2))],
                        gt_boxes=[None] * 3)
    labels = ["dense", "sparse", "sparse"]
    pooled, _ = calibrate_threshold(found)
    balanced, _ = balanced_threshold(found, labels)
    assert pooled <= 0.2 < balanced  # pooled: the 1200; balanced: even 200/1200 < 10/10


def test_sources_are_the_roots_that_hold_each_image(two_sources):
    a, b = two_sources
    config = on_disk(a, b)
    _, val, _ = build_splits(config.data, seed=0)
    labels = sources(config.data, val)
    assert set(labels) == {str(a), str(b)} and len(labels) == 4  # 2 held out of each
    synthetic = load_config(TINY)
    assert set(sources(synthetic.data, build_splits(synthetic.data)[1])) == {"other"}


def test_best_checkpoint_and_threshold_follow_the_relative_error(two_sources, tmp_path):
    a, b = two_sources
    result = train(on_disk(a, b, "train.epochs=2"), tmp_path, progress=False)
    with (tmp_path / "metrics.csv").open() as file:
        rows = list(csv.DictReader(file))
    relative = [float(row["val_relative_mae"]) for row in rows]
    assert len(relative) == 2 and result["val"]["val_relative_mae"] == pytest.approx(
        relative[-1], abs=1e-4)
    assert set(result["val"]["per_source"]) == {str(a), str(b)}
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["best_mae"] == pytest.approx(min(relative), abs=1e-4)  # chosen by it
    one_source = train(load_config(TINY, ["train.epochs=1", "data.synthetic.test_images=0",
                                          "data.test_split=null"]), tmp_path / "one",
                       progress=False)
    assert "val_relative_mae" not in one_source["val"]  # one source: the MAE as before


def test_a_shipped_models_name_starts_a_run(tmp_path):
    """``--init crowd-r18`` (model.init_from by name): the run starts from its weights."""
    state = load_checkpoint(pretrained_path("crowd-r18"))
    model = state["config"]["model"]
    keys = ("name", "backbone", "neck_channels", "head_channels", "size_head", "output_stride")
    overrides = [f"model.{key}={model[key]}" for key in keys if key in model]
    code = main(["train", "--config", str(TINY), "--out", str(tmp_path / "run"), "--quiet",
                 "--init", "crowd-r18", *overrides, "train.epochs=1", "train.lr=1e-12",
                 "train.warmup_steps=1000", "data.synthetic.test_images=0",
                 "data.test_split=null", "data.synthetic.val_images=1"])
    assert code == 0
    trained = load_checkpoint(tmp_path / "run" / "last.pt")
    assert trained["config"]["model"]["init_from"] == "crowd-r18"
    conv = next(k for k in state["model"] if k.endswith("conv1.weight"))
    assert torch.allclose(trained["model"][conv], state["model"][conv], atol=1e-5)


def test_an_unknown_start_is_a_one_line_error(tmp_path, capsys):
    code = main(["train", "--config", str(TINY), "--out", str(tmp_path / "run"), "--quiet",
                 "--init", "crowd-nope", "train.epochs=1"])
    assert code == 2
    assert "crowd-nope" in capsys.readouterr().err


def test_false_heads_are_far_from_every_annotated_head():
    image = AnnotatedImage(None, np.array([[50, 50], [200, 50]], np.float32), 400, 300,
                           boxes=np.array([[40, 40, 60, 60], [150, 0, 250, 100]], np.float32))
    found = np.array([[55, 52], [90, 50], [260, 90], [300, 250]], np.float32)
    # 5 px from a head; 40 px from one (far); 60 px from the big head's centre but inside its
    # box grown by half; far from both
    assert far_from_heads(found, image, 32).tolist() == [False, True, False, True]
    points_only = AnnotatedImage(None, image.points, 400, 300)
    assert far_from_heads(found, points_only, 32).tolist() == [False, True, True, True]
    assert far_from_heads(found, AnnotatedImage(None, np.zeros((0, 2)), 400, 300), 32).all()


def test_a_hard_negative_crop_holds_its_false_head():
    rng = np.random.default_rng(0)
    for x, y in [(5, 5), (100, 80), (395, 295)]:
        top, left = window_around(x, y, 300, 400, 128, rng)
        assert 0 <= top <= 300 - 128 and 0 <= left <= 400 - 128
        assert top <= y < top + 128 and left <= x < left + 128


def write_negatives(path: Path, images: dict[str, list]) -> Path:
    path.write_text(json.dumps({"format": "maskfocal-hard-negatives/1", "images": images}))
    return path


def test_hard_negatives_add_crops_around_them(two_sources, tmp_path):
    a, b = two_sources
    config = on_disk(a, b)
    train_images, _, _ = build_splits(config.data, seed=0)
    target = train_images[3]
    spot = [20.0, 30.0]
    file = write_negatives(tmp_path / "hard.json", {
        str(target.image_path): [[*spot, 0.5]], "/elsewhere/not_in_training.jpg": [[1, 1, 0.9]]})
    config = on_disk(a, b, f"data.hard_negatives={file}", "data.hard_negative_crops=0.2",
                     "data.min_scale=1", "data.max_scale=1", "data.flip=false")
    dataset = TrainingSet(train_images, config.data, seed=0)
    assert len(dataset) == len(train_images) + round(len(train_images) * 0.25)
    pixels = torch.from_numpy(np.array(target.load_image())).permute(2, 0, 1).float() / 255
    config.data.color_jitter = 0.0
    for index in range(len(train_images), len(dataset)):  # every extra crop: around the spot
        crop = dataset[index].image
        hits = [(top, left) for top in range(0, 160 - 128 + 1)
                for left in range(0, 192 - 128 + 1)
                if torch.allclose(pixels[:, top:top + 128, left:left + 128], crop, atol=1e-4)]
        assert hits and all(top <= spot[1] < top + 128 and left <= spot[0] < left + 128
                            for top, left in hits)


@pytest.mark.parametrize(("text", "message"), [
    ("{", "not a hard-negatives file"),
    ('{"format": "other"}', "its 'format' is not"),
    ('{"format": "maskfocal-hard-negatives/1", "images": {"a.jpg": [["x"]]}}',
     "positions of 'a.jpg'"),
    ('{"format": "maskfocal-hard-negatives/1", "images": {"a.jpg": [[NaN, 1, 1]]}}',
     "not all finite"),
])
def test_a_bad_hard_negatives_file_is_a_one_line_error(tmp_path, text, message):
    path = tmp_path / "hard.json"
    path.write_text(text)
    with pytest.raises(MaskfocalError, match=message):
        read_hard_negatives(path)
    with pytest.raises(MaskfocalError, match="not found"):
        read_hard_negatives(tmp_path / "missing.json")
    with pytest.raises(MaskfocalError, match=r"hard_negative_crops needs data\.hard_negatives"):
        load_config(TINY, ["data.hard_negative_crops=0.2"])


def test_mining_finds_false_heads_and_never_the_validation_images(two_sources, tmp_path):
    a, b = two_sources
    config = on_disk(a, b, "train.epochs=1")
    train(config, tmp_path / "run", progress=False)
    out = tmp_path / "hard.json"
    code = main(["mine", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--out", str(out),
                 "--threshold", "0.05", "--min-distance", "1", "--quiet"])
    assert code == 0
    document = json.loads(out.read_text())
    train_images, val, _ = build_splits(config.data, seed=0)
    assert document["images_mined"] == len(train_images)
    mined = set(document["images"])
    assert mined and mined <= {str(Path(i.image_path).resolve()) for i in train_images}
    assert not mined & {str(Path(i.image_path).resolve()) for i in val}
    found = read_hard_negatives(out)
    assert sum(len(p) for p in found.values()) == document["false_heads"]
    again = main(["mine", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--out", str(out),
                  "--quiet"])
    assert again == 2  # never replaces a file unasked


def test_mine_keeps_only_heads_far_from_annotated_ones(two_sources, tmp_path):
    """With every candidate of a model kept (threshold ~0), a large distance leaves fewer."""
    from maskfocal.inference import Predictor

    a, b = two_sources
    config = on_disk(a, b, "train.epochs=1")
    train(config, tmp_path / "run", progress=False)
    predictor = Predictor.from_checkpoint(tmp_path / "run" / "best.pt", device="cpu")
    near = mine(predictor, config, threshold=0.05, min_distance=1, progress=False)
    far = mine(predictor, config, threshold=0.05, min_distance=40, progress=False)
    assert far["false_heads"] < near["false_heads"]
