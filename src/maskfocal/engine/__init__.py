"""Engine: training (the loop, its run folder, distributed processes). Prediction is
:mod:`maskfocal.inference`'s; checkpoints are :mod:`maskfocal.checkpoint`'s."""

from .run_folder import default_run_folder, run_summary
from .trainer import train, train_from_files

__all__ = ["default_run_folder", "run_summary", "train", "train_from_files"]
