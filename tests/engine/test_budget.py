"""Training that counts on this machine: a wall-clock budget that the schedule fits, starting
from another run's weights, channels_last, decoded images kept in memory, persistent workers."""

from __future__ import annotations

import csv
import itertools
import math
import time
from pathlib import Path

import pytest
import torch

from maskfocal.checkpoint import load_checkpoint
from maskfocal.config import load_config
from maskfocal.data.training import AugmentOptions, TrainingSet
from maskfocal.engine import run_summary, train
from maskfocal.engine.trainer import BUDGET_CLOCKS, _ema_update, lr_factor_in_time
from maskfocal.errors import MaskfocalError
from maskfocal.families import family_for

TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"


def tiny(*overrides):
    return load_config(TINY, ["data.synthetic.test_images=0", "data.test_split=null",
                              *overrides])


def test_the_schedule_follows_the_clock():
    assert lr_factor_in_time(0, 10, 0.0) == pytest.approx(0.1)  # warm-up in steps
    assert lr_factor_in_time(50, 10, 0.0) == pytest.approx(1.0)
    assert lr_factor_in_time(50, 10, 0.5) == pytest.approx(0.5)
    assert lr_factor_in_time(50, 10, 1.0) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor_in_time(50, 10, 1.7) == pytest.approx(0.0, abs=1e-12)  # never negative


def test_a_wall_clock_budget_ends_with_a_finished_schedule(tmp_path, monkeypatch):
    """The wall clock here ticks one second each time the trainer reads it (each step, the end
    of each epoch, each validation's start and end), so how many epochs fit does not depend on
    how busy the machine is: under two training jobs on 2 cores, 24 real seconds held one."""
    assert BUDGET_CLOCKS["wall"] is time.perf_counter
    ticks = itertools.count()
    monkeypatch.setitem(BUDGET_CLOCKS, "wall", lambda: float(next(ticks)))
    budget = 0.4  # minutes: 24 ticks
    config = tiny(f"train.max_minutes={budget}", "train.epochs=1", "train.warmup_steps=1",
                  "train.lr=0.001", "data.synthetic.cache=true")
    result = train(config, tmp_path, progress=False)
    with (tmp_path / "metrics.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == result["epochs"] > 1  # train.epochs=1 is ignored under a budget
    assert result["budget_minutes"] == budget
    steps = int(rows[0]["step"])  # three batches of tiny
    epoch = (steps + 1 + 1) / 60  # minutes on that clock, with the validation that follows
    # stopped because the next epoch would not fit: inside the budget, give or take an epoch
    # and the validation that ends it
    assert budget - 2 * epoch - 0.05 <= result["minutes"] <= budget + epoch + 0.1
    assert float(rows[-1]["lr"]) < 0.35 * 0.001  # the cosine has nearly run out
    assert rows[-1]["val_mae"]  # the last epoch validates
    assert sum(bool(r["val_mae"]) for r in rows) <= 11  # about ten per budget
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["finished"] and state["elapsed_seconds"] == pytest.approx(
        60 * result["minutes"], rel=1e-6)
    resumed = train(config, tmp_path, resume=True, progress=False)  # a finished run stays so
    assert resumed["epochs"] == result["epochs"]


def test_a_process_clock_budget_counts_only_the_cpu_time_the_run_got(tmp_path, monkeypatch):
    """Time the run spends waiting (here: asleep in every step, as it would be behind other
    work on shared cores) does not count on ``train.budget_clock=process``."""
    from maskfocal.models import CenterNet

    nap, steps = 2.0, []  # two naps (the fewest: two epochs) outlast the whole budget
    forward = CenterNet.forward

    def sleepy(self, images, targets=None):
        if targets is not None:  # a training step
            time.sleep(nap)
            steps.append(1)
        return forward(self, images, targets)

    monkeypatch.setattr(CenterNet, "forward", sleepy)
    threads = torch.get_num_threads()  # one, as the clock is meant for: waiting OpenMP
    torch.set_num_threads(1)  # threads spin, and their spinning is CPU time too
    budget = 0.1  # minutes of CPU time: several epochs of tiny on one thread (0.05 fit one)
    config = tiny(f"train.max_minutes={budget}", "train.warmup_steps=1",
                  "train.budget_clock=process", "data.synthetic.cache=true")
    try:
        result = train(config, tmp_path, progress=False)
    finally:
        torch.set_num_threads(threads)
    # a wall clock would count every nap: more than the whole budget's worth of them
    assert 60 * result["minutes"] < nap * len(steps) and nap * len(steps) > 60 * budget
    assert result["epochs"] > 1 and load_checkpoint(tmp_path / "last.pt")["finished"]
    assert load_config(tmp_path / "config.yaml").train.budget_clock == "process"


def test_run_summary_reads_a_finished_run(tmp_path):
    result = train(load_config(TINY, ["train.epochs=2"]), tmp_path, progress=False)
    summary = run_summary(tmp_path)
    assert summary["epochs"] == 2 and summary["test"]["mae"] == result["test"]["mae"]
    assert [row[0] for row in summary["val_curve"]] == [1, 2]
    assert summary["best_val_mae"] == min(row[2] for row in summary["val_curve"])
    assert summary["training_images"] > 0 and len(summary["train_loss_curve"]) == 2
    with pytest.raises(MaskfocalError, match="has not finished"):
        run_summary(tmp_path / "elsewhere")


def test_the_ema_decay_ramps_up():
    averaged, current = [torch.zeros(2)], [torch.ones(2)]
    update = _ema_update(0.9)
    update(averaged, current, torch.tensor(0))  # decay min(0.9, 1/10): mostly the new weights
    assert torch.allclose(averaged[0], torch.full((2,), 0.9))
    update(averaged, current, torch.tensor(1000))  # decay 0.9 from then on
    assert torch.allclose(averaged[0], torch.full((2,), 0.9 + 0.1 * 0.1))


def test_the_ema_of_weights_validates_and_ships(tmp_path):
    result = train(tiny("train.epochs=1", "train.ema_decay=0.9"), tmp_path, progress=False)
    last, best = (load_checkpoint(tmp_path / name) for name in ("last.pt", "best.pt"))
    assert int(last["ema"]["n_averaged"]) == last["step"] > 0
    average = {k.removeprefix("module."): v for k, v in last["ema"].items()
               if k.startswith("module.")}
    conv = next(k for k in last["model"] if k.endswith("conv1.weight"))
    assert torch.equal(best["model"][conv], average[conv])  # one epoch: the best is the last
    assert not torch.equal(best["model"][conv], last["model"][conv])
    assert "ema" not in best and result["val"]["mae"] >= 0


def test_a_pretraining_stage_spends_part_of_the_budget(tmp_path):
    config = tiny("train.max_minutes=0.5", "train.warmup_steps=1", "pretrain.fraction=0.3",
                  "pretrain.overrides=[data.synthetic.seed=7, data.synthetic.max_count=20]")
    result = train(config, tmp_path, progress=False)
    stage = load_checkpoint(tmp_path / "pretrain" / "last.pt")
    assert stage["finished"] and stage["config"]["data"]["synthetic"]["seed"] == 7
    assert stage["config"]["train"]["max_minutes"] == pytest.approx(0.15)
    spent = stage["elapsed_seconds"] / 60
    main = load_checkpoint(tmp_path / "last.pt")["config"]
    assert main["model"]["init_from"] == str(tmp_path / "pretrain" / "best.pt")
    assert main["train"]["max_minutes"] == pytest.approx(0.5 - spent)
    assert main["pretrain"]["fraction"] is None and main["data"]["synthetic"]["seed"] == 0
    assert result["budget_minutes"] == pytest.approx(0.5 - spent)
    with (tmp_path / "pretrain" / "metrics.csv").open() as file:
        rows = file.read()
    again = train(config, tmp_path, resume=True, progress=False)  # both stages are finished
    assert again["epochs"] == result["epochs"]
    assert (tmp_path / "pretrain" / "metrics.csv").read_text() == rows
    with pytest.raises(MaskfocalError, match="already holds a training run"):
        train(config, tmp_path, progress=False)  # neither --resume nor --overwrite


@pytest.mark.parametrize("overrides, message", [
    (["train.max_minutes=1", "pretrain.fraction=1"], "pretrain.fraction must be"),
    (["pretrain.fraction=0.25"], "share of train.max_minutes"),  # no budget at all
    (["train.max_minutes=2", "pretrain.fraction=0.5", "model.init_from=x.pt"], "give one"),
    (["train.max_minutes=2", "pretrain.fraction=0.5",
      "pretrain.overrides=[pretrain.fraction=0.1]"], "cannot set pretrain"),
    (["train.max_minutes=2", "pretrain.fraction=0.5", "pretrain.overrides=[train.lr]"],
     "not key=value"),
])
def test_pretraining_mistakes_are_one_line_errors(overrides, message):
    with pytest.raises(MaskfocalError, match=message):
        tiny(*overrides)


def test_init_from_starts_from_another_runs_weights(tmp_path):
    train(tiny("train.epochs=1"), tmp_path / "pre", progress=False)
    source = load_checkpoint(tmp_path / "pre" / "best.pt")["model"]
    config = tiny("train.epochs=1", f"model.init_from={tmp_path / 'pre' / 'best.pt'}",
                  "train.lr=1e-12", "train.warmup_steps=1000")
    train(config, tmp_path / "fine", progress=False)
    tuned = load_checkpoint(tmp_path / "fine" / "last.pt")["model"]
    conv = next(k for k in source if k.endswith("conv1.weight"))
    assert torch.allclose(tuned[conv], source[conv], atol=1e-6)  # lr ~0: the same weights
    other = tiny("train.epochs=1", "model.head_channels=8",
                 f"model.init_from={tmp_path / 'pre' / 'best.pt'}")
    with pytest.raises(MaskfocalError, match=r"init_from.*do not fit"):
        train(other, tmp_path / "bad", progress=False)


def test_channels_last_trains_to_the_same_numbers():
    config = tiny()
    family = family_for(config)
    torch.manual_seed(0)
    model = family.build()
    dataset = TrainingSet(_images(config), config.data)
    from maskfocal.data.training import collate, detection_targets

    images, samples = collate([dataset[0], dataset[1]])
    model.train()
    plain = model(images, detection_targets(samples))
    fast = model.to(memory_format=torch.channels_last)
    nhwc = fast(images.contiguous(memory_format=torch.channels_last),
                detection_targets(samples))
    for key in plain:
        assert math.isclose(plain[key].item(), nhwc[key].item(), rel_tol=1e-4), key


def _images(config):
    from maskfocal.data.splits import build_splits

    return build_splits(config.data, seed=0)[0]


def test_kept_images_give_the_same_crops_and_epochs_reach_worker_copies():
    config = tiny()
    images = _images(config)
    plain = TrainingSet(images, AugmentOptions(input_size=64))
    kept = TrainingSet(images, AugmentOptions(input_size=64, cache_images=True))
    for key in (0, (3, 1), (3, 1), (4, 1)):  # the second (3, 1) comes from memory
        a, b = plain[key], kept[key]
        assert torch.equal(a.image, b.image) and torch.equal(a.points, b.points)
    assert len(kept.cache) == 2
    # an (epoch, index) item needs no set_epoch: what a persistent worker's stale copy sees
    assert not torch.equal(plain[(0, 1)].image, plain[(1, 1)].image)
    plain.set_epoch(1)
    assert torch.equal(plain[1].image, plain[(1, 1)].image)


def test_persistent_workers_train_like_one_process(tmp_path):
    one = train(tiny("train.epochs=2"), tmp_path / "zero", progress=False)
    two = train(tiny("train.epochs=2", "data.workers=1"), tmp_path / "one", progress=False)
    assert one["val"]["mae"] == pytest.approx(two["val"]["mae"])


def test_augmenting_on_the_device_gives_the_same_crops(tmp_path):
    """The images kept on the training device (here the CPU, the same code a GPU runs) give the
    crops of the plain path; the loader must then stay in the main process."""
    images = _images(tiny())
    plain = TrainingSet(images, AugmentOptions(input_size=64))
    on_device = TrainingSet(images, AugmentOptions(input_size=64, augment_on_device=True),
                            device="cpu")
    for key in (0, (3, 1), (3, 1)):
        a, b = plain[key], on_device[key]
        assert torch.equal(a.image, b.image) and torch.equal(a.boxes, b.boxes)
    assert on_device.cache[1].image.dtype == torch.uint8  # kept 8-bit
    with pytest.raises(MaskfocalError, match=r"data\.workers=0"):
        tiny("data.augment_on_device=true", "data.workers=1")
    result = train(tiny("train.epochs=1", "data.augment_on_device=true", "data.workers=0"),
                   tmp_path, progress=False)
    assert math.isfinite(result["val"]["mae"])


def test_extra_training_sources_join_train(tmp_path):
    from maskfocal.data.splits import build_splits
    from tests.data.test_readers import make_voc

    make_voc(tmp_path / "voc")
    config = tiny(f"data.extra_train=[voc:{tmp_path / 'voc'}]")
    train_images, val, _ = build_splits(config.data, seed=0)
    synthetic = len(build_splits(tiny().data, seed=0)[0])
    assert len(train_images) == synthetic + 1  # voc's train split: a.jpg
    assert train_images[-1].boxes is not None and len(train_images[-1].boxes) == 2
    assert len(val) == len(build_splits(tiny().data, seed=0)[1])  # val: data.root's own
    with pytest.raises(MaskfocalError, match="FORMAT:ROOT"):
        tiny("data.extra_train=[pictures]")
    with pytest.raises(MaskfocalError, match="expected a list"):
        tiny("data.extra_train=voc:here")


def test_carved_validation_holds_out_a_share_of_every_source(tmp_path):
    from maskfocal.data.splits import build_splits
    from tests.data.test_readers import make_voc

    voc = make_voc(tmp_path / "voc")
    (voc / "ImageSets" / "Main" / "train.txt").write_text("a\nb\n")
    data = load_config(None, ["data.format=voc", f"data.root={voc}", "data.val_split=null",
                              "data.val_fraction=0.5", f"data.extra_train=[voc:{voc}]"]).data
    train_images, val, test = build_splits(data, seed=0)
    assert len(val) == len(train_images) == 2  # one of the two held out per source
    assert [image.name for image in test] == ["b.jpg"]  # test: data.root alone


def test_cpu_bf16_autocast_trains_on_the_cpu_and_is_off_by_default(tmp_path, monkeypatch):
    """``train.cpu_bf16``: the training step runs under bfloat16 autocast on the CPU; off by
    default (every landed CPU recipe keeps float32)."""
    assert load_config(TINY).train.cpu_bf16 is False
    seen = []
    original = torch.autocast.__init__

    def spy(self, device_type, dtype=None, enabled=True, **options):
        seen.append((device_type, dtype, enabled))
        original(self, device_type, dtype=dtype, enabled=enabled, **options)

    monkeypatch.setattr(torch.autocast, "__init__", spy)
    train(tiny("train.epochs=1", "train.device=cpu"), tmp_path / "fp32", progress=False)
    assert seen and not any(enabled for _, _, enabled in seen)
    seen.clear()
    train(tiny("train.epochs=1", "train.device=cpu", "train.cpu_bf16=true"),
          tmp_path / "bf16", progress=False)
    assert ("cpu", torch.bfloat16, True) in seen
    fp32 = load_checkpoint(tmp_path / "fp32" / "last.pt")["model"]
    bf16 = load_checkpoint(tmp_path / "bf16" / "last.pt")["model"]
    assert all(torch.isfinite(t).all() for t in bf16.values() if t.is_floating_point())
    assert any(not torch.equal(fp32[k], bf16[k]) for k in fp32 if fp32[k].is_floating_point())
