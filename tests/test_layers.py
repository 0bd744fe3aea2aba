"""The package's intended structure, enforced: its layers (maskfocal.testing.LAYERS, described
in docs/architecture.md) on every import, lazy ones included; no import cycle; and counting,
which never loads the training config or the engine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from maskfocal.testing import (
    ALLOWED_BACK_ARROWS,
    LAYERS,
    back_arrows,
    import_cycles,
    import_graph,
    layer_of,
)

SRC = Path(__file__).resolve().parents[1] / "src"


def test_every_module_lies_in_a_layer():
    graph = import_graph(SRC)
    unplaced = [m for m in graph if m != "maskfocal" and layer_of(m) is None]
    assert not unplaced, f"modules in no layer of maskfocal.testing.LAYERS: {unplaced}"
    assert [name for name, _ in LAYERS][-3:] == ["config", "engine", "commands"]


def test_no_module_imports_from_a_layer_above_its_own():
    wrong = [arrow for arrow in back_arrows(import_graph(SRC)) if arrow not in ALLOWED_BACK_ARROWS]
    assert not wrong, f"imports against the layers: {wrong}"


def test_there_is_no_import_cycle():
    assert import_cycles(import_graph(SRC)) == []


def test_the_checks_see_a_cycle_and_a_back_arrow():
    graph = {"maskfocal.data.a": {"maskfocal.engine.b"}, "maskfocal.engine.b": {"maskfocal.data.a"},
             "maskfocal.errors": set()}
    assert import_cycles(graph) == [["maskfocal.data.a", "maskfocal.engine.b"]]
    assert back_arrows(graph) == [("maskfocal.data.a", "maskfocal.engine.b")]


COUNT = """
import json, sys
import numpy as np
from maskfocal import Counter
counter = Counter.from_pretrained(sys.argv[1], device="cpu")
result = counter(np.zeros((96, 128, 3), np.uint8))
print(json.dumps({"count": result.count, "options": repr(counter.options),
                  "modules": sorted(m for m in sys.modules if m.startswith("maskfocal"))}))
"""


def test_counting_loads_neither_the_config_nor_the_engine():
    for name in ("crowd-r18", "crowd-lite0"):
        done = subprocess.run([sys.executable, "-c", COUNT, name], capture_output=True,
                              text=True, check=True)
        found = json.loads(done.stdout.splitlines()[-1])
        loaded = [m for m in found["modules"]
                  if m == "maskfocal.config" or m.startswith("maskfocal.engine")]
        assert not loaded, f"counting with {name} imported {loaded}"
        assert "maskfocal.inference.predictor" in found["modules"]  # it did count


def test_the_training_config_is_still_there_when_asked():
    """Experiments read ``Counter.config`` (data, splits): loaded from the saved config."""
    from maskfocal import Counter

    counter = Counter.from_pretrained("crowd-r18", device="cpu")
    assert counter.config.decode.threshold == counter.threshold
    assert counter.config.decode.input_scale == counter.options.input_scale
    assert counter.config.model.name == counter.predictor.spec.model.name


def test_a_saved_spec_reads_every_key_of_its_sections_or_names_who_does():
    from maskfocal.config import Config
    from maskfocal.families import SAVED_ELSEWHERE, DetectorSpec

    saved = Config().to_dict()
    spec = DetectorSpec()
    for section in ("model", "loss", "decode"):
        fields = set(vars(getattr(spec, section)))
        assert set(saved[section]) == fields | set(SAVED_ELSEWHERE.get(section, ())), section


def test_an_older_saved_config_still_counts_without_the_new_keys():
    """A config saved before the records existed (fewer keys, loss.name auto, the threshold
    beside the config) gives the spec and options it was trained with."""
    from maskfocal.checkpoint import _fold_threshold
    from maskfocal.families import DetectorSpec
    from maskfocal.inference import InferenceOptions

    saved = {"model": {"name": "centernet", "backbone": "resnet18", "neck_channels": 64},
             "loss": {"name": "auto"}, "decode": {"input_scale": 1.5}, "data": {}}
    state = _fold_threshold({"config": saved, "threshold": 0.42})
    spec = DetectorSpec.from_saved(state["config"])
    options = InferenceOptions.from_saved(state["config"])
    assert spec.model.neck_channels == 64 and spec.loss.name == "mfl"  # auto: CenterNet's
    assert (options.threshold, options.input_scale, options.max_eval_side) == (0.42, 1.5, 2048)


def test_the_old_keyword_input_scale_still_works_and_says_its_new_name():
    from maskfocal import Counter

    with pytest.warns(DeprecationWarning, match="scale="):
        counter = Counter.from_pretrained("crowd-r18", device="cpu", input_scale=1.25)
    assert counter.options.input_scale == 1.25 and counter.options.scale_target is None
