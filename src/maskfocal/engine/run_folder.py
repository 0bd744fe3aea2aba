"""A training run's folder: what it holds, the rule that keeps it, and reading a finished one.

A folder that already holds a run is continued (``--resume``) or replaced (``--overwrite``)
only when asked; files that ``maskfocal train`` did not write are never replaced.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from maskfocal.errors import MaskfocalError
from maskfocal.fileio import MANIFEST, OutputFolder, atomic_write_text, remove_stale_temporaries

__all__ = ["RUN_FILES", "RunFolder", "default_run_folder", "read_metrics", "run_summary",
           "val_curve"]


RUN_FILES = ("config.yaml", "last.pt", "best.pt", "metrics.csv", "test_metrics.json", "tb")
"""What a run writes in its folder; nothing else there is touched."""


class RunFolder:
    """Files of one training run, and the rule that keeps them: a folder that already holds
    a run is continued (``resume``) or replaced (``overwrite``) only when asked, and files
    that ``maskfocal train`` did not write are never replaced."""

    def __init__(self, out: str | Path, columns: tuple[str, ...], *, resume: bool,
                 overwrite: bool) -> None:
        last = Path(out) / "last.pt"
        self.resume = resume and last.is_file()
        # a run's last.pt proves its files are train's, manifest or not (runs from before the
        # manifest); without one, --overwrite replaces only what train itself wrote
        self.folder = OutputFolder(out, "train",
                                   overwrite=(overwrite or self.resume) and last.is_file())
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
        return read_metrics(self.metrics)

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.metrics, buffer.getvalue())


def read_metrics(path: Path) -> list[dict[str, str]]:
    """The epoch rows of a run's ``metrics.csv`` (none where it is missing)."""
    if not path.is_file():
        return []
    with path.open(newline="") as file:
        return [row for row in csv.DictReader(file) if (row.get("epoch") or "").strip().isdigit()]


def run_summary(out: str | Path) -> dict[str, Any]:
    """A finished run's figures, from its files: ``test`` (``test_metrics.json``), ``epochs``,
    ``minutes``, ``budget_minutes``, the training images and images per second over
    ``metrics.csv``, the validation curve ``[[epoch (from 1), minutes, val_mae], ...]`` with
    its best value, and the training loss per epoch."""
    out = Path(out)
    if not (out / "test_metrics.json").is_file():
        raise MaskfocalError(f"{out}: no test_metrics.json (the run has not finished)")
    test = json.loads((out / "test_metrics.json").read_text())
    rows = read_metrics(out / "metrics.csv")
    seconds = sum(float(row["seconds"]) for row in rows)
    images = sum(float(row["seconds"]) * float(row["images_per_second"]) for row in rows)
    curve = val_curve(rows)
    return {"test": test, "epochs": int(test.get("epochs") or len(rows)),
            "minutes": test.get("minutes"), "budget_minutes": test.get("budget_minutes"),
            "training_images": round(images),
            "training_images_per_second": round(images / seconds, 2) if seconds else None,
            "val_curve": curve, "best_val_mae": min((c[2] for c in curve), default=None),
            "train_loss_curve": [[int(row["epoch"]) + 1, round(float(row["loss"]), 5)]
                                 for row in rows]}


def val_curve(rows: list[dict[str, str]]) -> list[list[float]]:
    """``[[epoch (from 1), minutes, val_mae], ...]`` of the ``metrics.csv`` rows that were
    validated (a run's finished or not)."""
    return [[int(row["epoch"]) + 1, float(row["minutes"]), float(row["val_mae"])]
            for row in rows if row.get("val_mae")]


def default_run_folder(base: str | Path = "runs/train") -> Path:
    """``runs/train``, or ``runs/train-2``, ``-3``, ... : the first that is missing or empty
    (like ultralytics' ``runs/train2``), so that a run never lands on an earlier one."""
    base = Path(base)
    candidate, number = base, 1
    while candidate.exists() and (not candidate.is_dir() or any(candidate.iterdir())):
        number += 1
        candidate = base.with_name(f"{base.name}-{number}")
    return candidate
