"""Inference: one :class:`Predictor` finds heads for counting, evaluation, training's
validation, video, the web service and the benchmarks; :class:`Counter` is its one-call API."""

from .counter import Counter, CountResult, expand_inputs
from .predictor import Predictor, check_tiling
from .scoring import CALIBRATION_GRID, Predictions, calibrate_threshold, score

__all__ = ["CALIBRATION_GRID", "CountResult", "Counter", "Predictions", "Predictor",
           "calibrate_threshold", "check_tiling", "expand_inputs", "score"]
