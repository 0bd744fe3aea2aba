"""Engine: training loop, evaluation loop, checkpoints. Device and autocast are decided here."""

from .checkpoint import load_checkpoint, save_checkpoint
from .evaluate import calibrate_threshold, predict, score
from .trainer import run_summary, train, train_from_files

__all__ = ["calibrate_threshold", "load_checkpoint", "predict", "run_summary",
           "save_checkpoint", "score", "train", "train_from_files"]
