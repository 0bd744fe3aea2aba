"""Counting video: every N-th frame, a CSV of counts over time, an annotated video.

Decoding and encoding use PyAV (FFmpeg's libraries, shipped inside its wheels): one pip
dependency that both reads every container FFmpeg knows and writes H.264, with each frame's
presentation time, so the CSV's times are the stream's own rather than ``index / fps``
(variable-frame-rate phone clips stay right). OpenCV would do too, but it is a larger
dependency for the same FFmpeg underneath and gives no per-frame timestamps.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from maskfocal.errors import MaskfocalError

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg",
                              ".mpeg", ".ts", ".wmv"})


@dataclass
class VideoSummary:
    frames_read: int
    frames_counted: int
    csv_path: Path
    video_path: Path | None
    mean_count: float


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def count_video(path: str | Path, counter, *, every: int = 10, csv_path: str | Path,
                video_path: str | Path | None = None, heatmap: bool = False,
                progress: bool = False) -> VideoSummary:
    """Count every ``every``-th frame of ``path`` with ``counter`` (a :class:`Counter`).

    Writes ``csv_path`` (frame, time_s, count) and, with ``video_path``, an H.264 video of the
    counted frames with heads and the count drawn (at the source rate divided by ``every``,
    so it lasts as long as the clip). Both files appear only once complete.
    """
    import av
    from tqdm import tqdm

    from maskfocal.visualize import draw_overlay

    if every < 1:
        raise MaskfocalError(f"--every must be at least 1, got {every}")
    path, csv_path = Path(path), Path(csv_path)
    try:
        source = av.open(str(path))
    except (av.FFmpegError, OSError) as error:
        raise MaskfocalError(f"{path}: not a readable video ({error})") from None
    with source:
        if not source.streams.video:
            raise MaskfocalError(f"{path}: has no video stream")
        stream = source.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        time_base = stream.time_base or Fraction(1, int(rate))
        csv_part = csv_path.with_name(f".{csv_path.name}.{os.getpid()}.part")
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        writer = _VideoWriter(video_path, rate / every) if video_path else None
        bar = tqdm(total=stream.frames or None, desc=path.name, unit="frame", leave=False,
                   disable=not progress)
        rows, read = [], 0
        try:
            with csv_part.open("w", newline="") as file:
                table = csv.writer(file)
                table.writerow(["frame", "time_s", "count"])
                for index, frame in enumerate(_frames(source, stream, path)):
                    bar.update(1)  # frames read, counted or not
                    read += 1
                    if index % every:
                        continue
                    seconds = (float(frame.pts * time_base) if frame.pts is not None
                               else index / float(rate))
                    pixels = frame.to_ndarray(format="rgb24")
                    result = counter(pixels, return_heatmap=heatmap)
                    table.writerow([index, f"{seconds:.3f}", result.count])
                    rows.append(result.count)
                    if writer is not None:
                        writer.write(np.asarray(draw_overlay(pixels, result)))
            if writer is not None:
                writer.close()
            os.replace(csv_part, csv_path)
        finally:
            bar.close()
            csv_part.unlink(missing_ok=True)
            if writer is not None:
                writer.abort()
    if not rows:
        raise MaskfocalError(f"{path}: no frames could be decoded")
    return VideoSummary(read, len(rows), csv_path, Path(video_path) if video_path else None,
                        float(np.mean(rows)))


def _frames(container, stream, path: Path):
    import av

    try:
        yield from container.decode(stream)
    except av.FFmpegError as error:  # a damaged tail: keep what was decoded
        import sys

        print(f"warning: {path}: decoding stopped early ({error})", file=sys.stderr)


class _VideoWriter:
    """H.264 (yuv420p) video written to a temporary name and renamed when closed."""

    def __init__(self, path: str | Path, rate: Fraction) -> None:
        import av

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.part = self.path.with_name(f".{self.path.stem}.{os.getpid()}.part"
                                        f"{self.path.suffix}")
        self.container = av.open(str(self.part), "w")
        self.rate = rate.limit_denominator(1000) if rate > 0 else Fraction(1)
        self.stream = None
        self.done = False

    def write(self, pixels: np.ndarray) -> None:
        import av

        height, width = pixels.shape[:2] // np.array([2, 2]) * 2  # yuv420p needs even sizes
        pixels = np.ascontiguousarray(pixels[:height, :width])
        if self.stream is None:
            self.stream = self.container.add_stream("libx264", rate=self.rate)
            self.stream.width, self.stream.height = int(width), int(height)
            self.stream.pix_fmt = "yuv420p"
            self.stream.options = {"crf": "23", "preset": "veryfast"}
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
