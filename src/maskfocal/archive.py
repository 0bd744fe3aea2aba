"""Count an archive: every image of a folder tree, glob or manifest, on Ray Data, into a
Parquet dataset; resumable, and with the same heads as ``maskfocal count``.

    maskfocal count-archive SOURCE --out RESULTS [--address ray://... | RAY_ADDRESS=...]

The pipeline (Ray Data's offline batch inference pattern):

1. the driver lists SOURCE, reads which paths RESULTS already holds and keeps the rest;
2. Ray tasks decode the images (:func:`maskfocal.structures.load_rgb`, as ``count`` reads
   them), so that a pool of counters is never idle waiting for a decoder;
3. an actor pool counts them: each actor loads the model once (its bytes travel through the
   object store, so the nodes of a cluster need the images but not the checkpoint) and runs a
   :class:`~maskfocal.inference.Counter` built as ``maskfocal count`` builds it;
4. the rows stream back to the driver, which writes them as Parquet files of
   ``flush_rows`` rows (or whatever arrived within :data:`FLUSH_SECONDS`), each written whole
   (a temporary, then a rename). A killed run loses only the rows it had not yet written;
   the next run over the same RESULTS counts exactly the images that are not in it.

Rows are written by the driver, not by Ray's ``write_parquet``: its files are written in place
by the tasks, so a killed job leaves half files, and it cannot append without duplicates.
RESULTS must be reachable from the driver; the images, from every node (a shared mount).

RESULTS holds ``part-*.parquet`` files and :data:`MARKER` (the model, threshold and tiling
its counts come from: a later run with other settings is refused, so that one dataset never
mixes two models). Read it with ``pandas.read_parquet(RESULTS)`` or
``pyarrow.dataset.dataset(RESULTS)``; files starting with ``_`` or ``.`` are not data.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from maskfocal.errors import DatasetError, MaskfocalError
from maskfocal.fileio import atomic_write_bytes, atomic_write_text, remove_stale_temporaries

__all__ = ["MARKER", "ArchiveSummary", "count_archive", "list_source", "read_results"]

MARKER = "_maskfocal_archive.json"
"""In RESULTS: the settings every row was counted with (model, threshold, tiling, points)."""

MANIFEST_SUFFIXES = (".txt", ".lst", ".csv", ".parquet")
FLUSH_ROWS = 1000  # rows per Parquet file (a killed run loses at most this many, or ...)
FLUSH_SECONDS = 60.0  # ... what arrived in the last minute, whichever is less
# Images per Ray Dataset, run one after another: the driver holds one chunk's blocks, not an
# archive's millions; each chunk starts its actors again (seconds, against hours of counting).
CHUNK_IMAGES = 20000
TOKEN_HINT = ("a cluster started with `ray start --head` asks for its token: copy the "
              "head's ~/.ray/auth_token (`ray get-auth-token` prints it) to ~/.ray/auth_token "
              "here, or set RAY_AUTH_TOKEN")
QUIET = ("ray._private.authentication.authentication_token_setup",  # a local Ray's token
         "ray.data._internal.progress")  # "progress bars disabled": ours is fed by the rows
INSTALL_HINT = "count-archive needs Ray Data: pip install 'maskfocal[scale]'"


def _schema():
    import pyarrow as pa

    return pa.schema([
        ("path", pa.string()),
        ("count", pa.int32()),  # null when the image could not be counted
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("threshold", pa.float32()),
        ("model", pa.string()),
        ("error", pa.string()),  # null when counted
        ("points", pa.list_(pa.list_(pa.float32(), 2))),  # x, y; null unless asked for
        ("zones", pa.map_(pa.string(), pa.int32())),  # heads per zone, with --zones
        ("density", pa.map_(pa.string(), pa.float32())),  # people per m², with a ground
    ])


@dataclass
class ArchiveSummary:
    """What one run did: images listed, already in RESULTS, counted now, of those errors."""

    listed: int
    already: int
    counted: int
    errors: int
    seconds: float
    results: Path
    files: list[Path]
    first_rows: tuple[int, float] = (0, 0.0)  # rows in the first batch back, and when
    error_rows: int = 0  # error rows RESULTS holds after the run (every run's)

    @property
    def images_per_second(self) -> float:
        return self.counted / self.seconds if self.seconds > 0 else 0.0


# the source -----------------------------------------------------------------------------------
def list_source(source: str | Path, column: str = "path") -> list[str]:
    """Absolute paths of the images in ``source``, each once, in a stable order.

    ``source``: a folder (its images, recursively, not the overlays maskfocal wrote there), a
    glob (``'photos/**/*.jpg'``, recursive), an image file, or a manifest: ``.txt``/``.lst``
    (one path per line; blank lines and ``#`` comments skipped) or ``.csv``/``.parquet``
    (the column ``column``). Relative paths in a manifest are relative to its folder.
    """
    from maskfocal.data.readers.common import IMAGE_EXTENSIONS

    text = str(source)
    path = Path(source)
    if path.is_dir():
        paths = _folder_tree(path, IMAGE_EXTENSIONS)
    elif path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
        paths = _manifest(path, column)
    elif path.is_file():
        paths = [str(path)]
    elif glob.has_magic(text):
        paths = sorted(p for p in glob.glob(text, recursive=True)
                       if Path(p).suffix.lower() in IMAGE_EXTENSIONS and Path(p).is_file())
    else:
        raise MaskfocalError(f"{source}: no such file, folder or glob match")
    paths = list(dict.fromkeys(os.path.abspath(p) for p in paths))
    if not paths:
        raise MaskfocalError(f"{source}: no images in it")
    return paths


def _folder_tree(folder: Path, extensions: Iterable[str]) -> list[str]:
    from maskfocal.fileio import written_here

    extensions = tuple(extensions)
    found = []
    for root, folders, files in os.walk(folder):
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        ours = written_here(root) if files else {}
        found += [os.path.join(root, name) for name in sorted(files)
                  if name.lower().endswith(extensions) and name not in ours]
    return found


def _manifest(path: Path, column: str) -> list[str]:
    suffix = path.suffix.lower()
    if suffix in (".txt", ".lst"):
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise MaskfocalError(f"{path}: a manifest must be UTF-8 text, one path per line"
                                 ) from None
        entries = [line.strip() for line in lines]
        entries = [e for e in entries if e and not e.startswith("#")]
    else:
        entries = _column(path, column)
    return [e if os.path.isabs(e) else str(path.parent / e) for e in entries]


def _column(path: Path, column: str) -> list[str]:
    import pyarrow as pa

    _need_ray()
    try:
        if path.suffix.lower() == ".csv":
            import pyarrow.csv as pcsv

            table = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(
                column_types={column: pa.string()}))
        else:
            import pyarrow.parquet as pq

            table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise MaskfocalError(f"{path}: cannot read it as {path.suffix[1:]} ({error})") from None
    if column not in table.column_names:
        raise MaskfocalError(f"{path}: no column {column!r} (it has "
                             f"{', '.join(table.column_names)}); choose one with --column")
    values = table.column(column).to_pylist()
    return [str(v) for v in values if v is not None and str(v).strip()]


# the results ----------------------------------------------------------------------------------
class ResultsFolder:
    """RESULTS: the settings of its counts (:data:`MARKER`) and the Parquet files of rows.

    A missing or empty folder becomes one; a folder with the marker is continued when the
    settings agree; anything else is the user's and is refused (nothing is written there).
    """

    def __init__(self, path: str | Path, settings: dict[str, Any]) -> None:
        from maskfocal.fileio import writable_folder

        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise MaskfocalError(f"--out {self.path}: is a file; give a folder for the "
                                 "Parquet dataset")
        marker = self.path / MARKER
        if marker.is_file():
            try:
                earlier = json.loads(marker.read_text())
            except ValueError:
                raise MaskfocalError(f"{marker}: not JSON; this folder's settings are "
                                     "unknown, choose another --out") from None
            changed = [f"{key} {earlier.get(key)!r} -> {value!r}"
                       for key, value in settings.items()
                       if key in earlier and earlier[key] != value]  # older: fewer keys
            if changed:
                raise MaskfocalError(f"--out {self.path} holds counts made with other "
                                     f"settings ({'; '.join(changed)}); one dataset holds one "
                                     "model's counts, so choose another --out")
        elif self.path.is_dir() and any(self.path.iterdir()):
            raise MaskfocalError(f"--out {self.path}: a folder that count-archive did not "
                                 f"write (no {MARKER}); choose a new or empty folder")
        writable_folder(self.path, "--out")
        if not marker.is_file():
            atomic_write_text(marker, json.dumps(settings, indent=1) + "\n")
        remove_stale_temporaries(self.path, ["part-*.parquet"])  # a killed run's half file
        self.token = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        self.written: list[Path] = []

    def done(self, *, retry_errors: bool = False) -> set[str]:
        """The paths that already have a row (``retry_errors``: a counted row; a path whose
        row is an error is then counted again)."""
        if not any(self.path.glob("part-*.parquet")):
            return set()
        table = read_results(self.path, columns=["path", "error"])
        if retry_errors:
            import pyarrow.compute as pc

            table = table.filter(pc.is_null(table.column("error")))
        return set(table.column("path").to_pylist())

    def error_rows(self) -> int:
        """How many rows are errors (images that could not be read or counted)."""
        if not any(self.path.glob("part-*.parquet")):
            return 0
        errors = read_results(self.path, columns=["error"]).column("error")
        return len(errors) - errors.null_count

    def keep_one_row_each(self) -> int:
        """Where a path has more than one row (an error row counted again with
        ``--retry-errors``), keep its counted row, or its newest error row, and rewrite each
        file that held another one without it (whole or not at all; a file left with no
        rows is removed). Safe to repeat: a run killed halfway is finished by the next.
        Returns the rows removed."""
        import pyarrow.parquet as pq

        files = sorted(self.path.glob("part-*.parquet"))  # by name: run time, then order
        tables = [pq.read_table(file, schema=_schema()) for file in files]
        best: dict[str, tuple[bool, int]] = {}  # path -> (counted, file number)
        for number, table in enumerate(tables):
            for path, error in zip(table.column("path").to_pylist(),
                                   table.column("error").to_pylist(), strict=True):
                rank = (error is None, number)
                if path not in best or rank > best[path]:
                    best[path] = rank
        removed = 0
        for number, (file, table) in enumerate(zip(files, tables, strict=True)):
            keep = [best[path] == (error is None, number) for path, error in
                    zip(table.column("path").to_pylist(), table.column("error").to_pylist(),
                        strict=True)]
            if all(keep):
                continue
            removed += keep.count(False)
            if any(keep):
                import pyarrow as pa

                buffer = pa.BufferOutputStream()
                pq.write_table(table.filter(pa.array(keep)), buffer, compression="zstd")
                atomic_write_bytes(file, buffer.getvalue().to_pybytes())
            else:
                file.unlink()
        return removed

    def write(self, table) -> Path:
        """One Parquet file of rows, whole or not at all."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        buffer = pa.BufferOutputStream()
        pq.write_table(table, buffer, compression="zstd")
        path = self.path / f"part-{self.token}-{len(self.written):05d}.parquet"
        atomic_write_bytes(path, buffer.getvalue().to_pybytes())
        self.written.append(path)
        return path


def read_results(path: str | Path, columns: list[str] | None = None):
    """RESULTS as one ``pyarrow.Table`` (every run's rows)."""
    import pyarrow as pa
    import pyarrow.dataset as pds

    try:
        return pds.dataset(str(path), format="parquet", schema=_schema()).to_table(
            columns=columns)
    except (pa.ArrowInvalid, OSError) as error:
        raise MaskfocalError(f"{path}: cannot read its Parquet files ({error})") from None


# decoding and counting (inside Ray) -----------------------------------------------------------
def _decode(row: dict[str, Any]) -> dict[str, Any]:
    """A Ray Data row ``{path}`` -> ``{path, image, error}``; never raises (a file that
    cannot be read becomes its error row)."""
    from maskfocal.structures import load_rgb

    try:
        image = np.ascontiguousarray(load_rgb(row["path"]))
        error = ""
    except DatasetError as problem:
        image, error = None, problem.reason
    except Exception as problem:  # one bad file must not end the job
        image, error = None, f"{type(problem).__name__}: {problem}"
    if image is None:
        image = np.zeros((0, 0, 3), np.uint8)
    return {"path": row["path"], "image": image, "error": error}


class _CountWorker:
    """One actor of the pool: loads the model once, counts batches of decoded images."""

    def __init__(self, model: list, name: str, suffix: str, options, points: bool,
                 threads: int, device: str, zones=None, backend: str | None = None) -> None:
        import ray
        import torch

        from maskfocal.inference import Counter

        torch.set_num_threads(max(1, threads))
        blob = ray.get(model[0])  # in a list, so that Ray passes the reference, not the bytes
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"model{suffix}"
            path.write_bytes(blob)
            self.counter = Counter.from_checkpoint(path, device=device, backend=backend
                                                   ).with_options(options)
        self.name, self.threshold, self.points, self.zones = (name, options.threshold, points,
                                                              zones)

    def __call__(self, batch: dict[str, np.ndarray]):
        import pyarrow as pa

        from maskfocal.inference.records import CountRecord

        rows = []
        readable = [i for i, error in enumerate(batch["error"]) if not error]
        images = [batch["image"][i] for i in readable]
        try:
            found = (dict(zip(readable, self.counter(images, zones=self.zones), strict=True))
                     if images else {})
        except Exception:  # count them one by one to find which one fails
            found = {}
            for i, image in zip(readable, images, strict=True):
                try:
                    found[i] = self.counter(image, zones=self.zones)
                except Exception as problem:
                    found[i] = f"{type(problem).__name__}: {problem}"
        for i, path in enumerate(batch["path"]):
            result = found.get(i)
            if batch["error"][i] or isinstance(result, str):
                record = CountRecord(model=self.name, threshold=self.threshold,
                                     error=str(batch["error"][i]) or result)
            else:
                height, width = batch["image"][i].shape[:2]
                record = CountRecord(result, width=width, height=height, model=self.name,
                                     threshold=self.threshold)
            rows.append({"path": str(path), **record.to_row(points=self.points)})
        return pa.Table.from_pylist(rows, schema=_schema())


# the driver -----------------------------------------------------------------------------------
def count_archive(source: str | Path, out: str | Path, checkpoint: str | Path | None = None,
                  *, points: bool = False,
                  workers: int | None = None, cpus_per_worker: float = 1,
                  gpus_per_worker: float = 0, batch_size: int = 4, address: str | None = None,
                  column: str = "path", flush_rows: int = FLUSH_ROWS, progress: bool = True,
                  zones: str | Path | None = None, retry_errors: bool = False,
                  backend: str | None = None, **options) -> ArchiveSummary:
    """Count every image of ``source`` not yet in ``out`` on Ray Data (module docstring).

    Args:
        source: a folder tree, glob, image or manifest (:func:`list_source`).
        out: the results folder (a Parquet dataset, one row per image).
        checkpoint: a checkpoint, weights, ONNX file or shipped model name (default: the
            default shipped model).
        points: keep each head's (x, y) in the ``points`` column.
        workers: counting actors (default: as many as the cluster's CPUs, or GPUs with
            ``gpus_per_worker``, allow).
        cpus_per_worker: CPUs each actor asks Ray for; also its torch threads.
        gpus_per_worker: GPUs each actor asks for (> 0: the model runs on CUDA).
        batch_size: images per call of an actor (and per forward pass, where they share a
            padded size).
        address: a running Ray cluster (``ray://host:10001``, ``host:6379`` or ``auto``);
            default ``RAY_ADDRESS``, or a local Ray started here and stopped at the end.
        column: the paths' column in a CSV or Parquet manifest.
        options: the inference options, as :meth:`maskfocal.Counter.from_checkpoint` takes
            them (``threshold``, ``scale``, ``max_eval_side``, ``tile_above``, ``tile_size``,
            ``tile_overlap``; default: the model's own).
        flush_rows: rows per Parquet file.
        progress: a progress bar on stderr.
        zones: a zone file (:mod:`maskfocal.zones`): the ``zones`` column (heads per zone)
            and, with a ground scale, ``density`` (people per m²).
        retry_errors: count the images whose rows are errors again (a file missing then,
            present now); each image keeps one row, the new one.
        backend: as :meth:`maskfocal.Counter.from_checkpoint` takes it; decided once, here:
            CPU actors receive the ONNX export where it is ONNX Runtime (none exports again),
            GPU actors the checkpoint.
    """
    from maskfocal.inference import Counter, InferenceOptions
    from maskfocal.pretrained import DEFAULT_MODEL, MODELS, checkpoint_or_shipped

    _check_options(workers, cpus_per_worker, gpus_per_worker, batch_size, flush_rows)
    InferenceOptions().replace(**options)  # a bad option: one line, before any work
    _need_ray()
    zone_set = None
    if zones is not None:
        from maskfocal.zones import load_zones

        zone_set = load_zones(zones)
    paths = list_source(source, column)
    model_path = checkpoint_or_shipped(checkpoint, say=progress)
    counter = Counter.from_checkpoint(model_path, device="cpu", backend=backend, **options)
    chosen = counter.options
    blob = model_path.read_bytes()
    exported = getattr(counter.predictor.runner, "path", None)  # the ONNX file it runs
    if gpus_per_worker == 0 and exported is not None:
        sent, suffix, backend = Path(exported).read_bytes(), ".onnx", None
    else:  # GPU actors: auto is PyTorch on CUDA; CPU actors run what the driver resolved
        sent, suffix = blob, model_path.suffix
        backend = backend if gpus_per_worker else "torch"
    shipped = checkpoint is None or (str(checkpoint) in MODELS
                                     and not Path(checkpoint).exists())
    name = (str(checkpoint or DEFAULT_MODEL)) if shipped else str(checkpoint)
    settings = {"model": name, "model_sha256": hashlib.sha256(blob).hexdigest(),
                "threshold": round(chosen.threshold, 6), "input_scale": chosen.input_scale,
                "scale_target": chosen.scale_target, "max_eval_side": chosen.max_eval_side,
                "tile_above": chosen.tile_above, "tile_size": chosen.tile_size,
                "tile_overlap": chosen.tile_overlap, "points": points,
                "zones_sha256": None if zones is None else
                hashlib.sha256(Path(zones).read_bytes()).hexdigest()}
    results = ResultsFolder(out, settings)
    results.keep_one_row_each()  # a retry that a kill interrupted is finished first
    done = results.done(retry_errors=retry_errors)
    todo = [p for p in paths if p not in done]
    started = time.perf_counter()
    if not todo:
        return ArchiveSummary(len(paths), len(paths) - len(todo), 0, 0, 0.0, results.path, [],
                              error_rows=results.error_rows())
    counted = errors = 0
    first: list[tuple[int, float]] = []
    with _ray_session(address) as ray:
        if workers is None:
            workers = _default_workers(ray, cpus_per_worker, gpus_per_worker)
        model = ray.put(sent)
        datasets = (_pipeline(ray, todo[start:start + CHUNK_IMAGES], model, name,
                              suffix, chosen, points, workers, cpus_per_worker,
                              gpus_per_worker, batch_size, zone_set, backend)
                    for start in range(0, len(todo), CHUNK_IMAGES))
        batches = _batches(datasets, len(todo), progress, first, started)
        flushed = _flushed(batches, flush_rows)
        try:
            for table in flushed:
                results.write(table)
                counted += table.num_rows
                errors += table.num_rows - table.column("error").null_count
        finally:  # a write that failed (disk full) stops Ray Data's executor before Ray
            flushed.close()
            batches.close()
    if retry_errors:
        results.keep_one_row_each()  # the retried images' earlier error rows go
    return ArchiveSummary(len(paths), len(paths) - len(todo), counted, errors,
                          time.perf_counter() - started, results.path, results.written,
                          first[0] if first else (0, 0.0), error_rows=results.error_rows())


def _check_options(workers, cpus_per_worker, gpus_per_worker, batch_size, flush_rows) -> None:
    if workers is not None and workers < 1:
        raise MaskfocalError(f"workers must be at least 1, got {workers}")
    if not 0 < cpus_per_worker < math.inf:
        raise MaskfocalError(f"CPUs per worker must be a number > 0, got {cpus_per_worker}")
    if not 0 <= gpus_per_worker < math.inf:
        raise MaskfocalError(f"GPUs per worker must be a number >= 0, got {gpus_per_worker}")
    if batch_size < 1 or flush_rows < 1:
        raise MaskfocalError("batch size and rows per file must be at least 1")


def _need_ray() -> None:
    try:
        import pyarrow  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        raise MaskfocalError(INSTALL_HINT) from None


class _ray_session:
    """Ray for one run: the cluster at ``address`` (or ``RAY_ADDRESS``), the one this process
    already joined, or a local one started now and stopped at the end."""

    def __init__(self, address: str | None) -> None:
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.started = False

    def __enter__(self):
        import logging

        import ray
        from ray.data import DataContext

        for noise in QUIET:  # warnings about choices made here on purpose
            logging.getLogger(noise).setLevel(logging.ERROR)
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False,
                                       "logging_level": logging.WARNING,
                                       "log_to_driver": False}
            token = bool(self.address) and _send_token()
            try:
                if self.address:
                    ray.init(address=self.address, **options)
                else:
                    ray.init(address="local", num_cpus=os.cpu_count() or 1, **options)
            except (ConnectionError, RuntimeError, ValueError) as error:
                where = self.address or "a local Ray"
                hint = "" if token or not self.address else f"; {TOKEN_HINT}"
                raise MaskfocalError(f"cannot start or join {where} "
                                     f"({str(error).splitlines()[0]}){hint}") from None
            self.started = True
        context = DataContext.get_current()
        context.enable_progress_bars = False  # ours is fed by the rows as they arrive
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # not each run's INFO lines
        return ray

    def __exit__(self, *exc) -> None:
        if self.started:
            import ray

            ray.shutdown()


def _send_token() -> bool:
    """Whether this process will send a Ray token when it joins a cluster.

    ``ray start --head`` turns token authentication on (Ray 2.59 on), but a Ray 2.60 client
    sends its token only with ``RAY_AUTH_MODE=token``; Ray's own rule for a local cluster is
    applied here to the one joined: with the mode unset and a token at hand
    (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``), send it. A cluster
    without authentication ignores it; ``RAY_AUTH_MODE`` set by the user is kept.
    """
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # a Ray that sends its token on its own (2.61 on)
        return os.environ.get("RAY_AUTH_MODE", "token").lower() == "token"
    return maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _default_workers(ray, cpus_per_worker: float, gpus_per_worker: float) -> int:
    resources = ray.cluster_resources()
    if gpus_per_worker > 0:
        return max(1, int(resources.get("GPU", 0) // gpus_per_worker))
    return max(1, int(resources.get("CPU", 1) // cpus_per_worker))


def _pipeline(ray, todo: list[str], model, name: str, suffix: str, options,
              points: bool, workers: int, cpus_per_worker: float,
              gpus_per_worker: float, batch_size: int, zones=None,
              backend: str | None = None):
    import pyarrow as pa
    from ray.data import ActorPoolStrategy, TaskPoolStrategy

    # One block per actor call: a block is Ray Data's unit of work and of output, so blocks of
    # a batch spread the images over the actors and stream the rows back as each is counted
    # (blocks of 16 kept one actor busy and the rows back until all 16 were done).
    blocks = [pa.table({"path": todo[start:start + batch_size]})
              for start in range(0, len(todo), batch_size)]
    # Decoding asks for no CPU of its own: counters that hold every CPU would otherwise
    # starve the decoders that feed them (a deadlock on a 2-core machine); the pool of
    # decoders is capped instead, at one per counter.
    decoded = ray.data.from_arrow(blocks).map(
        _decode, num_cpus=0, compute=TaskPoolStrategy(size=max(1, workers)))
    device = "cuda" if gpus_per_worker > 0 else "cpu"
    return decoded.map_batches(
        _CountWorker, batch_size=batch_size, batch_format="numpy",
        compute=ActorPoolStrategy(size=workers), num_cpus=cpus_per_worker,
        num_gpus=gpus_per_worker or None,
        fn_constructor_kwargs={"model": [model], "name": name, "suffix": suffix,
                               "options": options, "points": points,
                               "threads": max(1, round(cpus_per_worker)), "device": device,
                               "zones": zones, "backend": backend})


def _batches(datasets: Iterable, total: int, progress: bool, first: list, started: float
             ) -> Iterator:
    """The rows of each dataset in turn as they arrive; ``first`` gets (rows, seconds since
    ``started``) of the first batch."""
    from tqdm import tqdm

    with tqdm(total=total, desc="counting", unit="img", disable=not progress,
              file=sys.stderr) as bar:
        for table in (t for dataset in datasets
                      for t in dataset.iter_batches(batch_size=None, batch_format="pyarrow")):
            if not first:
                first.append((table.num_rows, time.perf_counter() - started))
            bar.update(table.num_rows)
            yield table


def _flushed(tables: Iterable, rows: int, seconds: float = FLUSH_SECONDS) -> Iterator:
    """Tables regrouped into ones of ``rows`` rows, or fewer when ``seconds`` passed."""
    import pyarrow as pa

    pending, count, since = [], 0, time.monotonic()
    for table in tables:
        pending.append(table.cast(_schema()))
        count += table.num_rows
        while count >= rows or (count and time.monotonic() - since >= seconds):
            merged = pa.concat_tables(pending)
            yield merged.slice(0, rows)
            rest = merged.slice(rows)
            pending, count, since = ([rest], rest.num_rows, time.monotonic()) if \
                rest.num_rows else ([], 0, time.monotonic())
    if count:
        yield pa.concat_tables(pending)
