"""Writing files without losing any: atomic writes, output folders that never overwrite what
they did not write, and JSON that is JSON.

- :func:`atomic_write_bytes`: a temporary file in the same folder, flushed, then renamed over;
  the file follows the umask like any other.
- :class:`OutputFolder`: the one place a command decides where a file goes. A folder keeps a
  small manifest (:data:`MANIFEST`) of the files maskfocal wrote there and which command wrote
  them; a command writes over a file only when it wrote it itself, in this run or an earlier
  run of the same command. Anything else is the user's: the command picks a new name or stops
  with a one-line error.
- :func:`dumps_json`: ``json.dumps`` with ``NaN``/``inf`` as ``null`` (strict JSON).
"""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from maskfocal.errors import MaskfocalError

MANIFEST = ".maskfocal-outputs.json"
"""In each output folder: ``{"files": {relative name: command}}`` of what maskfocal wrote."""

_TEMPORARY = ".{name}.{token}.tmp"


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    The temporary file is created with mode 0666 less the umask (as ``open`` would), not
    ``mkstemp``'s 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(_TEMPORARY.format(name=path.name, token=secrets.token_hex(4)))
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        _sync_folder(path.parent)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.filename in (None, str(temporary)):
            # a full disk names no file, a failed rename the temporary: name the output
            raise OSError(error.errno, error.strerror or str(error), str(path)) from None
        raise


def cache_folder() -> Path:
    """Where maskfocal keeps what it derives once and reuses (the ONNX exports of
    :func:`maskfocal.export.cached_onnx`): ``$MASKFOCAL_CACHE``, else
    ``$XDG_CACHE_HOME/maskfocal``, else ``~/.cache/maskfocal``. Nothing in it is the user's
    work: deleting it costs a re-export, never a result."""
    if os.environ.get("MASKFOCAL_CACHE"):
        return Path(os.environ["MASKFOCAL_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "maskfocal"


def _resolved(path: str | Path) -> Path:
    """``path`` with its links followed; a link that loops (or cannot be followed) stays as it
    is, made absolute: it names no file, so nothing is written through it."""
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):  # RuntimeError: "Symlink loop" (Python 3.11/3.12)
        return Path(os.path.abspath(path))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save_png(picture: Any, path: str | Path) -> None:
    """A PIL image as a PNG file, written atomically."""
    import io

    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def remove_stale_temporaries(folder: str | Path, names: Iterable[str]) -> int:
    """Delete the temporaries that a killed writer of ``names`` left in ``folder`` (only
    those: other dot-files are not ours); returns how many."""
    stale = [path for name in names
             for path in Path(folder).glob(_TEMPORARY.format(name=name, token="*"))]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def dumps_json(value: Any, **options: Any) -> str:
    """``json.dumps`` that writes non-finite floats as ``null`` (``NaN`` is not JSON)."""
    return json.dumps(_finite(value), allow_nan=False, **options)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy / torch scalars
        return _finite(value.item())
    return value


def writable_folder(path: str | Path, option: str) -> Path:
    """``path`` as a folder this process can write into, created if missing; a path that is
    a file, lies under a file or cannot be written is a one-line error naming ``option``."""
    path = Path(path)
    for parent in (path, *path.parents):
        if parent.exists():
            if not parent.is_dir():
                where = "is a file" if parent == path else f"lies under the file {parent}"
                raise MaskfocalError(f"{option} {path}: {where}; give a folder")
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / _TEMPORARY.format(name="probe", token=secrets.token_hex(4))
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        probe.unlink()
    except OSError as error:
        raise MaskfocalError(f"{option} {path}: cannot write there ({error.strerror or error})"
                             ) from None
    return path


def writable_file(path: str | Path, option: str) -> Path:
    """``path`` as a file this process can create or replace (its folder is checked and
    created); a folder, or a path under a file, is a one-line error naming ``option``."""
    path = Path(path)
    if path.is_dir():
        raise MaskfocalError(f"{option} {path}: is a folder; give a file name")
    writable_folder(path.parent, option)
    return path


def written_here(folder: str | Path) -> dict[str, str]:
    """``{name: command}`` of the files maskfocal wrote in ``folder`` (its manifest)."""
    try:
        files = json.loads((Path(folder) / MANIFEST).read_text()).get("files", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else {}


class OutputFolder:
    """A folder one command writes into, which never writes over a file it did not write.

    Args:
        path: the folder; created if missing (a file there, or no permission, is an error).
        command: which command writes (``"count"``, ``"eval"``, ...): files it wrote in an
            earlier run may be replaced; files of other commands and the user's may not.
        option: the option that named the folder, for messages (``"--out"``).
        overwrite: the user allowed replacing any file (``--overwrite``); files in
            :meth:`protect` never are.
    """

    def __init__(self, path: str | Path, command: str, *, option: str = "--out",
                 overwrite: bool = False) -> None:
        self.path = writable_folder(path, option)
        self.command = command
        self.option = option
        self.overwrite = overwrite
        self._owned = written_here(self.path)
        self._claimed: set[str] = set()
        self._protected: set[Path] = set()

    def protect(self, paths: Iterable[str | Path]) -> None:
        """Never write over these (the inputs of this run), whoever wrote them."""
        self._protected |= {_resolved(p) for p in paths}

    def owns(self, name: str) -> bool:
        """Whether ``name`` was written here by this command (this run or an earlier one)."""
        return self._owned.get(name) == self.command

    def is_free(self, name: str) -> bool:
        """Whether this command may write ``name`` now without losing anything."""
        path = self.path / name
        if name in self._claimed or _resolved(path) in self._protected:
            return False
        if not path.exists() and not path.is_symlink():
            return True
        return self.owns(name) or self.overwrite

    def _unused(self, name: str) -> bool:
        path = self.path / name
        return (name not in self._claimed and _resolved(path) not in self._protected
                and not path.exists() and not path.is_symlink())

    def check(self, name: str) -> None:
        """A one-line error now, before any work, when ``name`` may not be written."""
        if not self.is_free(name):
            raise self._taken(name)

    def claim(self, name: str, *, rename: bool = False, keep_earlier: bool = True) -> Path:
        """The path to write ``name`` at in this run.

        ``name`` if it is free; else, with ``rename``, the first free ``stem-2.suffix``,
        ``stem-3.suffix``, ...; else a one-line error saying how to proceed. With ``rename``
        (outputs that accumulate, like ``count``'s), a file from an earlier run is never
        replaced, even one this command wrote: a second batch into the same folder gets new
        names, and the first batch's files stay as they were (``keep_earlier=False``: this
        command's earlier files are replaced, others' renamed around, as the demo does).
        """
        return self.claim_all([name], rename=rename, keep_earlier=keep_earlier)[0]

    def claim_all(self, names: Iterable[str], *, rename: bool = False,
                  keep_earlier: bool = True) -> list[Path]:
        """:meth:`claim` for many names with one manifest write."""
        paths = []
        for name in names:
            chosen = name
            number = 1
            while not (self._unused(chosen) if rename and keep_earlier
                       else self.is_free(chosen)):
                if not rename:
                    raise self._taken(name)
                number += 1
                stem, suffix = _split_suffix(name)
                chosen = f"{stem}-{number}{suffix}"
            self._claimed.add(chosen)
            self._owned[chosen] = self.command
            paths.append(self.path / chosen)
        atomic_write_text(self.path / MANIFEST, json.dumps({"files": self._owned}, indent=1))
        return paths

    def _taken(self, name: str) -> MaskfocalError:
        path = self.path / name
        if _resolved(path) in self._protected:
            return MaskfocalError(f"{path} is an input of this run; choose another "
                                  f"{self.option}")
        if path.is_dir():
            return MaskfocalError(f"{path} is a folder that maskfocal {self.command} did not "
                                  f"write; choose another {self.option}")
        return MaskfocalError(f"{path} exists and was not written by maskfocal "
                              f"{self.command}; choose another {self.option} or pass "
                              "--overwrite to replace it")


COMPOUND_SUFFIXES = (".overlay.png", ".overlay.mp4", ".counts.csv")
"""Suffixes kept whole when a name is numbered: ``x.overlay.png`` -> ``x-2.overlay.png``."""


def _split_suffix(name: str) -> tuple[str, str]:
    """``"x.overlay.png"`` -> ``("x", ".overlay.png")``; ``"a.csv"`` -> ``("a", ".csv")``."""
    for suffix in COMPOUND_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[:-len(suffix)], suffix
    path = Path(name)
    return str(path.with_suffix("")), path.suffix


def csv_safe(text: str) -> str:
    """A cell that spreadsheets show as text: a leading ``= + - @`` (or tab, CR) would make
    it a formula (CSV injection), so it gets a leading apostrophe, as OWASP advises."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
