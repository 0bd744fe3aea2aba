"""Nothing a user owns is overwritten, nothing is silently wrong: swept over every command,
output, option, config key, accepted image type and checkpoint entry, not only the examples
that were found."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import stat
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from maskfocal import Counter, structures
from maskfocal.checkpoint import load_checkpoint, save_checkpoint
from maskfocal.cli import build_parser, main
from maskfocal.config import RANGES, Config, load_config
from maskfocal.errors import MaskfocalError
from maskfocal.fileio import MANIFEST, OutputFolder, atomic_write_text, dumps_json
from maskfocal.inference import check_tiling
from maskfocal.inference.tiles import plan_tiles
from maskfocal.structures import as_rgb, load_rgb
from tests.test_inference import checkpoint

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"


def digest(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` (except maskfocal's manifest) and a hash of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def one_line_error(status: int, err: str) -> None:
    assert status == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def picture(path: Path, seed: int = 0, size: tuple[int, int] = (72, 56)) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), np.uint8)
    Image.fromarray(pixels).save(path)
    return path


# ---------------------------------------------------------------------------------------------
# Data loss


def test_count_never_writes_over_its_inputs_or_the_users_files(tmp_path, capsys):
    """Inputs inside --out, and user files under every name count would write."""
    ck = checkpoint(tmp_path)
    out = tmp_path / "photos"
    out.mkdir()
    inputs = [picture(out / "victim.png", 0), picture(out / "victim.jpg", 1)]
    for name in ("victim.overlay.png", "counts.csv", "contact_sheet.png"):  # the user's own
        (out / name).write_text(f"mine: {name}")
    before = digest(out)
    status, _, err = run(["count", *inputs, "--checkpoint", ck, "--out", out], capsys)
    assert status == 0, err
    after = digest(out)
    assert {k: after[k] for k in before} == before  # nothing the user had has changed
    new = sorted(set(after) - set(before))
    assert new == ["contact_sheet-2.png", "counts-2.csv", "victim-2.overlay.png",
                   "victim-3.overlay.png"]
    # a second batch into the same folder leaves the first batch's files as they were (its
    # counts.csv still names its own overlays) and writes its own under new names
    assert run(["count", *inputs, "--checkpoint", ck, "--out", out], capsys)[0] == 0
    second = digest(out)
    assert {k: second[k] for k in after} == after
    assert sorted(set(second) - set(after)) == ["contact_sheet-3.png", "counts-3.csv",
                                                "victim-4.overlay.png", "victim-5.overlay.png"]
    # counting the folder itself does not count the overlays that maskfocal wrote there
    status, output, err = run(["count", out, "--checkpoint", ck, "--out", out], capsys)
    assert status == 0 and {k: digest(out)[k] for k in second} == second
    assert "victim.png:" in output
    assert "skipped" in err and "victim.overlay.png" in err  # the user's file, not an image
    assert "victim-2.overlay.png" not in output + err


def test_same_stems_get_distinct_overlays_that_counts_csv_names(tmp_path, capsys):
    ck = checkpoint(tmp_path)
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    inputs = [picture(tmp_path / "A" / "x.jpg", 0), picture(tmp_path / "A" / "x.png", 1),
              picture(tmp_path / "B" / "x.png", 2)]
    out = tmp_path / "out"
    assert run(["count", *inputs, "--checkpoint", ck, "--out", out], capsys)[0] == 0
    rows = (out / "counts.csv").read_text().splitlines()
    assert rows[0] == "image,count,overlay" and len(rows) == 4
    overlays = [row.rsplit(",", 1)[1] for row in rows[1:]]
    assert len(set(overlays)) == 3 and all((out / name).is_file() for name in overlays)


def test_video_outputs_never_replace_the_video(tmp_path, capsys):
    import av

    ck = checkpoint(tmp_path)
    clip = tmp_path / "victim.mp4"
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(4):
            frame = np.full((48, 64, 3), 40 * index, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    (tmp_path / "victim.counts.csv").write_text("mine")
    before = digest(tmp_path)
    status, _, err = run(["count", clip, "--checkpoint", ck, "--out", tmp_path], capsys)
    assert status == 0, err
    after = digest(tmp_path)
    assert {k: after[k] for k in before} == before
    assert {"victim-2.counts.csv", "victim.overlay.mp4"} <= set(after)


def test_train_into_an_existing_run_needs_resume_or_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    common = ["train", "--config", TINY, "--quiet", "train.epochs=1",
              "data.synthetic.test_images=0"]
    assert run([*common, "--out", out], capsys)[0] == 0
    before = digest(out)
    status, _, err = run([*common, "--out", out], capsys)
    one_line_error(status, err)
    assert "--resume" in err and "--overwrite" in err
    assert digest(out) == before
    status, _, err = run([*common, "--out", out, "--resume", "--overwrite"], capsys)
    one_line_error(status, err)
    assert run([*common, "--out", out, "--overwrite"], capsys)[0] == 0
    assert len(list((out / "tb").iterdir())) == 1  # the replaced run's curves went with it


def test_train_never_replaces_files_it_did_not_write(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    for name in (".notes.tmp", ".last.pt.tmp", "notes.txt"):
        (out / name).write_text("mine")
    (out / ".last.pt.0badc0de.tmp").write_text("a killed writer's leftover")
    (out / "config.yaml").write_text("mine: true\n")  # a run file name, but the user's
    common = ["train", "--config", TINY, "--quiet", "train.epochs=1", "--out", out]
    status, _, err = run(common, capsys)
    one_line_error(status, err)
    assert "config.yaml exists and was not written by maskfocal train" in err
    assert (out / "config.yaml").read_text() == "mine: true\n"
    (out / "config.yaml").unlink()
    assert run(common, capsys)[0] == 0
    for name in (".notes.tmp", ".last.pt.tmp", "notes.txt"):  # not ours: still there
        assert (out / name).read_text() == "mine", name
    assert not (out / ".last.pt.0badc0de.tmp").exists()  # ours: removed


def test_train_without_out_never_lands_on_an_earlier_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = ["train", "--config", TINY, "--quiet", "train.epochs=1",
              "data.synthetic.test_images=0"]
    for expected in ("runs/train", "runs/train-2"):
        status, _, err = run(common, capsys)
        assert status == 0 and f"writing the run to {expected}" in err, err
        assert (tmp_path / expected / "last.pt").is_file()
    one_line_error(*run([*common[:3], "--resume"], capsys)[::2])


def small_checkpoint(folder: Path, **options) -> Path:
    """A checkpoint whose synthetic splits are a few small scenes (fast to evaluate)."""
    return checkpoint(folder, "data.synthetic.train_images=7", "data.synthetic.val_images=3",
                      "data.synthetic.test_images=2", "data.synthetic.width=96",
                      "data.synthetic.height=64", **options)


def test_eval_save_dir_and_export_keep_the_users_files(tmp_path, capsys):
    ck = small_checkpoint(tmp_path)
    save_dir = tmp_path / "eval"
    save_dir.mkdir()
    (save_dir / "metrics.json").write_text("mine")
    common = ["eval", "--checkpoint", ck, "--format", "synthetic", "--save-dir", save_dir,
              "--json"]
    one_line_error(*run(common, capsys)[::2])
    assert (save_dir / "metrics.json").read_text() == "mine"
    assert run([*common, "--overwrite"], capsys)[0] == 0
    assert json.loads((save_dir / "metrics.json").read_text())["images"] == 2
    assert run(common, capsys)[0] == 0  # its own files now: replaced without asking

    model = tmp_path / "model.onnx"
    model.write_bytes(b"my own model, not an export")
    status, _, err = run(["export", "--checkpoint", ck, "--out", model], capsys)
    one_line_error(status, err)
    assert model.read_bytes() == b"my own model, not an export"
    status, _, err = run(["export", "--checkpoint", ck, "--out", ck], capsys)
    one_line_error(status, err)


def test_an_earlier_export_is_recognised(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from maskfocal.export import is_maskfocal_onnx

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    plain = helper.make_model(graph)
    onnx.save(plain, tmp_path / "plain.onnx")
    ours = helper.make_model(graph)
    entry = ours.metadata_props.add()
    entry.key, entry.value = "maskfocal_version", "0.1.0"
    onnx.save(ours, tmp_path / "ours.onnx")
    (tmp_path / "text.onnx").write_text("hello")
    assert [is_maskfocal_onnx(tmp_path / n) for n in ("plain.onnx", "ours.onnx", "text.onnx")] \
        == [False, True, False]


def test_data_show_and_synth_keep_the_users_files(tmp_path, capsys):
    root = tmp_path / "synth"
    (root / "train").mkdir(parents=True)
    (root / "train" / "mine.txt").write_text("mine")
    common = ["data", "synth", "--out", root, "--train", "2", "--val", "0", "--test", "0",
              "--size", "96x64", "--max-count", "10"]
    one_line_error(*run(common, capsys)[::2])  # a train/ folder maskfocal did not write
    assert run([*common, "--overwrite"], capsys)[0] == 0
    assert (root / "train" / "mine.txt").read_text() == "mine"
    assert run([*common[:-1], "9"], capsys)[0] == 0  # its own folder: written again

    show = tmp_path / "show"
    show.mkdir()
    first = "00000_000001.png"
    (show / first).write_text("mine")
    common = ["data", "show", "--format", "mot", "--root", root, "--out", show, "--count", "1"]
    assert run(common, capsys)[0] == 0
    assert (show / first).read_text() == "mine" and (show / "00000_000001-2.png").is_file()


def _output_options() -> list[tuple[list[str], str]]:
    """(command, option) for every CLI option that names where output goes."""
    found = []
    parser = build_parser()
    for command, sub in _subparsers(parser):
        for action in sub._actions:
            if any(flag in ("--out", "--save-dir") for flag in action.option_strings):
                found.append((command, action.option_strings[0]))
    return found


def _subparsers(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _subparsers(sub, (*prefix, name))
    if prefix:
        yield list(prefix), parser


def _minimal_argv(command: list[str], files: dict[str, Path]) -> list[str]:
    base = {
        "train": ["--config", TINY],
        "eval": ["--checkpoint", files["ck"], "--format", "synthetic"],
        "count": [files["image"], "--checkpoint", files["ck"]],
        "count-archive": [files["image"], "--checkpoint", files["ck"]],
        "export": ["--checkpoint", files["ck"]],
        "mine": ["--checkpoint", files["ck"]],
        "demo": [],
        "serve": [],
        "data show": ["--format", "mot", "--root", files["missing"]],
        "data stats": ["--format", "mot", "--root", files["missing"]],
        "data synth": ["--train", "1"],
    }
    return [*command, *base[" ".join(command)]]


def test_every_output_option_refuses_files_and_unwritable_places(tmp_path, capsys):
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("mine")
    files = {"ck": small_checkpoint(tmp_path), "image": picture(tmp_path / "a.png"),
             "missing": tmp_path / "missing"}
    places = {"a file": a_file, "under a file": a_file / "sub",
              "unwritable": Path("/proc/self/maskfocal-out")}
    options = _output_options()
    assert {" ".join(c) for c, _ in options} == {"train", "eval", "count", "count-archive",
                                                 "export", "mine", "demo", "data show",
                                                 "data synth"}
    for command, option in options:
        for what, place in places.items():
            if command == ["export"] and what == "a file":
                continue  # export's --out is a file: a folder is its mistake (below)
            argv = [*_minimal_argv(command, files), option, place]
            status, _, err = run(argv, capsys)
            assert status == 2, (argv, err)
            assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (argv, err)
    one_line_error(*run(["export", "--checkpoint", files["ck"], "--out", tmp_path], capsys)[::2])
    assert a_file.read_text() == "mine"


def test_outputs_follow_the_umask(tmp_path):
    for umask, mode in ((0o022, 0o644), (0o077, 0o600), (0o002, 0o664)):
        previous = os.umask(umask)
        try:
            atomic_write_text(tmp_path / f"{umask}.txt", "x")
            OutputFolder(tmp_path / f"d{umask}", "count").claim("a.csv")
        finally:
            os.umask(previous)
        assert stat.S_IMODE((tmp_path / f"{umask}.txt").stat().st_mode) == mode
        assert stat.S_IMODE((tmp_path / f"d{umask}" / MANIFEST).stat().st_mode) == mode


# ---------------------------------------------------------------------------------------------
# Silently wrong


def _reference() -> np.ndarray:
    ramp = np.linspace(0, 255, 48 * 40).reshape(40, 48).round().astype(np.uint8)
    return np.dstack([ramp, ramp[::-1], np.full_like(ramp, 128)])


def test_every_accepted_image_type_is_scaled_by_its_range():
    rgb = _reference()
    gray = rgb[..., 0]
    same = {
        "uint8 array": rgb,
        "uint16 array": rgb.astype(np.uint16) * 257,
        "uint32 array": rgb.astype(np.uint32) * 16843009,
        "int64 array 0..255": rgb.astype(np.int64),
        "float32 array [0, 1]": rgb.astype(np.float32) / 255,
        "float64 array [0, 1]": rgb / 255.0,
        "RGBA array": np.dstack([rgb, np.zeros_like(gray)]),
        "uint8 tensor": torch.from_numpy(rgb).permute(2, 0, 1),
        "float tensor [0, 1]": torch.from_numpy(rgb / 255.0).permute(2, 0, 1),
        "half tensor [0, 1]": torch.from_numpy(rgb / 255.0).permute(2, 0, 1).half(),
        "int32 tensor 0..255": torch.from_numpy(rgb.astype(np.int32)).permute(2, 0, 1),
        "PIL RGB": Image.fromarray(rgb),
    }
    for name, image in same.items():
        got = as_rgb(image)
        assert got.shape == rgb.shape and got.dtype == np.uint8, name
        assert np.abs(got.astype(int) - rgb).max() <= 1, name  # half precision rounds
    gray_same = {"L": Image.fromarray(gray), "I;16": Image.fromarray(gray.astype(np.uint16) * 257),
                 "F": Image.fromarray(gray.astype(np.float32) / 255),
                 "(H, W) uint16": gray.astype(np.uint16) * 257,
                 "(1, H, W) uint16 tensor": torch.from_numpy(gray.astype(np.uint16) * 257)[None]}
    for name, image in gray_same.items():
        got = as_rgb(image)
        assert np.abs(got.astype(int) - gray[..., None]).max() <= 1, name


def test_wide_and_signed_images_are_scaled_never_clipped(tmp_path):
    """The odd types of issue 31: int32 TIFFs beyond 16 bits, float TIFFs in [-1, 1], 8-bit
    values in a wider unsigned array, bfloat16 tensors."""
    gray = _reference()[..., 0]
    int32 = tmp_path / "int32.tif"
    Image.fromarray(gray.astype(np.int32) * 1000).save(int32)  # values to 255,000
    assert Image.open(int32).mode == "I"
    signed = tmp_path / "signed.tif"
    Image.fromarray(gray.astype(np.float32) / 127.5 - 1).save(signed)  # [-1, 1]
    for path in (int32, signed):
        got = load_rgb(path)[..., 0].astype(int)
        assert np.abs(got - gray).max() <= 1, path.name  # before: 86 % / 45 % clipped
    with pytest.warns(UserWarning, match="8-bit values"):
        got = as_rgb(gray.astype(np.uint16))  # 0..255 in uint16: before, black (0 heads)
    assert np.array_equal(got[..., 0], gray)
    bf16 = torch.from_numpy(gray / 255.0)[None].to(torch.bfloat16)
    assert np.abs(as_rgb(bf16)[..., 0].astype(int) - gray).max() <= 1  # before: TypeError


@pytest.mark.parametrize("image, message", [
    (np.zeros((0, 0, 3), np.uint8), "empty"),
    (np.zeros((5, 0, 3), np.uint8), "empty"),
    (torch.zeros(3, 0, 7), "empty"),
    (Image.new("RGB", (0, 0)), "empty"),
    (np.full((4, 4, 3), 255.0), r"\[0, 1\]"),  # 0..255 floats: refused, never clipped to 1
    (torch.full((3, 4, 4), 200.0), r"\[0, 1\]"),
    (np.full((4, 4, 3), np.nan), "NaN"),
    (np.full((4, 4, 3), -1, np.int16), "0..255"),
    (np.full((4, 4, 3), 4095, np.int32), "0..255"),
    (np.ones((4, 4, 3), bool), "unsupported"),
    (np.ones((4, 4, 3), complex), "unsupported"),
    (np.zeros((4, 4, 2), np.uint8), "shape"),
    (np.zeros((2, 4, 4, 3, 1), np.uint8), "shape"),
    (torch.zeros(5, 4, 4), "shape"),
])
def test_unreadable_images_are_value_errors_saying_what_was_expected(image, message):
    with pytest.raises(ValueError, match=message):
        as_rgb(image)


_DTYPES = [np.uint8, np.uint16, np.uint32, np.int8, np.int16, np.int32, np.int64,
           np.float16, np.float32, np.float64, np.bool_]


@settings(max_examples=60, deadline=None, derandomize=True)
@given(dtype=st.sampled_from(_DTYPES), shape=st.sampled_from([(3, 5), (3, 5, 1), (3, 5, 3),
                                                                (3, 5, 4), (0, 5, 3), (3, 5, 2)]),
       seed=st.integers(0, 2**16), scale=st.sampled_from([1.0, 255.0, 65535.0, -1.0]))
def test_any_array_is_scaled_exactly_or_refused(dtype, shape, seed, scale):
    """Never a silent clip: either the values map linearly by the type's range or a
    ValueError says why."""
    rng = np.random.default_rng(seed)
    unit = rng.random(shape)
    with np.errstate(over="ignore", invalid="ignore"):
        array = (unit * scale).astype(dtype)
    try:
        got = as_rgb(array)
    except ValueError:
        return
    assert got.dtype == np.uint8 and got.shape == (shape[0], shape[1], 3)
    channels = array if array.ndim == 3 else array[..., None]
    channels = channels[..., :3] if channels.shape[2] >= 3 else np.repeat(channels, 3, axis=2)
    if np.issubdtype(array.dtype, np.floating):
        expected = channels.astype(np.float64) * 255
    elif np.issubdtype(array.dtype, np.unsignedinteger):  # 8-bit values in a wider type: as is
        top = 255 if array.max(initial=0) <= 255 else np.iinfo(array.dtype).max
        expected = channels.astype(np.float64) * 255 / top
    else:
        expected = channels.astype(np.float64)
    assert np.abs(got - expected).max() <= 0.51


def test_counter_counts_a_16_bit_image_like_its_file(tmp_path):
    counter = Counter.from_checkpoint(checkpoint(tmp_path, threshold=0.12), device="cpu")
    rgb = _reference()
    path = tmp_path / "deep.png"
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(path)
    from_file = counter(path)
    assert from_file.count > 0  # a count to compare (a clipped image would count otherwise)
    for image in (Image.open(path), np.asarray(Image.open(path)).astype(np.uint16),
                  np.asarray(load_rgb(path)).astype(np.float32) / 255):
        assert counter(image).count == from_file.count


def _numeric_keys(node: typing.Any = None, prefix: str = "") -> list[tuple[str, type]]:
    node = node if node is not None else Config()
    hints = typing.get_type_hints(type(node))
    keys = []
    for field in dataclasses.fields(node):
        value = getattr(node, field.name)
        if dataclasses.is_dataclass(value):
            keys += _numeric_keys(value, f"{prefix}{field.name}.")
            continue
        kinds = set(typing.get_args(hints[field.name])) or {hints[field.name]}
        numeric = kinds & {int, float}
        if numeric:
            keys.append((f"{prefix}{field.name}", numeric.pop()))
    return keys


def test_every_numeric_config_key_has_a_range_that_is_checked():
    keys = _numeric_keys()
    assert {key for key, _ in keys} == set(RANGES), "a numeric key without a range"
    for key, kind in keys:
        valid = RANGES[key]
        bad = []
        if valid.low is not None:
            bad.append(valid.low if valid.open_low else valid.low - 1)
        if valid.high is not None:
            bad.append(valid.high if valid.open_high else valid.high + 1)
        if kind is float:
            bad += [math.nan, math.inf]
        assert bad, key
        for value in bad:
            value = int(value) if kind is int else value
            with pytest.raises(MaskfocalError, match=key.replace(".", r"\.")):
                load_config(None, [f"{key}={value}"])
    load_config(None, [])  # and every default lies inside its range


def test_a_checkpoint_config_out_of_range_is_refused(tmp_path):
    ck = checkpoint(tmp_path)
    state = load_checkpoint(ck)
    state["config"]["data"]["max_eval_side"] = -5  # would shrink every image to 1x1
    save_checkpoint(tmp_path / "bad.pt", state)
    with pytest.raises(MaskfocalError, match=r"bad\.pt.*max_eval_side"):
        Counter.from_checkpoint(tmp_path / "bad.pt", device="cpu")


def _whole_options():
    for command, parser in _subparsers(build_parser()):
        for action in parser._actions:
            minimum = getattr(action.type, "minimum", None)
            if minimum is not None:
                yield command, action.option_strings[0], minimum


def test_every_numeric_cli_option_is_range_checked(tmp_path, capsys):
    files = {"ck": tmp_path / "none.pt", "image": tmp_path / "none.png",
             "missing": tmp_path / "missing"}
    options = list(_whole_options())
    assert {(tuple(c), o) for c, o, _ in options} >= {
        (("count",), "--every"), (("count",), "--tile-size"), (("count",), "--tile-overlap"),
        (("count",), "--tile-above"), (("data", "synth"), "--train"), (("demo",), "--seed")}
    for command, option, minimum in options:
        argv = [*_minimal_argv(command, files), option, str(minimum - 1)]
        status, _, err = run(argv, capsys)
        one_line_error(status, err)
        assert "must be at least" in err, argv


@settings(max_examples=80, deadline=None, derandomize=True)
@given(size=st.integers(0, 600), overlap=st.integers(-50, 600), height=st.integers(1, 900),
       width=st.integers(1, 900))
def test_tiling_options_are_refused_or_cover_every_pixel(size, overlap, height, width):
    try:
        check_tiling(2048, size, overlap)
    except MaskfocalError:
        return
    covered = np.zeros((height, width), bool)
    cores = np.zeros((height, width), int)
    for tile in plan_tiles(height, width, size, overlap):
        covered[tile.y0:tile.y1, tile.x0:tile.x1] = True
        cores[tile.cy0:tile.cy1, tile.cx0:tile.cx1] += 1
    assert covered.all() and (cores == 1).all()


def test_tiling_mistakes_are_refused_before_any_work(tmp_path, capsys):
    image = picture(tmp_path / "a.png")
    for extra in (["--tile-size", "64", "--tile-overlap", "63"],
                  ["--tile-size", "64", "--tile-overlap", "60"]):
        # the checkpoint does not exist: the tiling error comes first, before loading it
        status, _, err = run(["count", image, "--checkpoint", tmp_path / "none.pt", *extra],
                             capsys)
        one_line_error(status, err)
        assert "tile size" in err


def test_eval_synthetic_honours_split_and_refuses_root(tmp_path, capsys):
    ck = small_checkpoint(tmp_path)
    counts = {}
    for split in ("train", "val", "test"):
        status, out, err = run(["eval", "--checkpoint", ck, "--format", "synthetic", "--split",
                                split, "--json"], capsys)
        assert status == 0, err
        counts[split] = json.loads(out.splitlines()[-1])["images"]
    assert counts == {"train": 7, "val": 3, "test": 2}
    for extra in (["--split", "training"], ["--root", tmp_path]):
        one_line_error(*run(["eval", "--checkpoint", ck, "--format", "synthetic", *extra],
                            capsys)[::2])


def test_json_outputs_are_strict_json(tmp_path, capsys):
    assert dumps_json({"nae": math.nan, "x": [math.inf, -math.inf, 1.5],
                       "n": np.float32("nan"), "t": torch.tensor(2.0)}) == \
        '{"nae": null, "x": [null, null, 1.5], "n": null, "t": 2.0}'
    root = tmp_path / "empty"
    root.mkdir()
    for name in ("a", "b"):  # images without heads: NAE is undefined
        picture(root / f"{name}.jpg")
        (root / f"{name}.json").write_text('{"points": []}')
    status, out, err = run(["eval", "--checkpoint", checkpoint(tmp_path), "--format", "points",
                            "--root", root, "--json", "--save-dir", tmp_path / "ev"], capsys)
    assert status == 0, err

    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    metrics = json.loads(out.splitlines()[-1], parse_constant=refuse)
    assert metrics["nae"] is None
    json.loads((tmp_path / "ev" / "metrics.json").read_text(), parse_constant=refuse)
    status, out, _ = run(["eval", "--checkpoint", checkpoint(tmp_path), "--format", "points",
                          "--root", root], capsys)
    assert status == 0 and "NAE n/a" in out


# ---------------------------------------------------------------------------------------------
# Tracebacks for user mistakes


_TAMPERED = {
    "model": [None, "weights", [1, 2], {"w": "not a tensor"}],
    "config": [None, "config", [1], {"model": "fcos"}, {"data": {"max_eval_side": "big"}}],
    "threshold": ["0.3", [0.3], math.nan, 0.0, 1.5, -1, True, torch.tensor(0.3)],
    "epoch": ["1", -1, 1.5, None],
    "step": ["1", -3, None],
    "best_mae": ["x", math.nan, -2, None],
    "optimizer": ["adam", [1], None],
    "scheduler": ["cosine", [1], None],
}


def test_tampered_checkpoints_are_one_line_errors_everywhere(tmp_path, capsys):
    out = tmp_path / "run"
    assert run(["train", "--config", TINY, "--out", out, "--quiet", "train.epochs=1",
                "data.synthetic.test_images=0"], capsys)[0] == 0
    good = load_checkpoint(out / "last.pt")
    lean = {k: v for k, v in good.items() if k not in ("optimizer", "scheduler")}
    image = picture(tmp_path / "a.png")
    for key, values in _TAMPERED.items():
        for number, value in enumerate(values):
            bad = tmp_path / f"{key}-{number}.pt"
            torch.save({**lean, key: value}, bad)  # as save_checkpoint, less its fsync
            with pytest.raises(MaskfocalError, match=bad.name.replace(".", r"\.")):
                Counter.from_checkpoint(bad, device="cpu")
            if number:
                continue  # each command once per entry: the API above saw every value
            for argv in (["count", image, "--checkpoint", bad],
                         ["eval", "--checkpoint", bad, "--format", "synthetic"],
                         ["export", "--checkpoint", bad, "--out", tmp_path / "m.onnx"]):
                one_line_error(*run(argv, capsys)[::2])
    # and resuming from one: the run folder's last.pt tampered with
    for key in ("optimizer", "scheduler", "epoch"):
        save_checkpoint(out / "last.pt", {**good, key: {"state": 1} if key != "epoch" else -1})
        status, _, err = run(["train", "--out", out, "--resume", "--quiet"], capsys)
        one_line_error(status, err)
    save_checkpoint(out / "last.pt", {k: v for k, v in good.items() if k != "optimizer"})
    one_line_error(*run(["train", "--out", out, "--resume", "--quiet"], capsys)[::2])


def test_bad_config_values_stop_before_training(tmp_path, capsys):
    for override in ("train.eval_every=0", "data.max_eval_side=-5", "train.lr=-1",
                     "data.batch_size=0", "loss.min_sigma=3"):
        status, _, err = run(["train", "--config", TINY, "--out", tmp_path / "r", override],
                             capsys)
        one_line_error(status, err)
        assert not (tmp_path / "r" / "config.yaml").exists()


# ---------------------------------------------------------------------------------------------
# Smaller things a user meets


def test_every_option_has_help_text():
    for command, parser in _subparsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            assert action.help, f"maskfocal {' '.join(command)} {action.dest}: no help"


def test_our_pixel_limit_comes_before_pillows(tmp_path, monkeypatch):
    path = picture(tmp_path / "big.png", size=(100, 80))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow refuses above 2,000
    monkeypatch.setattr(structures, "MAX_PIXELS", 10_000)  # ours allows 8,000
    assert load_rgb(path).shape == (80, 100, 3)
    assert Image.MAX_IMAGE_PIXELS == 1000  # Pillow's own limit is left as it was
    monkeypatch.setattr(structures, "MAX_PIXELS", 5_000)
    with pytest.raises(MaskfocalError, match="MAX_PIXELS"):
        load_rgb(path)


def test_base_yaml_and_readme_agree_that_the_batch_is_global():
    root = Path(__file__).resolve().parents[1]
    base = (root / "configs" / "base.yaml").read_text()
    for key in ("batch_size:", "lr:"):
        line = next(line for line in base.splitlines() if line.strip().startswith(key))
        assert "global" in line and "per process" not in line, line
