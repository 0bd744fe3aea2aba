"""The training loop: data, optimiser, schedule, checkpoints, validation, calibration.

Device, autocast and seeding are decided here, once. Everything a run writes goes under its
``out`` folder: ``config.yaml``, ``last.pt`` (every epoch), ``best.pt`` (lowest validation
MAE), ``metrics.csv``, TensorBoard events in ``tb/`` and ``test_metrics.json``.

:func:`train` reads as its steps: check the run folder, join the processes, build the model,
the data and the optimisation (:class:`_Session`), then per epoch train, validate and save,
then test. What differs between detectors is the family's (:mod:`maskfocal.families`).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from maskfocal.checkpoint import load_checkpoint, save_checkpoint
from maskfocal.config import Config, config_from_checkpoint, load_config
from maskfocal.data.splits import build_splits, sources
from maskfocal.data.training import TrainingSet, collate, detection_targets
from maskfocal.errors import MaskfocalError
from maskfocal.families import DetectorFamily, family_for
from maskfocal.fileio import (
    atomic_write_text,
    dumps_json,
)
from maskfocal.inference import (
    Predictions,
    Predictor,
    balanced_threshold,
    calibrate_threshold,
    per_source,
    score,
)
from maskfocal.structures import AnnotatedImage

from .distributed import Distributed, GlobalBatches
from .run_folder import RunFolder

RESUME_KEYS = ("optimizer", "scheduler", "epoch", "step", "best_mae")
BUDGET_CLOCKS = {"wall": time.perf_counter, "process": time.process_time}
"""``train.budget_clock``: what ``train.max_minutes`` counts. ``wall`` is the clock on the wall;
``process`` is the CPU time this process got (every thread's), so a run that shares its cores
with other work trains as many steps as one alone, only later: a budget that means the same
compute on a busy machine. Meant for one-thread runs: waiting OpenMP threads spin, and on busy
cores their spinning counts too."""




def metric_columns(family: DetectorFamily) -> tuple[str, ...]:
    return ("epoch", "step", "loss", *family.loss_keys, "lr", "val_mae", "val_rmse",
            "val_nae", "val_relative_mae", "threshold", "images_per_second", "seconds", "minutes")


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _ema_update(decay: float):
    """``AveragedModel``'s update for an exponential moving average whose decay ramps up as
    ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates (TensorFlow's rule), so the first
    steps' random weights fade out quickly."""
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], updates) -> None:
        n = float(updates)
        pairs = [(a, c) for a, c in zip(averaged, current, strict=True)
                 if a.is_floating_point()]
        if pairs:  # AveragedModel calls once per (device, dtype) group
            torch._foreach_lerp_([a for a, _ in pairs], [c for _, c in pairs],
                                 1.0 - min(decay, (1.0 + n) / (10.0 + n)))
        for a, c in zip(averaged, current, strict=True):  # counters (BatchNorm's): copied
            if not a.is_floating_point():
                a.copy_(c)
    return update


def lr_factor_in_time(step: int, warmup: int, spent: float) -> float:
    """With a wall-clock budget: linear warm-up over ``warmup`` steps, then cosine decay over
    the budget (``spent``: the share of it used, 0 to 1), reaching 0 as it runs out."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, spent)))


def train(config: Config, out: str | Path, *, resume: bool = False, overwrite: bool = False,
          progress: bool = True, stop_after: int | None = None) -> dict[str, Any]:
    """Train ``config`` into ``out``; returns the final validation and test metrics.

    ``resume=True`` continues from ``out/last.pt`` exactly (weights, optimiser, schedule, data
    order and augmentation all continue). A folder that already holds a run needs ``resume``
    or ``overwrite`` (replace it); files there that training did not write are never
    replaced. ``stop_after`` ends the run after that epoch, as an interruption would (for
    tests and time-boxed runs). The calibrated threshold is written into the run's config
    (``decode.threshold`` of ``config.yaml`` and of every checkpoint); ``config`` itself is
    left as it was.
    """
    config = copy.deepcopy(config)
    family = family_for(config)
    run = RunFolder(out, metric_columns(family), resume=resume, overwrite=overwrite)
    if config.pretrain.fraction:  # the first stage, trained (or found finished) in OUT/pretrain
        config = _pretrain(config, run.out, resume=resume, overwrite=overwrite,
                           progress=progress)
    state = _resume_state(run, config)
    if state is not None and state.get("finished") and (run.out / "test_metrics.json").is_file():
        # a finished run is read-only: nothing to train, nothing of it rewritten
        if progress:
            print(f"{run.out}: the run finished earlier; nothing to do (--overwrite trains it "
                  "again)", file=sys.stderr)
        return {"finished_earlier": True, "threshold": config.decode.threshold,
                "test": json.loads((run.out / "test_metrics.json").read_text())}
    distributed, device = Distributed.from_env(config.train.device)
    distributed.barrier()  # every process has checked the folder before the first write
    if distributed.is_main:
        run.claim()
    session = _Session(config, family, run, distributed, device, state,
                       progress=progress and distributed.is_main)
    epoch = session.start_epoch
    while not session.finished:
        row = session.train_epoch(epoch)
        final = session.is_final(epoch)
        if session.validates(epoch, final):
            row.update(session.validate(epoch))
        session.end_epoch(epoch, row, final)
        if stop_after is not None and epoch + 1 >= stop_after and not final:
            session.close()
            return {"stopped_after_epoch": epoch + 1}
        epoch += 1
    result = session.test()
    session.close()
    return result


def _pretrain(config: Config, out: Path, *, resume: bool, overwrite: bool,
              progress: bool) -> Config:
    """Train ``pretrain``'s stage into ``out/pretrain`` (``resume`` continues it, or finds it
    finished; ``overwrite`` replaces it) and return the main stage's config: starting from
    the stage's best weights, with the minutes the stage left of ``train.max_minutes``."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise MaskfocalError("pretrain.fraction runs in one process: under torchrun, train the "
                             "stage first and start from it with model.init_from")
    folder = out / "pretrain"
    minutes = config.pretrain.fraction * config.train.max_minutes
    stage = load_config(None, [*config.pretrain.overrides, f"train.max_minutes={minutes}"],
                        base={**config.to_dict(), "pretrain": {"fraction": None,
                                                               "overrides": []}})
    if progress:
        print(f"pre-training: {minutes:g} of {config.train.max_minutes:g} minutes, in "
              f"{folder}", file=sys.stderr)
    train(stage, folder, resume=resume, overwrite=overwrite, progress=progress)
    last = folder / "last.pt"
    spent = float(load_checkpoint(last)["elapsed_seconds"]) / 60
    main = copy.deepcopy(config)
    main.pretrain.fraction, main.pretrain.overrides = None, []
    main.model.init_from = str(folder / "best.pt")
    main.train.max_minutes = max(config.train.max_minutes - spent, 1e-3)
    return main


def _resume_state(run: RunFolder, config: Config) -> dict[str, Any] | None:
    """The state of ``last.pt`` to continue from (``None`` for a fresh run), checked against
    the run's config."""
    if not run.resume:
        return None
    state = load_checkpoint(run.last)
    saved = config_from_checkpoint(state, run.last)
    # where the first weights came from does not matter once a run is under way
    if dataclasses.replace(saved.model, init_from=None) != dataclasses.replace(
            config.model, init_from=None):
        raise MaskfocalError(f"{run.last}: model config differs from the run being "
                             "resumed; resume with the same model settings")
    changed = _changed_keys(saved, config)
    if changed:
        key, was, now = changed[0]
        more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
        raise MaskfocalError(f"{run.last}: the run was trained with {key}={was!r}, this asks "
                             f"for {now!r}{more}; resume with the run's own config (no "
                             "--config, no overrides), or train another --out")
    missing = [key for key in RESUME_KEYS if key not in state]
    if missing:
        raise MaskfocalError(f"{run.last}: cannot resume from it, it has no "
                             f"{', '.join(missing)} (a best.pt or exported weights?)")
    return state


RESUME_MAY_CHANGE = ("train.device", "data.workers", "data.cache_images", "decode.")
"""What a resumed run may set differently: where and how fast it runs, and decoding (the
threshold is calibrated by the run itself); everything else decides what is trained."""


def _changed_keys(saved: Config, config: Config) -> list[tuple[str, Any, Any]]:
    """``(key, saved value, new value)`` of every setting that differs, but those of
    :data:`RESUME_MAY_CHANGE`."""

    def flat(node: Any, prefix: str = "") -> dict[str, Any]:
        if isinstance(node, dict):
            return {k: v for key, value in node.items()
                    for k, v in flat(value, f"{prefix}{key}.").items()}
        return {prefix[:-1]: node}

    old, new = flat(saved.to_dict()), flat(config.to_dict())
    return [(key, old.get(key), new.get(key)) for key in sorted(old.keys() | new.keys())
            if old.get(key) != new.get(key) and not key.startswith(RESUME_MAY_CHANGE)]


def parameter_groups(model: torch.nn.Module, lr: float, backbone_lr: float) -> list[dict]:
    """The optimiser's groups: the backbone's parameters at ``backbone_lr * lr``, the rest
    (neck, heads) at ``lr``; one group when the factor is 1."""
    from maskfocal.models import Backbone

    trainable = [p for p in model.parameters() if p.requires_grad]
    if backbone_lr == 1.0:
        return [{"params": trainable}]
    in_backbone = {id(p) for module in model.modules() if isinstance(module, Backbone)
                   for p in module.parameters()}
    return [{"params": [p for p in trainable if id(p) in in_backbone],
             "lr": lr * backbone_lr},
            {"params": [p for p in trainable if id(p) not in in_backbone]}]


class _Session:
    """One training run's moving parts: model, data, optimisation, progress and logs."""

    def __init__(self, config: Config, family: DetectorFamily, run: RunFolder,
                 distributed: Distributed, device: torch.device,
                 state: dict[str, Any] | None, *, progress: bool) -> None:
        self.config, self.family, self.run = config, family, run
        self.distributed, self.device, self.progress = distributed, device, progress
        self.main = distributed.is_main
        self.elapsed = 0.0  # seconds of training and validation, over every resumed part
        self.clock = BUDGET_CLOCKS[config.train.budget_clock]  # what self.elapsed counts
        if config.train.budget_clock == "process" and distributed.world > 1:
            raise MaskfocalError("train.budget_clock=process counts one process's CPU time; "
                                 "under torchrun the processes must agree: use wall")
        self._build_model(pretrained=state is None)
        self._build_data()
        self._build_optimisation()
        self.start_epoch, self.step, self.best_mae = 0, 0, math.inf
        self.finished = False
        self.epoch_costs: list[float] = []  # seconds of the budget's clock
        self.validation_costs: list[float] = []
        self.rows: list[dict[str, Any]] = []
        self.val_metrics: dict[str, float] = {}
        if state is not None:
            self._restore(state)
        if self.main:
            atomic_write_text(run.out / "config.yaml", config.to_yaml())
        self.writer = _tensorboard(run.out / "tb") if self.main else _NullWriter()

    # building ----------------------------------------------------------------------------
    def _build_model(self, *, pretrained: bool) -> None:
        """The model on its device (``self.net``: what the training step calls, the model or
        DistributedDataParallel around it), initialised from ``train.seed``."""
        torch.manual_seed(self.config.train.seed)
        self.model = self.family.build(pretrained=pretrained).to(self.device)
        if pretrained and self.config.model.init_from:
            self._initialise(self.config.model.init_from)
        if self.config.train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.net: torch.nn.Module = self.model
        if self.distributed.world > 1:
            if self.device.type == "cuda":  # batch statistics over the global batch (nccl)
                self.model = self.net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(
                    self.model)
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda"
                else None)
        decay = self.config.train.ema_decay
        self.ema = None if not decay else torch.optim.swa_utils.AveragedModel(
            self.model, multi_avg_fn=_ema_update(decay), use_buffers=True)

    @property
    def eval_model(self) -> torch.nn.Module:
        """What validation, the test and ``best.pt`` use: the EMA of the weights when
        ``train.ema_decay`` is set, else the model itself."""
        return self.model if self.ema is None else self.ema.module

    def _initialise(self, path: str) -> None:
        """Start from the weights of another run (``model.init_from``: a ``.pt``, a
        ``.safetensors`` or a shipped model's name, e.g. ``crowd-lite0``): synthetic
        pre-training then real data, or a shipped model trained on."""
        from maskfocal.pretrained import checkpoint_or_shipped

        state = load_checkpoint(checkpoint_or_shipped(path))
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as error:
            raise MaskfocalError(f"model.init_from {path}: its weights do not fit this model "
                                 f"({str(error).splitlines()[0][:160]}); pre-train with the "
                                 "same model settings") from None
        if self.main:
            print(f"starting from the weights of {path}", file=sys.stderr)

    def _build_data(self) -> None:
        config = self.config
        train_images, self.val_images, self.test_images = build_splits(
            config.data, seed=config.train.seed)
        # validation over several sources (data.extra_train) weighs each source the same
        self.val_sources = sources(config.data, self.val_images)
        self.balanced = len(set(self.val_sources)) > 1
        self.dataset = TrainingSet(train_images, config.data, seed=config.train.seed,
                                   device=self.device)
        self.batch_size = min(config.data.batch_size, len(self.dataset))
        self.steps_per_epoch = len(self.dataset) // self.batch_size
        distributed, workers = self.distributed, config.data.workers
        self.batches = GlobalBatches(len(self.dataset), self.batch_size, torch.Generator(),
                                     distributed.rank, distributed.world, epoch=0)
        self.loader = DataLoader(self.dataset, batch_sampler=self.batches, num_workers=workers,
                                 collate_fn=collate, pin_memory=self.device.type == "cuda"
                                 and not config.data.augment_on_device,
                                 persistent_workers=workers > 0)

    def _build_optimisation(self) -> None:
        """AdamW, warm-up then cosine decay over every step, and autocast on CUDA."""
        train = self.config.train
        total_steps = self.steps_per_epoch * train.epochs
        self.budget = None if train.max_minutes is None else 60.0 * train.max_minutes
        self.optimizer = torch.optim.AdamW(parameter_groups(self.model, train.lr,
                                                            train.backbone_lr),
                                           lr=train.lr, weight_decay=train.weight_decay)
        if self.budget is None:
            schedule = lambda step: lr_factor(step, train.warmup_steps, total_steps)  # noqa: E731
        else:  # the cosine follows the clock: a finished schedule whatever the speed
            schedule = lambda step: lr_factor_in_time(  # noqa: E731
                step, train.warmup_steps, self.elapsed / self.budget)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        self.amp = train.amp and self.device.type == "cuda"
        self.amp_dtype = (torch.bfloat16 if self.amp and torch.cuda.is_bf16_supported()
                          else torch.float16)
        if train.cpu_bf16 and self.device.type == "cpu":
            self.amp, self.amp_dtype = True, torch.bfloat16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and
                                           self.amp_dtype == torch.float16)

    def _restore(self, state: dict[str, Any]) -> None:
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            if self.ema is not None:
                self.ema.load_state_dict(state["ema"])
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as error:
            raise MaskfocalError(f"{self.run.last}: cannot resume from it, its state does not "
                                 f"fit this run ({str(error).splitlines()[0][:200]})") from None
        self.start_epoch, self.step = state["epoch"] + 1, state["step"]
        self.best_mae = state["best_mae"]
        self.config.decode.threshold = config_from_checkpoint(state, self.run.last).decode.threshold
        self.elapsed = float(state.get("elapsed_seconds", 0.0))
        self.finished = bool(state.get("finished", False)) or (
            self.budget is None and self.start_epoch >= self.config.train.epochs)
        self.rows = [row for row in self.run.read_metrics()
                     if int(row["epoch"]) < self.start_epoch]
        if self.main:
            print(f"resuming {self.run.last} at epoch {self.start_epoch + 1}", file=sys.stderr)

    # one epoch ---------------------------------------------------------------------------
    def is_final(self, epoch: int) -> bool:
        """Whether this epoch ends the run: the last of ``train.epochs``, or, with a budget,
        the last whose successor (and its validation) would not fit in what is left."""
        if self.budget is None:
            return epoch >= self.config.train.epochs - 1
        recent = self.epoch_costs[-3:]
        next_epoch = sum(recent) / len(recent)
        if self.validation_costs:
            next_epoch += sum(self.validation_costs) / len(self.validation_costs)
        return self.elapsed + next_epoch > self.budget

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """One pass over the training images; the row of ``metrics.csv`` so far."""
        from tqdm import tqdm

        config, distributed = self.config, self.distributed
        self.dataset.set_epoch(epoch)
        self.batches.start_epoch(epoch, torch.Generator().manual_seed(
            config.train.seed * 100003 + epoch))
        self.model.train()
        # crops of one size: let cuDNN pick its fastest kernels (off again for validation,
        # whose image sizes vary)
        torch.backends.cudnn.benchmark = self.device.type == "cuda"
        sums = dict.fromkeys(("loss", *self.family.loss_keys), 0.0)
        started, seen = time.perf_counter(), 0
        mark = self.clock()
        self.epoch_started_at = self.elapsed
        of = (f"{self.budget / 60:.0f} min" if self.budget is not None
              else f"{config.train.epochs}")
        bar = tqdm(self.loader, desc=f"epoch {epoch + 1}/{of}", unit="batch",
                   disable=not self.progress, leave=False)
        for images, samples in bar:
            now = self.clock()
            self.elapsed += now - mark  # before the step: the schedule reads the clock
            mark = now
            images = images.to(self.device, non_blocking=True)
            if config.train.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            losses = self._step(images, samples, epoch)
            seen += len(samples) * distributed.world
            for key, value in losses.items():
                sums[key] += value
            rate = seen / (time.perf_counter() - started)
            bar.set_postfix(loss=f"{losses['loss']:.3f}",
                            lr=f"{self.scheduler.get_last_lr()[0]:.1e}", img_s=f"{rate:.1f}")
        seconds = time.perf_counter() - started
        self.elapsed += self.clock() - mark
        self.epoch_costs.append(self.elapsed - self.epoch_started_at)
        row: dict[str, Any] = {"epoch": epoch, "step": self.step,
                               "lr": self.scheduler.get_last_lr()[0],
                               "seconds": round(seconds, 2),
                               "images_per_second": round(seen / max(seconds, 1e-9), 2)}
        totals = distributed.sum(list(sums.values()))  # mean over processes and steps
        row.update({k: v / distributed.world / max(1, self.steps_per_epoch)
                    for k, v in zip(sums, totals, strict=True)})
        return row

    def _step(self, images: torch.Tensor, samples, epoch: int) -> dict[str, float]:
        """One optimiser step; the loss and its parts as numbers."""
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
            losses = self.net(images, detection_targets(samples, images.device))
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise MaskfocalError(f"loss became {loss.item()} at epoch {epoch + 1}, step "
                                 f"{self.step + 1}; try a lower train.lr or train.grad_clip")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.config.train.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.train.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.step += 1
        return {"loss": loss.item(), **{key: losses[key].item()
                                        for key in self.family.loss_keys}}

    def validates(self, epoch: int, final: bool) -> bool:
        """Every ``train.eval_every`` epochs, or about ``train.validations`` times over a
        budget; always at the end."""
        if not self.val_images:
            return False
        if final:
            return True
        if self.budget is None:
            return (epoch + 1) % self.config.train.eval_every == 0
        interval = self.budget / self.config.train.validations  # this epoch crossed one
        return int(self.elapsed / interval) > int(self.epoch_started_at / interval)

    def validate(self, epoch: int) -> dict[str, Any]:
        """Validation errors at the threshold calibrated this epoch; a better error makes this
        epoch's weights ``best.pt`` and its threshold the run's. The error is the MAE, or,
        when the validation images come from several sources, the mean relative MAE over
        them (each source's MAE over its mean count), for the threshold and for ``best.pt``:
        a pooled MAE would follow the source with the biggest crowds alone."""
        config = self.config
        started = self.clock()
        torch.backends.cudnn.benchmark = False
        predictor = Predictor(self.eval_model, config, config.inference_options(), self.device)
        predictions = _predict_shared(predictor, self.val_images, self.distributed,
                                      progress=self.progress)
        if not config.decode.calibrate:
            threshold = config.decode.threshold
        elif self.balanced:
            threshold = balanced_threshold(predictions, self.val_sources)[0]
        else:
            threshold = calibrate_threshold(predictions)[0]
        self.val_metrics = score(predictions, threshold)
        if self.balanced:
            self.val_metrics.update(per_source(predictions, threshold, self.val_sources))
        error = self.val_metrics["val_relative_mae" if self.balanced else "mae"]
        cost = self.clock() - started
        self.elapsed += cost
        self.validation_costs.append(cost)
        if error < self.best_mae:
            self.best_mae = error  # the selection error: relative when balanced
            self.config.decode.threshold = threshold  # the threshold's one home
            if self.main:
                atomic_write_text(self.run.out / "config.yaml", config.to_yaml())
                save_checkpoint(self.run.best, self._checkpoint(epoch, best=True))
        return {"val_mae": self.val_metrics["mae"], "val_rmse": self.val_metrics["rmse"],
                "val_nae": self.val_metrics["nae"],
                "val_relative_mae": self.val_metrics.get("val_relative_mae"),
                "threshold": threshold}

    def end_epoch(self, epoch: int, row: dict[str, Any], final: bool) -> None:
        """Checkpoints, ``metrics.csv``, TensorBoard and the epoch's line."""
        self.finished = final
        row["minutes"] = round(self.elapsed / 60, 3)
        if not self.val_images and self.main:
            save_checkpoint(self.run.best, self._checkpoint(epoch, best=True))
        self.rows.append(row)
        if self.main:  # only the main process writes; the others hold the same state
            save_checkpoint(self.run.last, self._checkpoint(epoch))
            self.run.write_metrics(self.rows)
        for key, value in row.items():
            if key not in ("epoch", "step") and value is not None:
                self.writer.add_scalar(key, float(value), epoch + 1)
        self.writer.flush()
        if self.progress:
            print(_epoch_line(row, self.config.train.epochs if self.budget is None else None),
                  file=sys.stderr)

    def _checkpoint(self, epoch: int, *, best: bool = False) -> dict[str, Any]:
        """``last.pt`` (what training continues from, with the EMA's own state) or
        ``best.pt`` (``best``: its ``model`` is what counts, the EMA when there is one)."""
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "epoch": epoch, "step": self.step,
                 "config": self.config.to_dict(),
                 "best_mae": self.best_mae, "elapsed_seconds": self.elapsed,
                 "finished": self.finished}
        if self.ema is not None:
            if best:
                state["model"] = self.ema.module.state_dict()
            else:
                state["ema"] = self.ema.state_dict()
        return state

    # the end -----------------------------------------------------------------------------
    def test(self) -> dict[str, Any]:
        """The best weights on the test images (main process alone: no shared files)."""
        self.writer.close()
        result: dict[str, Any] = {"val": self.val_metrics,
                                  "threshold": self.config.decode.threshold,
                                  "epochs": len(self.rows), "minutes": self.elapsed / 60,
                                  "budget_minutes": self.config.train.max_minutes}
        if not (self.test_images and self.main):
            return result
        best_state = load_checkpoint(self.run.best)
        self.model.load_state_dict(best_state["model"])
        started = time.perf_counter()
        predictions = Predictor(self.model, self.config, self.config.inference_options(),
                                self.device).candidates(
            self.test_images, progress=self.progress)
        seconds = time.perf_counter() - started
        result["test"] = score(predictions,
                               config_from_checkpoint(best_state, self.run.best).decode.threshold)
        result["test"]["images_per_second"] = len(self.test_images) / seconds
        result["test"].update(epochs=result["epochs"], minutes=round(result["minutes"], 3),
                              budget_minutes=result["budget_minutes"])
        atomic_write_text(self.run.out / "test_metrics.json",
                          dumps_json(result["test"], indent=2))
        return result

    def close(self) -> None:
        self.writer.close()
        self.distributed.barrier()
        self.distributed.close()


def _predict_shared(predictor: Predictor, images: Sequence[AnnotatedImage],
                    distributed: Distributed, **options: Any) -> Predictions:
    """:meth:`Predictor.candidates` with the images shared out among the processes, then
    gathered in the original order (every process gets all predictions, so all calibrate
    alike)."""
    if distributed.world == 1:
        return predictor.candidates(images, **options)
    rank, world = distributed.rank, distributed.world
    local = predictor.candidates([images[i] for i in range(rank, len(images), world)],
                                 **options)
    parts = distributed.gather(local.detections)
    detections = [parts[i % world][i // world] for i in range(len(images))]
    return Predictions(detections=detections,
                       gt_points=[image.points for image in images],
                       gt_boxes=[image.boxes for image in images],
                       names=[image.name for image in images])


def _epoch_line(row: dict[str, Any], epochs: int | None) -> str:
    where = f"/{epochs}" if epochs is not None else f" ({row['minutes']:.1f} min)"
    text = (f"epoch {row['epoch'] + 1}{where}  loss {row['loss']:.4f}  "
            f"{row['images_per_second']:.1f} img/s")
    if row.get("val_mae") is not None:
        text += f"  val MAE {row['val_mae']:.2f}  RMSE {row['val_rmse']:.2f}"
        if row.get("val_relative_mae") is not None:
            text += f"  relative {row['val_relative_mae']:.3f}"
        text += f"  (threshold {row['threshold']:.2f})"
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
