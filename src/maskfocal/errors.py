"""The project's own error types.

A :class:`MaskfocalError` is a user mistake or damaged input: the CLI prints its message on one
line and exits with status 2, without a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class MaskfocalError(ValueError):
    """A problem the user can fix: bad input, a missing file, an unknown option.

    A ``ValueError``, so that Python callers of the API can catch it as the bad value it is.
    """


class DatasetError(MaskfocalError):
    """A dataset file that cannot be read; the message names the file and what was wrong."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")
