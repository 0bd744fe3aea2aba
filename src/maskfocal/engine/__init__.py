"""Engine: training (the loop, its run folder, distributed processes). Prediction is
:mod:`maskfocal.inference`'s; checkpoints are :mod:`maskfocal.checkpoint`'s."""

from .trainer import run_summary, train, train_from_files

__all__ = ["run_summary", "train", "train_from_files"]
