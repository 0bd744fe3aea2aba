"""Data: dataset readers, the synthetic crowd generator, statistics. No target encoding here."""

from .readers import READERS, Dataset, ReadReport, read_dataset
from .splits import build_splits
from .synthetic import SyntheticConfig, SyntheticCrowds, generate_scene, write_mot

__all__ = ["READERS", "Dataset", "ReadReport", "SyntheticConfig", "SyntheticCrowds",
           "build_splits", "generate_scene", "read_dataset", "write_mot"]
