"""A full disk and a read-only output folder under every command that writes: one line naming
the file, exit 2, nothing half-written (no temporary left), and the same command completes
once there is room. Sessions and CI run as root, where ``chmod`` does not stop a write, so
the folders are a small tmpfs and a read-only bind mount; the tests skip where this process
cannot mount them."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import av
import numpy as np
import pytest
from PIL import Image

from tests.test_inference import checkpoint
from tests.test_nothing_lost import run

TINY = "configs/tiny.yaml"


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture()
def disk(tmp_path):
    """A folder on a 64 KiB tmpfs; ``disk.grow()`` makes room (1 GiB)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if sys.platform != "linux" or not _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs",
                                             str(folder)):
        pytest.skip("cannot mount a tmpfs here (needs root on Linux)")

    class Disk:
        path = folder

        @staticmethod
        def grow() -> None:
            assert _mount("-o", "remount,size=1g", str(folder))

    yield Disk
    _mount_off(folder)


@pytest.fixture()
def read_only(tmp_path):
    folder, source = tmp_path / "ro", tmp_path / "ro_source"
    folder.mkdir()
    source.mkdir()
    if sys.platform != "linux" or not _mount("--bind", str(source), str(folder)):
        pytest.skip("cannot bind-mount here (needs root on Linux)")
    if not _mount("-o", "remount,ro,bind", str(folder)):
        _mount_off(folder)
        pytest.skip("cannot make a bind mount read-only here")
    yield folder
    _mount_off(folder)


def _mount_off(folder) -> None:
    with contextlib.suppress(OSError):
        subprocess.run(["umount", str(folder)], capture_output=True)


def _photos(folder, n: int = 4):
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for k in range(n):  # noise: PNG overlays that do not compress below the disk's size
        Image.fromarray((rng.random((240, 320, 3)) * 255).astype(np.uint8)).save(
            folder / f"{k}.png")
    return folder


def _clip(path):
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for _ in range(30):
            frame = (rng.random((240, 320, 3)) * 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _full(status: int, err: str, folder) -> None:
    """One line naming a file in ``folder``, exit 2, no temporary left there."""
    last = err.replace("\r", "\n").strip().splitlines()[-1]
    assert status == 2 and "Traceback" not in err, err
    assert last.startswith(f"maskfocal: error: {folder}/"), last
    assert last.endswith("No space left on device"), last
    leftovers = [p.name for p in folder.rglob("*") if p.name.endswith((".tmp", ".part"))
                 or ".part." in p.name]
    assert leftovers == [], leftovers


def _commands(tmp_path, out) -> dict[str, list]:
    ck = checkpoint(tmp_path)
    return {
        "count": ["count", _photos(tmp_path / "photos"), "--checkpoint", ck, "--out", out],
        "video": ["count", _clip(tmp_path / "clip.mp4"), "--checkpoint", ck, "--out", out],
        "train": ["train", "--config", TINY, "--out", out, "--quiet", "train.epochs=1",
                  "model.backbone=resnet18", "data.synthetic.train_images=4"],
        "export": ["export", "--checkpoint", ck, "--out", out / "model.onnx"],
        "synth": ["data", "synth", "--out", out, "--train", "12", "--val", "2", "--test", "2",
                  "--size", "320x240"],
    }


@pytest.mark.parametrize("command", ["count", "video", "train", "export", "synth"])
def test_a_full_disk_is_one_line_and_the_next_run_completes(disk, tmp_path, capsys, command):
    out = disk.path / "out"
    argv = _commands(tmp_path, out)[command]
    status, _, err = run(argv, capsys)
    _full(status, err, disk.path)
    disk.grow()
    if command == "train":  # the run's folder holds its config: continue it
        argv = [*argv, "--resume"]
    status, _, err = run(argv, capsys)
    assert status == 0, err


@pytest.mark.parametrize("command", ["count", "video", "train", "export", "synth"])
def test_a_read_only_folder_is_one_line_before_any_work(read_only, tmp_path, capsys, command):
    out = read_only / "out"
    status, _, err = run(_commands(tmp_path, out)[command], capsys)
    last = err.replace("\r", "\n").strip().splitlines()[-1]
    assert status == 2 and "Traceback" not in err, err
    assert "Read-only file system" in last and str(read_only) in last, last
    assert list(read_only.iterdir()) == []


@pytest.mark.slow
def test_count_archive_on_a_full_disk_then_with_room_counts_each_image_once(disk, tmp_path,
                                                                           capsys, monkeypatch):
    pytest.importorskip("ray.data", reason="the scale extra is not installed")
    monkeypatch.setenv("RAY_worker_niceness", "0")  # Ray's nice 15 starves them beside training
    from maskfocal.archive import read_results

    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(120):
        Image.fromarray((rng.random((48, 64, 3)) * 255).astype(np.uint8)).save(
            folder / f"{k:03d}.png")
    out = disk.path / "results"
    argv = ["count-archive", folder, "--out", out, "--checkpoint", checkpoint(tmp_path),
            "--flush-every", "4", "--workers", "1"]
    status, _, err = run(argv, capsys)
    _full(status, err, disk.path)
    kept = read_results(out).num_rows
    assert 0 < kept < 120
    disk.grow()
    status, _, err = run(argv, capsys)
    assert status == 0, err
    paths = read_results(out, columns=["path"]).column("path").to_pylist()
    assert len(paths) == len(set(paths)) == 120
