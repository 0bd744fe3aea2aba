"""Experiments apart from the product: the MFL grids, GPU recipes, the shipped models' ablations,
calibration and cards, and their results (``experiments/results/``). Run each from the
repository root as a module, e.g. ``.venv/bin/python -m experiments.mfl_converged --report``;
they use maskfocal's public API only. Speed and memory scripts are in ``benchmarks/``."""
