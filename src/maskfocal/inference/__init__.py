"""Inference: one :class:`Predictor` finds heads for counting, evaluation, training's
validation, video, the web service and the benchmarks; :class:`Counter` is its one-call API.

Names are imported on first use (they pull in torch), so that the CLI can read the tiling
defaults from :mod:`maskfocal.inference.tiles` cheaply.
"""

import importlib

_HOMES = {"Counter": "counter", "CountResult": "counter", "expand_inputs": "counter",
          "Predictor": "predictor", "check_tiling": "options",
          "InferenceOptions": "options", "KEEP": "options",
          "CALIBRATION_GRID": "scoring", "Predictions": "scoring",
          "calibrate_threshold": "scoring", "score": "scoring",
          "balanced_threshold": "scoring", "per_source": "scoring"}

__all__ = ["CALIBRATION_GRID", "KEEP", "CountResult", "Counter", "InferenceOptions",
           "Predictions", "Predictor",
           "balanced_threshold", "calibrate_threshold", "check_tiling", "expand_inputs",
           "per_source", "score"]


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
