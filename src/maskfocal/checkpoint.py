"""Checkpoints: written atomically, loaded with ``weights_only=True`` (a file cannot run code).

Two files hold a model: a training checkpoint (``.pt``: weights, config, threshold, and the
optimiser state to resume) and released weights (``.safetensors``: weights, with the config and
threshold in its metadata; what the package ships). :func:`load_checkpoint` reads both.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from maskfocal.errors import MaskfocalError
from maskfocal.fileio import atomic_write_bytes

FORMAT = "maskfocal-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_FORMAT = "maskfocal-weights"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (tensors, numbers, strings, lists and dicts only) to ``path`` atomically:
    a crash mid-write leaves the previous file intact."""
    from maskfocal import __version__

    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION,
                "maskfocal_version": __version__, **state}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def save_weights(path: str | Path, state: dict[str, Any], *, half: bool = False,
                 provenance: dict[str, str] | None = None) -> None:
    """A checkpoint's weights as ``.safetensors`` (``half``: float16), its config (with the
    calibrated threshold) in the metadata, written atomically; ``provenance``: more metadata
    (data, budget)."""
    import json

    from safetensors.torch import save

    from maskfocal import __version__

    state = _fold_threshold(dict(state))
    weights = {name: (tensor.half() if half and tensor.is_floating_point() else tensor)
               .contiguous() for name, tensor in state["model"].items()}
    metadata = {"format": WEIGHTS_FORMAT, "maskfocal_version": __version__,
                "config": json.dumps(state["config"]), **(provenance or {})}
    atomic_write_bytes(path, save(weights, metadata=metadata))


def _load_weights(path: Path) -> dict[str, Any]:
    """A ``.safetensors`` file of :func:`save_weights` as a checkpoint's state (float32)."""
    import json

    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as file:
            metadata = file.metadata() or {}
            weights = {name: file.get_tensor(name) for name in file.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise MaskfocalError(f"{path}: not a readable safetensors file "
                             f"({str(error).splitlines()[0][:120]})") from None
    if "config" not in metadata:
        raise MaskfocalError(f"{path}: safetensors without maskfocal's config (not maskfocal "
                             "weights)")
    try:
        config = json.loads(metadata["config"])
        legacy = {"threshold": float(metadata["threshold"])} if "threshold" in metadata else {}
    except ValueError:
        raise MaskfocalError(f"{path}: its config or threshold metadata is damaged") from None
    return {"format": FORMAT, "model": {name: tensor.float() if tensor.is_floating_point()
                                        else tensor for name, tensor in weights.items()},
            "config": config, **legacy,
            "maskfocal_version": metadata.get("maskfocal_version", "unknown"),
            "metadata": metadata}


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a maskfocal checkpoint (``.pt``) or released weights (``.safetensors``); a missing,
    corrupt or foreign file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise MaskfocalError(f"{path}: checkpoint file does not exist")
    if path.suffix.lower() == ".safetensors":
        state = _load_weights(path)
        _check_entries(state, path)
        return _fold_threshold(state)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception:  # pickle, zip and unpickler errors of many types
        raise MaskfocalError(f"{path}: not a readable checkpoint (damaged, or not a "
                             "weights-only PyTorch file)") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise MaskfocalError(f"{path}: not a maskfocal checkpoint")
    if state.get("format_version", 0) > FORMAT_VERSION:
        raise MaskfocalError(f"{path}: written by a newer maskfocal "
                             f"({state.get('maskfocal_version')}); upgrade to read it")
    for key in ("model", "config"):
        if key not in state:
            raise MaskfocalError(f"{path}: checkpoint has no {key!r} entry")
    _check_entries(state, path)
    return _fold_threshold(state)


def _fold_threshold(state: dict[str, Any]) -> dict[str, Any]:
    """The calibrated threshold has one home, the config's ``decode.threshold``; files written
    before it had one kept it beside the config too (``state["threshold"]``, the ``threshold``
    metadata), and that value, the one they counted with, moves into the config here."""
    if "threshold" in state:
        threshold = state.pop("threshold")
        decode = dict(state["config"].get("decode") or {})
        decode["threshold"] = float(threshold)
        state["config"] = {**state["config"], "decode": decode}
    return state


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_entries(state: dict[str, Any], path: Path) -> None:
    """Each entry of the right type and range, so that a tampered or damaged file is a
    one-line error here rather than a traceback (or a silently wrong count) later."""
    weights = state["model"]
    if not isinstance(weights, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()):
        raise MaskfocalError(f"{path}: its 'model' entry is not a mapping of names to weight "
                             "tensors")
    diverged = [name for name, tensor in weights.items()
                if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
    if diverged:
        raise MaskfocalError(f"{path}: {len(diverged)} weight tensors hold NaN or infinity "
                             f"(first: {diverged[0]}); the training diverged; use an earlier "
                             "checkpoint")
    if not isinstance(state["config"], dict):
        raise MaskfocalError(f"{path}: its 'config' entry is not a mapping")
    threshold = state.get("threshold")
    if threshold is not None and not (_is_number(threshold) and 0 < threshold < 1):
        raise MaskfocalError(f"{path}: its threshold {threshold!r} is not a number in (0, 1)")
    for key in ("epoch", "step"):
        if key in state and not (isinstance(state[key], int) and not isinstance(
                state[key], bool) and state[key] >= 0):
            raise MaskfocalError(f"{path}: its {key!r} entry {state[key]!r} is not a whole "
                                 "number >= 0")
    if "best_mae" in state and not (_is_number(state["best_mae"]) and
                                    state["best_mae"] >= 0):  # inf before any validation
        raise MaskfocalError(f"{path}: its 'best_mae' entry {state['best_mae']!r} is not a "
                             "number >= 0")
    for key in ("optimizer", "scheduler"):
        if key in state and not isinstance(state[key], dict):
            raise MaskfocalError(f"{path}: its {key!r} entry is not a mapping")
