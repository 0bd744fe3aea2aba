"""Counting an archive on Ray Data: the same heads as ``maskfocal count``, every image once,
errors as rows, resumable. One local Ray (2 CPUs) serves the whole module."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
from PIL import Image

from maskfocal.cli import main
from maskfocal.testing import free_port
from tests.test_inference import checkpoint, dots

pytest.importorskip("ray.data", reason="the scale extra is not installed")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from maskfocal.archive import MARKER, count_archive, list_source, read_results  # noqa: E402

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module (starting one takes seconds); count_archive joins it.
    Its workers at normal priority: Ray's default (nice 15) starves them on a busy machine."""
    os.environ.setdefault("RAY_worker_niceness", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """~40 images in a folder tree (one of them large enough to be tiled), a corrupt file,
    and a tiny CenterNet whose heads follow the dots."""
    root = tmp_path_factory.mktemp("archive")
    folder = _mkdir(root / "photos")
    for n in range(36):
        pixels, _ = dots(96 + 32 * (n % 3), 128, 4 + n % 9, seed=n)
        pixels[..., 1] = (n * 7) % 256  # colour differences, so counts differ
        Image.fromarray(pixels).save(folder / f"{n:03d}.png")
    big, _ = dots(300, 420, 30, seed=99)
    Image.fromarray(big).save(folder / "big.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    sub = _mkdir(folder / "more")
    for n in range(3):
        Image.fromarray(dots(80, 80, 3, seed=200 + n)[0]).save(sub / f"s{n}.png")
    return root, folder, checkpoint(root, threshold=0.12)


def _mkdir(path):
    path.mkdir(parents=True, exist_ok=True)
    return path


TILED = {"tile_above": 256, "tile_size": 192, "tile_overlap": 32}


def _cli_counts(capsys, folder, ck) -> dict[str, int]:
    """What ``maskfocal count --json`` says for the images directly in ``folder``."""
    capsys.readouterr()
    assert main(["count", str(folder), "--checkpoint", str(ck), "--json", "--device", "cpu",
                 "--tile-above", "256", "--tile-size", "192", "--tile-overlap", "32"]) == 0
    records = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return {os.path.abspath(r["image"]): r["count"] for r in records}


def test_counts_equal_maskfocal_count_and_bad_files_are_rows(archive, local_ray, tmp_path,
                                                             capsys):
    _root, folder, ck = archive
    out = tmp_path / "results"
    summary = count_archive(folder, out, ck, workers=2, batch_size=3, points=True,
                            flush_rows=10, progress=False, **TILED)
    table = read_results(out)
    rows = {r["path"]: r for r in table.to_pylist()}
    assert len(rows) == table.num_rows == summary.counted == 41  # 36 + big + broken + 3
    assert summary.errors == 1 and summary.already == 0
    broken = rows[str(folder / "broken.jpg")]
    assert broken["count"] is None and "cannot read image" in broken["error"]
    single = _cli_counts(capsys, folder, ck)  # broken.jpg is skipped there with a warning
    assert len(single) == 37
    assert {p: rows[p]["count"] for p in single} == single
    assert len({c for c in single.values()}) > 3  # the model sees the images, not a constant
    big = rows[str(folder / "big.png")]
    assert (big["width"], big["height"]) == (420, 300)
    assert len(big["points"]) == big["count"] and big["model"] == str(ck)
    assert all(r["threshold"] == pytest.approx(0.12) for r in rows.values())
    assert len(summary.files) == 5  # 41 rows, 10 a file
    assert json.loads((out / MARKER).read_text())["tile_above"] == 256


def test_onnx_runtime_counts_the_archive_as_pytorch_does(archive, local_ray, tmp_path,
                                                         monkeypatch, capsys):
    """Issue 56: the driver exports once and sends the export to its CPU actors, whose counts
    equal eager PyTorch's."""
    monkeypatch.setenv("MASKFOCAL_CACHE", str(tmp_path / "cache"))
    _root, folder, ck = archive
    out = tmp_path / "results"
    count_archive(folder, out, ck, workers=2, batch_size=3, progress=False, backend="onnx",
                  **TILED)
    rows = {r["path"]: r["count"] for r in read_results(out).to_pylist()}
    single = _cli_counts(capsys, folder, ck)  # eager PyTorch: the suite's default
    assert {p: rows[p] for p in single} == single
    assert len(list((tmp_path / "cache" / "onnx").iterdir())) == 1


def test_a_second_run_counts_only_what_is_missing(archive, local_ray, tmp_path, monkeypatch):
    import maskfocal.archive

    monkeypatch.setattr(maskfocal.archive, "CHUNK_IMAGES", 12)  # several Ray datasets a run
    _root, folder, ck = archive
    paths = list_source(folder)
    first = tmp_path / "first.txt"
    first.write_text("# the first 15\n" + "\n".join(paths[:15]) + "\n\n")
    out = tmp_path / "results"
    assert count_archive(first, out, ck, workers=1, progress=False).counted == 15
    (out / ".part-x.parquet.dead.tmp").write_bytes(b"half a file from a killed run")
    again = count_archive(folder, out, ck, workers=2, progress=False)
    assert (again.already, again.counted) == (15, len(paths) - 15)
    assert not (out / ".part-x.parquet.dead.tmp").exists()
    table = read_results(out, columns=["path"])
    assert sorted(table.column("path").to_pylist()) == sorted(paths)  # each exactly once
    third = count_archive(folder, out, ck, progress=False)
    assert (third.already, third.counted, third.files) == (len(paths), 0, [])


def test_manifests_relative_paths_and_columns(archive, tmp_path):
    root, folder, _ = archive
    names = ["photos/000.png", "photos/more/s1.png", "photos/000.png"]
    (root / "list.txt").write_text("\n".join(names))
    expected = [str(root / "photos/000.png"), str(root / "photos/more/s1.png")]
    assert list_source(root / "list.txt") == expected  # relative to the manifest, once each
    pq.write_table(pa.table({"file": names, "n": [1, 2, 3]}), root / "list.parquet")
    assert list_source(root / "list.parquet", column="file") == expected
    (root / "list.csv").write_text("file,n\n" + "\n".join(f"{n},1" for n in names))
    assert list_source(root / "list.csv", column="file") == expected
    assert len(list_source(str(folder / "**" / "*.png"))) == 40
    with pytest.raises(ValueError, match=r"list.csv: no column 'path' \(it has file, n\)"):
        list_source(root / "list.csv")


@pytest.mark.parametrize("case", ["empty", "missing", "user folder", "other settings",
                                  "bad threshold"])
def test_mistakes_are_one_line_before_any_counting(archive, tmp_path, capsys, case):
    _root, folder, ck = archive
    out = tmp_path / "results"
    source = folder
    extra = []
    if case == "empty":
        source = tmp_path / "empty"
        source.mkdir()
    elif case == "missing":
        source = tmp_path / "nowhere"
    elif case == "user folder":
        out.mkdir()
        (out / "mine.parquet").write_bytes(b"the user's")
    elif case == "other settings":
        out.mkdir()
        (out / MARKER).write_text(json.dumps({"model": "other.pt", "threshold": 0.5}))
    else:
        extra = ["--threshold", "1.5"]
    capsys.readouterr()
    assert main(["count-archive", str(source), "--out", str(out), "--checkpoint", str(ck),
                 *extra]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("maskfocal: error:") and "\n" not in error, error
    if case == "user folder":
        assert (out / "mine.parquet").read_bytes() == b"the user's"
        assert not (out / MARKER).exists()


@pytest.mark.slow
def test_kill_9_in_the_middle_then_every_image_is_counted_once(archive, tmp_path):
    """The CLI in its own process (its own local Ray), killed with SIGKILL once it has
    written a file, then run again."""
    _root, folder, ck = archive
    out = tmp_path / "results"
    command = [sys.executable, "-m", "maskfocal", "count-archive", str(folder), "--out",
               str(out), "--checkpoint", str(ck), "--flush-every", "4", "--workers", "1",
               "--batch-size", "1"]
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list(out.glob("part-*.parquet")) and time.monotonic() < deadline:
        assert process.poll() is None, "finished before it could be killed"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    written = read_results(out).num_rows
    assert 4 <= written < 41
    assert main(["count-archive", str(folder), "--out", str(out), "--checkpoint",
                 str(ck)]) == 0
    paths = read_results(out, columns=["path"]).column("path").to_pylist()
    assert sorted(paths) == sorted(list_source(folder)) and len(paths) == 41


def test_rows_regroup_into_files_of_the_asked_size():
    from maskfocal.archive import _flushed, _schema

    def table(n):
        return pa.Table.from_pylist([{"path": str(i)} for i in range(n)],
                                    schema=_schema())

    sizes = [t.num_rows for t in _flushed([table(3), table(9), table(1)], rows=5)]
    assert sizes == [5, 5, 3]
    assert [t.num_rows for t in _flushed([table(2), table(2)], rows=5, seconds=0)] == [2, 2]
    assert np.sum(sizes) == 13


def test_zones_become_a_column_and_a_zone_that_does_not_fit_an_error_row(archive, local_ray,
                                                                         tmp_path):
    from maskfocal.inference import Counter

    _root, folder, ck = archive
    zones = tmp_path / "zones.json"
    zones.write_text(json.dumps({"zones": [
        {"name": "corner", "polygon": [[0, 0], [64, 0], [64, 64], [0, 64]]},
        {"name": "wide", "polygon": [[0, 0], [400, 0], [400, 40], [0, 40]]}]}))
    out = tmp_path / "results"
    count_archive(str(folder / "0*.png"), out, ck, progress=False, zones=zones)
    rows = {r["path"]: r for r in read_results(out).to_pylist()}
    counter = Counter.from_checkpoint(ck, device="cpu")
    assert len(rows) == 36
    for row in rows.values():  # 128 px wide: "wide" reaches outside every one of them
        assert row["count"] is None and "reaches outside" in row["error"]
    count_archive(str(folder / "big.png"), tmp_path / "big", ck, progress=False, zones=zones)
    (row,) = read_results(tmp_path / "big").to_pylist()
    assert dict(row["zones"]) == counter(folder / "big.png", zones=zones).zones


def test_retry_errors_counts_error_rows_again_each_image_once(archive, local_ray, tmp_path,
                                                              capsys):
    """Issue 53, 3: a file missing in the first run and present in the second stayed an error
    row for good; ``--retry-errors`` counts it again, and it keeps one row."""
    _root, _folder, ck = archive
    late = tmp_path / "late"
    late.mkdir()
    for n in range(3):
        Image.fromarray(dots(80, 96, 4, seed=300 + n)[0]).save(late / f"{n}.png")
    manifest = tmp_path / "list.txt"
    manifest.write_text("\n".join([*(str(late / f"{n}.png") for n in range(3)),
                                   str(late / "missing.png")]) + "\n")
    out = tmp_path / "results"
    first = count_archive(manifest, out, ck, workers=1, progress=False)
    assert (first.counted, first.errors, first.error_rows) == (4, 1, 1)
    Image.fromarray(dots(80, 96, 5, seed=400)[0]).save(late / "missing.png")
    plain = count_archive(manifest, out, ck, workers=1, progress=False)
    assert (plain.counted, plain.error_rows) == (0, 1)  # as before: not retried unasked
    capsys.readouterr()
    assert main(["count-archive", str(manifest), "--out", str(out), "--checkpoint", str(ck),
                 "--workers", "1", "--retry-errors"]) == 0
    assert "1 counted now" in capsys.readouterr().out
    rows = read_results(out).to_pylist()
    assert sorted(r["path"] for r in rows) == sorted(manifest.read_text().split())  # once
    assert all(r["error"] is None and r["count"] is not None for r in rows)
    again = count_archive(manifest, out, ck, workers=1, progress=False, retry_errors=True)
    assert (again.counted, again.error_rows) == (0, 0)


def test_keeping_one_row_each_finishes_a_killed_retry(archive, tmp_path):
    """Rows of one path in two files (a retry killed before its clean-up): the counted row
    stays, the error row goes, and a file left empty is removed."""
    from maskfocal.archive import ResultsFolder, _schema

    out = tmp_path / "results"
    results = ResultsFolder(out, {"model": "m"})
    schema = _schema()

    def rows(*entries):
        return pa.Table.from_pylist([{"path": p, "count": c, "error": e}
                                     for p, c, e in entries], schema=schema)

    first = results.write(rows(("a", None, "cannot read"), ("b", 3, None)))
    results.write(rows(("a", 5, None)))
    lone = results.write(rows(("c", None, "gone")))
    results.write(rows(("c", None, "still gone")))
    assert results.keep_one_row_each() == 2
    table = read_results(out).to_pylist()
    assert sorted((r["path"], r["count"], r["error"]) for r in table) == [
        ("a", 5, None), ("b", 3, None), ("c", None, "still gone")]
    assert first.exists() and not lone.exists()
    assert results.keep_one_row_each() == 0


def _wait_for_port(port: int, process, seconds: float = 120) -> None:
    import socket

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, "the Ray head stopped"
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                time.sleep(3)  # listening; the rest of the head comes up with it
                return
        time.sleep(0.5)
    raise AssertionError(f"no Ray head on port {port} after {seconds} s")


@pytest.mark.slow
def test_joining_a_head_that_asks_for_a_token(archive, tmp_path):
    """``ray start --head`` on loopback with a token in its home (Ray turns authentication on
    then): ``--address`` joins it from a home that holds the token; from one without, one
    line that says what to copy, exit 2."""
    _root, folder, ck = archive
    ray_cli = os.path.join(os.path.dirname(sys.executable), "ray")
    head_home, bare_home = _mkdir(tmp_path / "head"), _mkdir(tmp_path / "bare")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    subprocess.run([ray_cli, "get-auth-token", "--generate"], env=dict(env, HOME=str(head_home)),
                   check=True, capture_output=True)
    port, ray_dir = free_port(), tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short paths:
    head = subprocess.Popen(
        [ray_cli, "start", "--head", "--block", "--port", str(port), "--node-ip-address",
         "127.0.0.1", "--num-cpus", "1", "--include-dashboard", "false",
         "--temp-dir", ray_dir],  # a Unix socket's path has at most 107 characters
        env=dict(env, HOME=str(head_home)), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, head)
        runs = {}
        for name, home in (("with token", head_home), ("without", bare_home)):
            command = [sys.executable, "-m", "maskfocal", "count-archive", str(folder / "more"),
                       "--out", str(tmp_path / name), "--checkpoint", str(ck),
                       "--address", f"127.0.0.1:{port}"]
            runs[name] = subprocess.run(command, env=dict(env, HOME=str(home)),
                                        capture_output=True, text=True, timeout=300)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=60)
        shutil.rmtree(ray_dir, ignore_errors=True)
    assert runs["with token"].returncode == 0, runs["with token"].stderr[-2000:]
    assert read_results(tmp_path / "with token").num_rows == 3
    assert runs["without"].returncode == 2
    last = runs["without"].stderr.strip().splitlines()[-1]
    assert last.startswith("maskfocal: error: cannot start or join 127.0.0.1:")
    assert "~/.ray/auth_token" in last and "Traceback" not in runs["without"].stderr


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    """200 small images: enough for a run to be killed in its middle."""
    folder = tmp_path_factory.mktemp("many")
    for n in range(200):
        Image.fromarray(dots(64, 80, 1 + n % 7, seed=1000 + n)[0]).save(folder / f"{n:03d}.png")
    return folder


def _counts(out) -> dict[str, int]:
    table = read_results(out, columns=["path", "count"])
    paths = table.column("path").to_pylist()
    assert len(paths) == len(set(paths)), "an image counted twice"
    return dict(zip(paths, table.column("count").to_pylist(), strict=True))


def _count_and_kill(folder, out, ck, title: str | None):
    """``count-archive`` in its own process (its own local Ray); once it has written a file,
    SIGKILL to the first of its descendants whose process title holds ``title`` (None: to
    the driver itself). Returns the process and its descendants when the kill came."""
    psutil = pytest.importorskip("psutil")
    command = [sys.executable, "-m", "maskfocal", "count-archive", str(folder), "--out",
               str(out), "--checkpoint", str(ck), "--workers", "1", "--batch-size", "1",
               "--flush-every", "4"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env=dict(os.environ, RAY_worker_niceness="0"), text=True)
    driver, deadline = psutil.Process(process.pid), time.monotonic() + 300
    while time.monotonic() < deadline:
        assert process.poll() is None, "finished before the kill"
        if list(out.glob("part-*.parquet")):
            for child in driver.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if title is None or title in " ".join(child.cmdline()):
                        family = driver.children(recursive=True)
                        os.kill(process.pid if title is None else child.pid, signal.SIGKILL)
                        return process, family
        time.sleep(0.02)
    raise AssertionError(f"no process titled {title} while counting")


@pytest.mark.slow
@pytest.mark.parametrize("title", ["MapBatches(_CountWorker)", "Map(_decode)"])
def test_a_ray_worker_killed_mid_run_and_every_image_is_counted_once(archive, many, local_ray,
                                                                     tmp_path, title):
    """kill -9 to a counting actor's process, or to a decoding task's: Ray starts it again,
    the run ends well, each image has one row and the counts of a clean run."""
    ck = archive[2]
    clean = count_archive(many, tmp_path / "clean", ck, progress=False)
    assert clean.counted == 200
    process, _ = _count_and_kill(many, tmp_path / "killed", ck, title)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-2000:]
    assert _counts(tmp_path / "killed") == _counts(tmp_path / "clean")


@pytest.mark.slow
def test_a_killed_driver_leaves_no_ray_behind(archive, many, tmp_path):
    """kill -9 to the driver: the local Ray it started goes with it. Its agents wait out a
    60 s timeout of Ray's (reporting the raylet's death to a GCS that died with it), so
    everything is gone within 90 s; measured 70 s."""
    psutil = pytest.importorskip("psutil")
    process, family = _count_and_kill(many, tmp_path / "results", archive[2], None)
    process.communicate(timeout=60)
    assert len(family) >= 3  # raylet, gcs_server, workers, agents
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        alive = []
        for child in family:
            with contextlib.suppress(psutil.Error):
                if child.is_running() and child.status() != psutil.STATUS_ZOMBIE:
                    alive.append(child.name())
        if not alive:
            break
        time.sleep(2)
    assert not alive, f"still running 90 s after the driver was killed: {alive}"
    assert main(["count-archive", str(many), "--out", str(tmp_path / "results"),
                 "--checkpoint", str(archive[2])]) == 0
    assert len(_counts(tmp_path / "results")) == 200
