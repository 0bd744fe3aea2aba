"""Counting video: every N-th frame, a CSV of counts over time, an annotated video; with
lines, every frame tracked and people counted in and out through each line.

Frames are read and the overlay written with PyAV (:mod:`maskfocal.media`).
"""

from __future__ import annotations

import csv
import os
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from maskfocal.errors import MaskfocalError
from maskfocal.inference.records import CountRecord, zone_columns
from maskfocal.media import VIDEO_EXTENSIONS, VideoFrames, VideoWriter, is_video

__all__ = ["VIDEO_EXTENSIONS", "VideoSummary", "count_video", "is_video", "plot_flow_series",
           "plot_zone_series", "write_moving_crowds"]


@dataclass
class VideoSummary:
    frames_read: int
    frames_counted: int
    csv_path: Path
    video_path: Path | None
    mean_count: float
    zone_peaks: dict[str, tuple[int, float]] | None = None  # zone -> (most heads, at time_s)
    plot_path: Path | None = None  # the per-zone time series (PNG)
    lines: dict[str, dict[str, int]] | None = None  # with lines: {line: {in, out, net}}
    flow_path: Path | None = None  # with lines: in and out over time (PNG)
    heatmap_path: Path | None = None  # with tracking: where heads were (PNG)


def count_video(path: str | Path, counter, *, every: int = 10, csv_path: str | Path,
                video_path: str | Path | None = None, heatmap: bool = False,
                progress: bool = False, zones=None,
                plot_path: str | Path | None = None, lines=None,
                flow_path: str | Path | None = None,
                occupancy_path: str | Path | None = None) -> VideoSummary:
    """Count every ``every``-th frame of ``path`` with ``counter`` (a :class:`Counter`).

    Writes ``csv_path`` (frame, time_s, count) and, with ``video_path``, an H.264 video of the
    counted frames with heads and the count drawn (at the source rate divided by ``every``,
    so it lasts as long as the clip). With ``zones`` (:class:`~maskfocal.zones.Zones`) the CSV
    gains a ``zone NAME`` column per zone (and ``per_m2 NAME`` with a ground scale), the video
    draws them, the summary holds each zone's peak, and ``plot_path`` gets each zone's heads
    over time (PNG). With ``lines`` (:class:`~maskfocal.flow.Line` objects) heads are tracked
    over the counted frames (``every`` should be 1 or small) and counted through each line:
    the CSV gains ``tracks``, ``in NAME`` and ``out NAME`` (running totals), the video draws
    tracks and lines, ``flow_path`` gets in and out over time and ``occupancy_path`` the
    occupancy heat map over the first frame (PNG). Every file appears only once complete.
    """
    from tqdm import tqdm

    from maskfocal.visualize import draw_flow, draw_overlay

    if every < 1:
        raise MaskfocalError(f"--every must be at least 1, got {every}")
    path, csv_path = Path(path), Path(csv_path)
    names = zones.names if zones is not None else []
    dense = zones is not None and zones.ground is not None
    with VideoFrames(path) as source:
        flow = None
        if lines is not None:
            from maskfocal.flow import Flow

            flow = Flow(lines, fps=float(source.rate) / every, threshold=counter.threshold,
                        source=str(path))
        line_names = [line.name for line in flow.lines] if flow is not None else []
        csv_part = csv_path.with_name(f".{csv_path.name}.{os.getpid()}.part")
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        writer = VideoWriter(video_path, source.rate / every) if video_path else None
        bar = tqdm(total=source.length, desc=path.name, unit="frame", leave=False,
                   disable=not progress)
        rows, read, series, crossings, first = [], 0, [], [], None
        try:
            with csv_part.open("w", newline="") as file:
                table = csv.writer(file)
                table.writerow(["frame", "time_s", "count", *zone_columns(names, dense),
                                *(["tracks"] if flow is not None else []),
                                *[f"{side} {name}" for name in line_names
                                  for side in ("in", "out")]])
                for index, seconds, frame in source:
                    bar.update(1)  # frames read, counted or not
                    read += 1
                    if index % every:
                        continue
                    pixels = frame.to_ndarray(format="rgb24")
                    if first is None:
                        first = pixels
                    if flow is None:
                        result = counter(pixels, return_heatmap=heatmap, zones=zones)
                    else:  # the same count, and the tracker's candidates below it
                        result, candidates = counter.with_candidates(
                            pixels, flow.candidates, return_heatmap=heatmap, zones=zones)
                    in_zones = [result.zones[name] for name in names]
                    record = CountRecord(result)
                    flowing = []
                    if flow is not None:
                        state = flow.update(index, seconds, result, pixels.shape[:2],
                                            candidates)
                        flowing = [len(state.tracks)] + [state.lines[name][side]
                                                         for name in line_names
                                                         for side in ("in", "out")]
                        crossings.append((seconds, state.lines))
                    table.writerow([index, f"{seconds:.3f}", record.count,
                                    *record.zone_values(names, dense), *flowing])
                    rows.append(result.count)
                    series.append((seconds, in_zones))
                    if writer is not None:
                        picture = draw_overlay(pixels, result, zones=zones)
                        if flow is not None:
                            draw_flow(picture, flow, state)
                        writer.write(np.asarray(picture))
            if not rows:
                raise MaskfocalError(f"{path}: no frames could be decoded")
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
    peaks = None
    if zones is not None:
        peaks = {}
        for k, name in enumerate(names):
            best = max(range(len(series)), key=lambda i, k=k: series[i][1][k])
            peaks[name] = (series[best][1][k], series[best][0])
        if plot_path is not None:
            plot_zone_series(series, names, plot_path, title=path.name)
    summary = VideoSummary(read, len(rows), csv_path, Path(video_path) if video_path else None,
                           float(np.mean(rows)), peaks, Path(plot_path) if plot_path and peaks
                           is not None else None)
    if flow is not None:
        summary.lines = flow.counter.totals()
        if flow_path is not None and line_names:
            plot_flow_series(crossings, line_names, flow_path, title=path.name)
            summary.flow_path = Path(flow_path)
        if occupancy_path is not None:
            from maskfocal.fileio import save_png
            from maskfocal.visualize import draw_occupancy

            save_png(draw_occupancy(first, flow.occupancy_density(),
                                    f"where heads were, {flow.frames} frames"), occupancy_path)
            summary.heatmap_path = Path(occupancy_path)
    return summary


def plot_zone_series(series: list[tuple[float, list[int]]], names: list[str],
                     path: str | Path, *, title: str = "") -> None:
    """Heads per zone over time, one line each, as a PNG (written whole)."""
    with _time_chart(path, "heads in zone", title) as axes:
        times = [seconds for seconds, _ in series]
        for k, name in enumerate(names):
            axes.plot(times, [counts[k] for _, counts in series], label=name, linewidth=1.5)


def plot_flow_series(series: list[tuple[float, dict[str, dict[str, int]]]], names: list[str],
                     path: str | Path, *, title: str = "") -> None:
    """Each line's people in (solid) and out (dashed) so far, over time, as a PNG."""
    from maskfocal.visualize import ZONE_COLOURS

    with _time_chart(path, "people through the line", title) as axes:
        times = [seconds for seconds, _ in series]
        for k, name in enumerate(names):
            colour = np.asarray(ZONE_COLOURS[k % len(ZONE_COLOURS)]) / 255
            for side, style in (("in", "-"), ("out", "--")):
                axes.step(times, [totals[name][side] for _, totals in series], where="post",
                          linestyle=style, color=colour, linewidth=1.5, label=f"{name} {side}")


@contextmanager
def _time_chart(path: str | Path, ylabel: str, title: str):
    """Axes for a chart over time; on leaving, the chart is written to ``path`` whole."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from maskfocal.fileio import atomic_write_bytes

    figure, axes = plt.subplots(figsize=(8, 3.5), dpi=100)
    try:
        yield axes
        axes.set_xlabel("time (s)")
        axes.set_ylabel(ylabel)
        axes.set_title(title)
        axes.grid(alpha=0.3)
        axes.legend(loc="upper left", fontsize=8)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
    finally:
        plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())


def write_moving_crowds(root: str | Path, config, *, sequences: int = 1, seed: int = 0,
                       quality: int = 95, progress: bool = False) -> list[dict]:
    """Write synthetic moving crowds (:mod:`maskfocal.data.moving`) with their ground truth.

    Each sequence ``<root>/synth-flow-<nn>/`` holds the MOT layout (``img1/<frame>.jpg``,
    ``gt/gt.txt`` with each person's own track id, ``seqinfo.ini`` with the frame rate), the
    clip ``clip.mp4`` (H.264, the same frames), the lines it was made with (``lines.json``)
    and the true crossings of those lines (``crossings.json``: ``{line: {"in", "out",
    "net"}}``, counted on every person's true head path, seen or hidden, by the same rule as
    ``count --lines``). Every file is written whole. Returns one summary per sequence."""
    import io
    import json

    from PIL import Image
    from tqdm import tqdm

    from maskfocal.data.moving import MovingSequence, default_lines
    from maskfocal.fileio import atomic_write_bytes
    from maskfocal.flow import LineCounter, lines_from_dict

    root = Path(root)
    summaries = []
    bar = tqdm(total=sequences * config.frames, desc="synthesising", unit="frame",
               disable=not progress)
    for number in range(sequences):
        clip = MovingSequence(config, seed=seed, sequence=number)
        folder = root / f"synth-flow-{number:02d}"
        (folder / "img1").mkdir(parents=True, exist_ok=True)
        (folder / "gt").mkdir(exist_ok=True)
        for old in (folder / "img1").glob("[0-9][0-9][0-9][0-9][0-9][0-9].jpg"):
            old.unlink()  # an earlier, longer clip's frames: no gt.txt row would describe them
        line_file = default_lines(config.width, config.height)
        truth = LineCounter(lines_from_dict(line_file, str(folder / "lines.json")))
        writer = VideoWriter(folder / "clip.mp4", Fraction(config.fps).limit_denominator(1000),
                              crf=18)
        rows, heads = [], 0
        try:
            for frame in clip:
                buffer = io.BytesIO()
                Image.fromarray(frame.pixels).save(buffer, format="JPEG", quality=quality)
                atomic_write_bytes(folder / "img1" / f"{frame.index + 1:06d}.jpg",
                                   buffer.getvalue())
                writer.write(frame.pixels)
                for track, box, seen in zip(frame.ids, frame.boxes, frame.visibility,
                                            strict=True):
                    rows.append(f"{frame.index + 1},{track},{box[0]:.2f},{box[1]:.2f},"
                                f"{box[2] - box[0]:.2f},{box[3] - box[1]:.2f},1,1,{seen:.3f}")
                heads += len(frame.ids)
                truth.update({k + 1: tuple(point) for k, point in enumerate(frame.heads)
                              if np.isfinite(point).all()})
                bar.update(1)
            writer.close()
        finally:
            writer.abort()
        atomic_write_bytes(folder / "gt" / "gt.txt", ("\n".join(rows) + "\n").encode())
        info = (f"[Sequence]\nname={folder.name}\nimDir=img1\n"
                f"frameRate={float(config.fps):g}\nseqLength={config.frames}\n"
                f"imWidth={config.width}\nimHeight={config.height}\nimExt=.jpg\n")
        atomic_write_bytes(folder / "seqinfo.ini", info.encode())
        atomic_write_bytes(folder / "lines.json", (json.dumps(line_file, indent=1) + "\n")
                           .encode())
        crossings = truth.totals()
        atomic_write_bytes(folder / "crossings.json", (json.dumps(crossings, indent=1) + "\n")
                           .encode())
        summaries.append({"sequence": folder.name, "frames": config.frames,
                          "heads_per_frame": heads / config.frames, "people": clip.people,
                          "crossings": crossings})
    bar.close()
    return summaries
