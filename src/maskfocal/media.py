"""Video files, read and written with PyAV (FFmpeg's libraries, shipped inside its wheels).

One pip dependency that both reads every container FFmpeg knows and writes H.264, with each
frame's presentation time, so times are the stream's own rather than ``index / fps``
(variable-frame-rate phone clips stay right). OpenCV would do too, but it is a larger
dependency for the same FFmpeg underneath and gives no per-frame timestamps.

- :class:`VideoFrames`: a video's frames with their times; an unreadable file is a one-line
  error naming it; a damaged tail ends the frames with a warning.
- :class:`VideoWriter`: H.264 written to a temporary name and renamed when closed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from maskfocal.errors import MaskfocalError

__all__ = ["VIDEO_EXTENSIONS", "VideoFrames", "VideoWriter", "is_video"]

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg",
                              ".mpeg", ".ts", ".wmv"})


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


class VideoFrames:
    """The frames of a video file: iterate for ``(index, time_s, frame)``, where ``frame`` is
    PyAV's (``frame.to_ndarray(format="rgb24")`` decodes its pixels: skipped frames cost no
    conversion). ``rate`` is the stream's average frame rate, ``length`` its frame count when
    the container says (else None). Use it as a context manager."""

    def __init__(self, path: str | Path) -> None:
        import av

        self.path = Path(path)
        try:
            self.container = av.open(str(self.path))
        except (av.FFmpegError, OSError) as error:
            raise MaskfocalError(f"{self.path}: not a readable video ({error})") from None
        if not self.container.streams.video:
            self.container.close()
            raise MaskfocalError(f"{self.path}: has no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.rate = self.stream.average_rate or self.stream.guessed_rate or Fraction(25)
        self.time_base = self.stream.time_base or Fraction(1, int(self.rate))
        self.length = self.stream.frames or None

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the stream's frames, as its header gives them."""
        return int(self.stream.codec_context.height), int(self.stream.codec_context.width)

    def __iter__(self) -> Iterator[tuple[int, float, object]]:
        import av

        try:
            for index, frame in enumerate(self.container.decode(self.stream)):
                seconds = (float(frame.pts * self.time_base) if frame.pts is not None
                           else index / float(self.rate))
                yield index, seconds, frame
        except av.FFmpegError as error:  # a damaged tail: keep what was decoded
            print(f"warning: {self.path}: decoding stopped early ({error})", file=sys.stderr)

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> VideoFrames:
        return self

    def __exit__(self, *_) -> None:
        self.close()


class VideoWriter:
    """H.264 (yuv420p) video written to a temporary name and renamed when closed; ``crf`` is
    x264's quality (lower is better, 23 its default)."""

    def __init__(self, path: str | Path, rate: Fraction, crf: int = 23) -> None:
        import av

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.part = self.path.with_name(f".{self.path.stem}.{os.getpid()}.part"
                                        f"{self.path.suffix}")
        self.container = av.open(str(self.part), "w")
        self.rate = rate.limit_denominator(1000) if rate > 0 else Fraction(1)
        self.stream = None
        self.crf = crf
        self.done = False

    def write(self, pixels: np.ndarray) -> None:
        import av

        height, width = pixels.shape[:2] // np.array([2, 2]) * 2  # yuv420p needs even sizes
        pixels = np.ascontiguousarray(pixels[:height, :width])
        if self.stream is None:
            self.stream = self.container.add_stream("libx264", rate=self.rate)
            self.stream.width, self.stream.height = int(width), int(height)
            self.stream.pix_fmt = "yuv420p"
            self.stream.options = {"crf": str(self.crf), "preset": "veryfast"}
        frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        if self.stream is not None:
            for packet in self.stream.encode():
                self.container.mux(packet)
        self.container.close()
        os.replace(self.part, self.path)
        self.done = True

    def abort(self) -> None:
        if not self.done:
            try:
                self.container.close()
            except Exception:  # already failing; the partial file goes anyway
                pass
            self.part.unlink(missing_ok=True)
