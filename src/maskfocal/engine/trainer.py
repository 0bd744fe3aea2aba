"""The training loop: data, optimiser, schedule, checkpoints, validation, calibration.

Device, autocast and seeding are decided here, once. Everything a run writes goes under its
``out`` folder: ``config.yaml``, ``last.pt`` (every epoch), ``best.pt`` (lowest validation
MAE), ``metrics.csv``, TensorBoard events in ``tb/`` and ``test_metrics.json``.
"""

from __future__ import annotations

import csv
import io
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from maskfocal.config import Config, load_config
from maskfocal.data.readers import read_dataset
from maskfocal.data.synthetic import SyntheticConfig, SyntheticCrowds
from maskfocal.data.training import AugmentOptions, TrainingSet, collate
from maskfocal.errors import MaskfocalError
from maskfocal.io import (
    MANIFEST,
    OutputFolder,
    atomic_write_text,
    dumps_json,
    remove_stale_temporaries,
)
from maskfocal.models import build_model
from maskfocal.structures import AnnotatedImage

from .checkpoint import checkpoint_config, load_checkpoint, save_checkpoint
from .distributed import Distributed, GlobalBatches
from .evaluate import Predictions, calibrate_threshold, predict, score
from .tasks import LOSS_KEYS, training_losses

RESUME_KEYS = ("optimizer", "scheduler", "epoch", "step", "best_mae", "threshold")


def metric_columns(model_name: str) -> tuple[str, ...]:
    return ("epoch", "step", "loss", *LOSS_KEYS[model_name], "lr", "val_mae", "val_rmse",
            "val_nae", "threshold", "images_per_second", "seconds")


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise MaskfocalError("train.device=cuda but no CUDA device is available")
    return torch.device(name)


def build_splits(config: Config) -> tuple[Sequence[AnnotatedImage], Sequence[AnnotatedImage],
                                          Sequence[AnnotatedImage]]:
    """(train, val, test) images the config names; val is carved from train when missing."""
    data = config.data
    if data.format == "synthetic":
        s = data.synthetic
        scenes = SyntheticConfig(width=s.width, height=s.height, max_count=s.max_count)
        splits = (SyntheticCrowds(s.train_images, seed=s.seed, config=scenes),
                  SyntheticCrowds(s.val_images, seed=s.seed, config=scenes,
                                  offset=s.train_images),
                  SyntheticCrowds(s.test_images, seed=s.seed, config=scenes,
                                  offset=s.train_images + s.val_images))
        if s.cache:
            return tuple([crowds[i] for i in range(len(crowds))] for crowds in splits)
        return splits
    train = read_dataset(data.format, data.root, split=data.train_split).images
    val: list[AnnotatedImage] = []
    if data.val_split is not None:
        try:
            val = read_dataset(data.format, data.root, split=data.val_split).images
        except MaskfocalError as error:
            if "no split" not in str(error):
                raise
            print(f"no {data.val_split!r} split; carving {data.val_fraction:.0%} of train "
                  "for validation", file=sys.stderr)
    if not val and data.val_fraction > 0:
        order = np.random.default_rng(config.train.seed).permutation(len(train))
        held = max(1, round(len(train) * data.val_fraction))
        val = [train[i] for i in sorted(order[:held])]
        train = [train[i] for i in sorted(order[held:])]
    test: list[AnnotatedImage] = []
    if data.test_split is not None:
        test = read_dataset(data.format, data.root, split=data.test_split).images
    train = [image for image in train if image.labelled]
    if not train:
        raise MaskfocalError(f"{data.root}: no labelled training images")
    return train, val, test


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


RUN_FILES = ("config.yaml", "last.pt", "best.pt", "metrics.csv", "test_metrics.json", "tb")
"""What a run writes in its folder; nothing else there is touched."""


class _Run:
    """Files of one training run, and the rule that keeps them: a folder that already holds
    a run is continued (``resume``) or replaced (``overwrite``) only when asked, and files
    that ``maskfocal train`` did not write are never replaced."""

    def __init__(self, out: str | Path, columns: tuple[str, ...], *, resume: bool,
                 overwrite: bool) -> None:
        last = Path(out) / "last.pt"
        self.resume = resume and last.is_file()
        # a checkpoint that loads proves the run's files are train's, manifest or not
        self.folder = OutputFolder(out, "train", overwrite=overwrite or self.resume)
        self.out = self.folder.path
        self.overwrite = overwrite
        self.columns = columns
        self.last = last
        self.best = self.out / "best.pt"
        self.metrics = self.out / "metrics.csv"
        existing = [name for name in RUN_FILES if (self.out / name).exists()]
        if existing and not (resume or overwrite) and (
                last.is_file() or all(self.folder.owns(name) for name in existing)):
            raise MaskfocalError(f"{self.out} already holds a training run "
                                 f"({', '.join(existing)}): continue it with --resume, replace "
                                 "it with --overwrite, or choose another --out")
        for name in RUN_FILES:  # files of others: a one-line error now, before any work
            self.folder.check(name)

    def claim(self) -> None:
        """Take the folder (main process only, after every process has checked it)."""
        self.folder.claim_all(RUN_FILES)
        remove_stale_temporaries(self.out, (*RUN_FILES, MANIFEST, "probe"))  # killed writers
        if self.overwrite and not self.resume:  # a replaced run's curves are not this run's
            for events in (self.out / "tb").glob("events.out.tfevents.*"):
                events.unlink()

    def read_metrics(self) -> list[dict[str, str]]:
        if not self.metrics.is_file():
            return []
        with self.metrics.open(newline="") as file:
            return [row for row in csv.DictReader(file)
                    if (row.get("epoch") or "").strip().isdigit()]

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.metrics, buffer.getvalue())


def default_run_folder(base: str | Path = "runs/train") -> Path:
    """``runs/train``, or ``runs/train-2``, ``-3``, ... : the first that is missing or empty
    (like ultralytics' ``runs/train2``), so that a run never lands on an earlier one."""
    base = Path(base)
    candidate, number = base, 1
    while candidate.exists() and (not candidate.is_dir() or any(candidate.iterdir())):
        number += 1
        candidate = base.with_name(f"{base.name}-{number}")
    return candidate


def train(config: Config, out: str | Path, *, resume: bool = False, overwrite: bool = False,
          progress: bool = True, stop_after: int | None = None) -> dict[str, Any]:
    """Train ``config`` into ``out``; returns the final validation and test metrics.

    ``resume=True`` continues from ``out/last.pt`` exactly (weights, optimiser, schedule, data
    order and augmentation all continue). A folder that already holds a run needs ``resume``
    or ``overwrite`` (replace it); files there that training did not write are never
    replaced. ``stop_after`` ends the run after that epoch, as an interruption would (for
    tests and time-boxed runs).
    """
    from tqdm import tqdm

    run = _Run(out, metric_columns(config.model.name), resume=resume, overwrite=overwrite)
    loss_keys = LOSS_KEYS[config.model.name]
    state = None
    if run.resume:
        state = load_checkpoint(run.last)
        saved = checkpoint_config(state, run.last)
        if saved.model != config.model:
            raise MaskfocalError(f"{run.last}: model config differs from the run being "
                                 "resumed; resume with the same model settings")
        missing = [key for key in RESUME_KEYS if key not in state]
        if missing:
            raise MaskfocalError(f"{run.last}: cannot resume from it, it has no "
                                 f"{', '.join(missing)} (a best.pt or exported weights?)")
    distributed, device = Distributed.from_env(config.train.device)
    main_process = distributed.is_main
    distributed.barrier()  # every process has checked the folder before the first write
    if main_process:
        run.claim()
    torch.manual_seed(config.train.seed)
    model = build_model(config, pretrained=state is None).to(device)
    net: torch.nn.Module = model  # what the training step calls: model, or DDP around it
    if distributed.world > 1:
        if device.type == "cuda":  # batch statistics over the global batch (nccl only)
            model = net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    train_images, val_images, test_images = build_splits(config)
    dataset = TrainingSet(train_images, AugmentOptions(
        size=config.data.input_size, min_scale=config.data.min_scale,
        max_scale=config.data.max_scale, flip=config.data.flip,
        jitter=config.data.color_jitter), seed=config.train.seed)
    batch_size = min(config.data.batch_size, len(dataset))
    steps_per_epoch = len(dataset) // batch_size
    total_steps = steps_per_epoch * config.train.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.lr,
                                  weight_decay=config.train.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, config.train.warmup_steps, total_steps))
    amp = config.train.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp and amp_dtype == torch.float16)

    start_epoch, step, best_mae = 0, 0, math.inf
    threshold = config.decode.threshold
    rows: list[dict[str, Any]] = []
    if state is not None:
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as error:
            raise MaskfocalError(f"{run.last}: cannot resume from it, its state does not fit "
                                 f"this run ({str(error).splitlines()[0][:200]})") from None
        start_epoch, step = state["epoch"] + 1, state["step"]
        best_mae, threshold = state["best_mae"], state["threshold"]
        rows = [row for row in run.read_metrics() if int(row["epoch"]) < start_epoch]
        if main_process:
            print(f"resuming {run.last} at epoch {start_epoch + 1}", file=sys.stderr)
    if main_process:
        atomic_write_text(run.out / "config.yaml", config.to_yaml())
    writer = _tensorboard(run.out / "tb") if main_process else _NullWriter()
    progress = progress and main_process

    def checkpoint(epoch: int) -> dict[str, Any]:
        return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "epoch": epoch, "step": step,
                "config": config.to_dict(), "threshold": threshold, "best_mae": best_mae}

    val_metrics: dict[str, float] = {}
    for epoch in range(start_epoch, config.train.epochs):
        dataset.set_epoch(epoch)
        generator = torch.Generator().manual_seed(config.train.seed * 100003 + epoch)
        batches = GlobalBatches(len(dataset), batch_size, generator, distributed.rank,
                                distributed.world)
        loader = DataLoader(dataset, batch_sampler=batches, num_workers=config.data.workers,
                            collate_fn=collate, pin_memory=device.type == "cuda")
        model.train()
        sums = dict.fromkeys(("loss", *loss_keys), 0.0)
        started, seen = time.perf_counter(), 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.train.epochs}", unit="batch",
                   disable=not progress, leave=False)
        for images, samples in bar:
            images = images.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
                losses = training_losses(model, images, samples, config, call=net)
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                raise MaskfocalError(f"loss became {loss.item()} at epoch {epoch + 1}, step "
                                     f"{step + 1}; try a lower train.lr or train.grad_clip")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.train.grad_clip > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            seen += len(samples) * distributed.world
            sums["loss"] += loss.item()
            for key in loss_keys:
                sums[key] += losses[key].item()
            rate = seen / (time.perf_counter() - started)
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{scheduler.get_last_lr()[0]:.1e}",
                            img_s=f"{rate:.1f}")
        seconds = time.perf_counter() - started
        row: dict[str, Any] = {"epoch": epoch, "step": step,
                               "lr": scheduler.get_last_lr()[0], "seconds": round(seconds, 2),
                               "images_per_second": round(seen / max(seconds, 1e-9), 2)}
        totals = distributed.sum(list(sums.values()))  # mean over processes and steps
        row.update({k: v / distributed.world / max(1, steps_per_epoch)
                    for k, v in zip(sums, totals, strict=True)})
        last_epoch = epoch == config.train.epochs - 1
        if val_images and ((epoch + 1) % config.train.eval_every == 0 or last_epoch):
            predictions = _predict_shared(model, val_images, distributed, device=device,
                                          decode=config.decode,
                                          max_side=config.data.max_eval_side,
                                          progress=progress)
            epoch_threshold = (calibrate_threshold(predictions)[0] if config.decode.calibrate
                               else config.decode.threshold)
            val_metrics = score(predictions, epoch_threshold)
            row.update(val_mae=val_metrics["mae"], val_rmse=val_metrics["rmse"],
                       val_nae=val_metrics["nae"], threshold=epoch_threshold)
            if val_metrics["mae"] < best_mae:
                best_mae, threshold = val_metrics["mae"], epoch_threshold
                if main_process:
                    save_checkpoint(run.best, checkpoint(epoch))
        elif not val_images and main_process:
            save_checkpoint(run.best, checkpoint(epoch))
        rows.append(row)
        if main_process:  # only the main process writes; the others hold the same state
            save_checkpoint(run.last, checkpoint(epoch))
            run.write_metrics(rows)
        for key, value in row.items():
            if key not in ("epoch", "step") and value is not None:
                writer.add_scalar(key, float(value), epoch + 1)
        writer.flush()
        if progress:
            print(_epoch_line(row, config.train.epochs), file=sys.stderr)
        if stop_after is not None and epoch + 1 >= stop_after and not last_epoch:
            writer.close()
            distributed.barrier()
            distributed.close()
            return {"stopped_after_epoch": epoch + 1}
    writer.close()
    result: dict[str, Any] = {"val": val_metrics, "threshold": threshold}
    if test_images and main_process:  # test on the main process alone: no shared files needed
        best_state = load_checkpoint(run.best)
        model.load_state_dict(best_state["model"])
        started = time.perf_counter()
        predictions = predict(model, test_images, device=device, decode=config.decode,
                              max_side=config.data.max_eval_side, progress=progress)
        seconds = time.perf_counter() - started
        result["test"] = score(predictions, best_state["threshold"])
        result["test"]["images_per_second"] = len(test_images) / seconds
        atomic_write_text(run.out / "test_metrics.json", dumps_json(result["test"], indent=2))
    distributed.barrier()
    distributed.close()
    return result


def _predict_shared(model: torch.nn.Module, images: Sequence[AnnotatedImage],
                    distributed: Distributed, **options: Any) -> Predictions:
    """:func:`predict` with the images shared out among the processes, then gathered in the
    original order (every process gets all predictions, so all calibrate alike)."""
    if distributed.world == 1:
        return predict(model, images, **options)
    rank, world = distributed.rank, distributed.world
    local = predict(model, [images[i] for i in range(rank, len(images), world)], **options)
    parts = distributed.gather(local.detections)
    detections = [parts[i % world][i // world] for i in range(len(images))]
    return Predictions(detections=detections,
                       gt_points=[image.points for image in images],
                       gt_boxes=[image.boxes for image in images],
                       names=[image.name for image in images])


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    text = (f"epoch {row['epoch'] + 1}/{epochs}  loss {row['loss']:.4f}  "
            f"{row['images_per_second']:.1f} img/s")
    if row.get("val_mae") is not None:
        text += (f"  val MAE {row['val_mae']:.2f}  RMSE {row['val_rmse']:.2f}  "
                 f"(threshold {row['threshold']:.2f})")
    return text


class _NullWriter:
    def add_scalar(self, *args: Any) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


def _tensorboard(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is a dependency; degrade rather than fail a run
        return _NullWriter()
    return SummaryWriter(log_dir=str(folder))


def train_from_files(config_path: str | None, out: str | Path, overrides: list[str], *,
                     resume: bool = False, overwrite: bool = False,
                     progress: bool = True) -> dict[str, Any]:
    """The ``maskfocal train`` entry: config file + overrides, or a resumed run's own config."""
    base = None
    last = Path(out) / "last.pt"
    if resume and overwrite:
        raise MaskfocalError("--resume continues a run and --overwrite replaces it; give one")
    if resume and last.is_file():
        base = load_checkpoint(last)["config"]
    elif config_path is None:
        raise MaskfocalError("--config is required (unless --resume finds a run in --out)")
    config = load_config(config_path, overrides, base=base)
    return train(config, out, resume=resume, overwrite=overwrite, progress=progress)
