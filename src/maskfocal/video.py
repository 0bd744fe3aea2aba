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
from maskfocal.inference.records import CountRecord, zone_columns

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg",
                              ".mpeg", ".ts", ".wmv"})


@dataclass
class VideoSummary:
    frames_read: int
    frames_counted: int
    csv_path: Path
    video_path: Path | None
    mean_count: float
    zone_peaks: dict[str, tuple[int, float]] | None = None  # zone -> (most heads, at time_s)
    plot_path: Path | None = None  # the per-zone time series (PNG)


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def count_video(path: str | Path, counter, *, every: int = 10, csv_path: str | Path,
                video_path: str | Path | None = None, heatmap: bool = False,
                progress: bool = False, zones=None,
                plot_path: str | Path | None = None) -> VideoSummary:
    """Count every ``every``-th frame of ``path`` with ``counter`` (a :class:`Counter`).

    Writes ``csv_path`` (frame, time_s, count) and, with ``video_path``, an H.264 video of the
    counted frames with heads and the count drawn (at the source rate divided by ``every``,
    so it lasts as long as the clip). Both files appear only once complete. With ``zones``
    (:class:`~maskfocal.zones.Zones`) the CSV gains a ``zone NAME`` column per zone (and
    ``per_m2 NAME`` with a ground scale), the video draws them, the summary holds each zone's
    peak, and ``plot_path`` gets each zone's heads over time (PNG).
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
        rows, read, series = [], 0, []
        names = zones.names if zones is not None else []
        dense = zones is not None and zones.ground is not None
        try:
            with csv_part.open("w", newline="") as file:
                table = csv.writer(file)
                table.writerow(["frame", "time_s", "count", *zone_columns(names, dense)])
                for index, frame in enumerate(_frames(source, stream, path)):
                    bar.update(1)  # frames read, counted or not
                    read += 1
                    if index % every:
                        continue
                    seconds = (float(frame.pts * time_base) if frame.pts is not None
                               else index / float(rate))
                    pixels = frame.to_ndarray(format="rgb24")
                    result = counter(pixels, return_heatmap=heatmap, zones=zones)
                    in_zones = [result.zones[name] for name in names]
                    record = CountRecord(result)
                    table.writerow([index, f"{seconds:.3f}", record.count,
                                    *record.zone_values(names, dense)])
                    rows.append(result.count)
                    series.append((seconds, in_zones))
                    if writer is not None:
                        writer.write(np.asarray(draw_overlay(pixels, result, zones=zones)))
            if writer is not None:
                writer.close()
            os.replace(csv_part, csv_path)
        except OSError as error:  # a full disk: name the output, not its temporary
            finals = {str(csv_part): csv_path, **({str(writer.part): video_path} if writer else {})}
            if error.filename in finals:
                raise OSError(error.errno, error.strerror, str(finals[error.filename])) from None
            raise
        finally:
            bar.close()
            csv_part.unlink(missing_ok=True)
            if writer is not None:
                writer.abort()
    if not rows:
        raise MaskfocalError(f"{path}: no frames could be decoded")
    peaks = None
    if zones is not None:
        peaks = {}
        for k, name in enumerate(names):
            best = max(range(len(series)), key=lambda i, k=k: series[i][1][k])
            peaks[name] = (series[best][1][k], series[best][0])
        if plot_path is not None:
            plot_zone_series(series, names, plot_path, title=path.name)
    return VideoSummary(read, len(rows), csv_path, Path(video_path) if video_path else None,
                        float(np.mean(rows)), peaks, Path(plot_path) if plot_path and peaks
                        is not None else None)


def plot_zone_series(series: list[tuple[float, list[int]]], names: list[str],
                     path: str | Path, *, title: str = "") -> None:
    """Heads per zone over time, one line each, as a PNG (written whole)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from maskfocal.fileio import atomic_write_bytes

    figure, axes = plt.subplots(figsize=(8, 3.5), dpi=100)
    times = [seconds for seconds, _ in series]
    for k, name in enumerate(names):
        axes.plot(times, [counts[k] for _, counts in series], label=name, linewidth=1.5)
    axes.set_xlabel("time (s)")
    axes.set_ylabel("heads in zone")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())


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
