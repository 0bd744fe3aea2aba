"""Which tracker should connect heads across frames? Measured on synthetic moving crowds.

Writes synthetic moving crowds (``maskfocal.data.moving``) at two densities, finds the heads
in every frame once with a shipped model (the same detections for every tracker), then runs
each candidate tracker on them and scores it against the true tracks with ``motmetrics``
(MOTA, IDF1, ID switches; a hypothesis matches a true head when it lies within the head's
radius) and its line counts against the true crossings (``crossings.json``) with the
toolkit's own :class:`~maskfocal.flow.LineCounter`. Also times each tracker's update per
frame against the model's own time per frame.

Candidates (each optional: a missing one is reported as such):

- ``norfair``: a point tracker (Kalman filter per point, euclidean distance). Installable
  only beside numpy < 2 (norfair 2.3.0 pins it), which torch 2.14 and this project do not
  use: for this measurement, ``pip install --no-deps --target DIR norfair==2.3.0
  filterpy==1.4.5 rich markdown-it-py mdurl pygments`` and run with ``PYTHONPATH=DIR``.
- ``bytetrack``, ``sort``, ``ocsort``: Roboflow's ``trackers`` 2.6 on head boxes (the model's
  own boxes, or a box of the local head size around each point); needs opencv.
- ``maskfocal``: the toolkit's :class:`~maskfocal.flow.HeadTracker` (what ``count --lines``
  uses: ByteTrack on the model's head boxes, its tracks at the heads' points, a track lost
  after 1 s); ``maskfocal-spacing``: the same on squares of the local head spacing instead.

Every tracker but norfair sees the model's heads from half its threshold up (the tracker's
candidates, ``maskfocal.flow.CANDIDATES``), with its score gates at the threshold; norfair
sees the counted heads. (A first run that fed ``maskfocal`` only the counted heads: MOTA 0.400
sparse and 0.474 dense, line-count error 0 and 12, against 0.500, 0.537, 1 and 6 with the
candidates; so it takes them.)

    PYTHONPATH=/tmp/norfair python -m experiments.flow_trackers --work runs/flow_trackers \\
        --out experiments/results/flow_trackers.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

DENSITIES = {"sparse": 25, "dense": 120}


def detections(sequence: Path, counter, threshold: float, limit: int) -> list[dict]:
    """The first ``limit`` frames' heads (points, scores, boxes), found once and kept."""
    from PIL import Image

    cache = sequence / f"dets_{threshold:.3f}_{limit}.npz"
    if cache.is_file():
        saved = np.load(cache, allow_pickle=True)
        return list(saved["frames"])
    frames = []
    started = time.perf_counter()
    for path in sorted((sequence / "img1").glob("*.jpg"))[:limit]:
        result = counter(np.asarray(Image.open(path).convert("RGB")), threshold=threshold)
        frames.append({"points": result.points, "scores": result.scores,
                       "boxes": result.boxes})
    seconds = (time.perf_counter() - started) / max(len(frames), 1)
    np.savez(cache, frames=np.array(frames, dtype=object), seconds=seconds)
    return frames


def simulated(sequence: Path, seed: int = 0) -> list[dict]:
    """Every frame's heads as a good detector would find them: each true visible head found
    with probability 0.9 (less when half hidden), its point off by N(0, 0.15 radius), a score
    in [0.3, 1]; and false heads (2 % of the true ones, at least 0.2 a frame) anywhere, with
    scores in [0.15, 0.5]. Isolates the tracker from the detector."""
    rng = np.random.default_rng(seed)
    gt = truth(sequence)
    info = (sequence / "seqinfo.ini").read_text()
    width = int(info.split("imWidth=")[1].split()[0])
    height = int(info.split("imHeight=")[1].split()[0])
    length = int(info.split("seqLength=")[1].split()[0])
    frames = []
    for index in range(1, length + 1):
        _, points, radii = gt.get(index, (None, np.zeros((0, 2)), np.zeros(0)))
        found = rng.random(len(points)) < 0.9
        points = points[found] + rng.normal(0, 1, (found.sum(), 2)) * 0.15 * radii[found, None]
        scores = rng.uniform(0.3, 1.0, len(points))
        false = rng.poisson(max(0.02 * len(radii), 0.2))
        points = np.concatenate([points, rng.uniform(0, 1, (false, 2)) * [width, height]])
        scores = np.concatenate([scores, rng.uniform(0.15, 0.5, false)])
        half = np.concatenate([radii[found], np.full(false, 6.0)])
        boxes = np.concatenate([points - half[:, None], points + half[:, None]], 1)
        frames.append({"points": points, "scores": scores, "boxes": boxes})
    return frames


def truth(sequence: Path) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """frame -> (track ids, points, radii) from gt/gt.txt."""
    rows = np.loadtxt(sequence / "gt" / "gt.txt", delimiter=",", ndmin=2)
    frames = {}
    for frame in np.unique(rows[:, 0]).astype(int):
        mine = rows[rows[:, 0] == frame]
        points = mine[:, 2:4] + mine[:, 4:6] / 2
        frames[frame] = (mine[:, 1].astype(int), points, mine[:, 4:6].max(1) / 2)
    return frames


def make_tracker(name: str, fps: float, threshold: float):
    """A function frame -> {track id: (x, y)} for one fresh tracker, or raise ImportError."""
    if name == "norfair":
        from norfair import Detection, Tracker

        tracker = Tracker(distance_function="euclidean", distance_threshold=12,
                          hit_counter_max=int(fps), initialization_delay=2)

        def step(frame):
            found = [Detection(points=point[None], scores=np.array([score]))
                     for point, score in zip(frame["points"], frame["scores"], strict=True)]
            return {t.id: tuple(t.estimate[0]) for t in tracker.update(detections=found)}
        return step
    if name in ("bytetrack", "sort", "ocsort"):
        import supervision as sv
        import trackers

        from maskfocal.flow import head_boxes

        kind = {"bytetrack": trackers.ByteTrackTracker, "sort": trackers.SORTTracker,
                "ocsort": trackers.OCSORTTracker}[name]
        # their score gates set to the model's threshold (the defaults, 0.6-0.7, are for
        # detectors whose scores run higher than a head counter's calibrated threshold)
        gates = {"bytetrack": {"track_activation_threshold": threshold,
                               "high_conf_det_threshold": threshold},
                 "sort": {"track_activation_threshold": threshold},
                 "ocsort": {"high_conf_det_threshold": threshold}}[name]
        tracker = kind(frame_rate=fps, **gates)

        def step(frame):
            boxes = head_boxes(frame["points"], frame["boxes"])
            found = sv.Detections(xyxy=boxes.reshape(-1, 4),
                                  confidence=np.asarray(frame["scores"], np.float32),
                                  class_id=np.zeros(len(boxes), int))
            out = tracker.update(found)
            if out.tracker_id is None:
                return {}
            centres = (out.xyxy[:, :2] + out.xyxy[:, 2:]) / 2
            return {int(i): tuple(c) for i, c in zip(out.tracker_id, centres, strict=True)
                    if i >= 0}
        return step
    if name in ("maskfocal", "maskfocal-spacing"):
        from maskfocal.flow import HeadTracker

        tracker = HeadTracker(fps=fps, threshold=threshold,
                              spacing_boxes=name == "maskfocal-spacing")
        clock = iter(range(10**9))

        def step(frame):
            return tracker.update(frame["points"], frame["scores"], frame["boxes"],
                                  next(clock) / fps)
        return step
    raise ValueError(name)


def score(sequence: Path, frames: list[dict], name: str, fps: float, threshold: float) -> dict:
    import motmetrics as mm

    from maskfocal.flow import LineCounter, load_lines

    step = make_tracker(name, fps, threshold)
    gt = truth(sequence)
    accumulator = mm.MOTAccumulator(auto_id=True)
    lines = LineCounter(load_lines(sequence / "lines.json"))
    spent = 0.0
    for index, frame in enumerate(frames, start=1):
        # norfair has no use for heads below the threshold; the others see the candidates
        # (the model's heads from half the threshold; ByteTrack's second association)
        keep = frame["scores"] >= threshold if name == "norfair" else \
            np.ones(len(frame["scores"]), bool)
        frame = {key: (value[keep] if value is not None else None)
                 for key, value in frame.items()}
        started = time.perf_counter()
        tracks = step(frame)
        spent += time.perf_counter() - started
        lines.update(tracks)
        ids, points, radii = gt.get(index, (np.zeros(0, int), np.zeros((0, 2)), np.zeros(0)))
        hyp_ids = list(tracks)
        hyp = np.asarray([tracks[i] for i in hyp_ids], np.float64).reshape(-1, 2)
        distance = np.linalg.norm(points[:, None] - hyp[None], axis=-1)
        distance[distance > radii[:, None]] = np.nan
        accumulator.update(list(ids), hyp_ids, distance)
    summary = mm.metrics.create().compute(accumulator, metrics=["mota", "idf1", "num_switches",
                                                                "precision", "recall"])
    row = summary.iloc[0]
    true = json.loads((sequence / "crossings.json").read_text())
    counted = lines.totals()
    errors = {line: {side: counted[line][side] - true[line][side] for side in ("in", "out")}
              for line in true}
    return {"mota": float(row["mota"]), "idf1": float(row["idf1"]),
            "id_switches": int(row["num_switches"]), "precision": float(row["precision"]),
            "recall": float(row["recall"]), "lines": counted, "true_lines": true,
            "line_errors": errors,
            "line_abs_error": sum(abs(v) for e in errors.values() for v in e.values()),
            "tracker_ms_per_frame": 1000 * spent / max(len(frames), 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="runs/flow_trackers")
    parser.add_argument("--out", default="experiments/results/flow_trackers.json")
    parser.add_argument("--model", default="crowd-r18")
    parser.add_argument("--detectors", nargs="+", default=["simulated", "model"],
                        help="simulated: true heads with misses, jitter and false heads; "
                             "model: the --model's heads")
    parser.add_argument("--trackers", nargs="+",
                        default=["maskfocal", "maskfocal-spacing", "norfair", "bytetrack",
                                 "sort", "ocsort"])
    parser.add_argument("--sequences", type=int, default=3)
    parser.add_argument("--frames", type=int, default=250)
    parser.add_argument("--model-sequences", type=int, default=1,
                        help="how many sequences the model's heads are found in (slow)")
    parser.add_argument("--model-frames", type=int, default=150)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    import torch

    from maskfocal.data.moving import MovingConfig
    from maskfocal.video import write_moving_crowds

    torch.set_num_threads(args.threads)
    results = {"fps": 25.0, "frames": args.frames, "sequences": args.sequences,
               "model_frames": args.model_frames, "model_sequences": args.model_sequences,
               "densities": {}, "runs": {}}
    counter = None
    for density, people in DENSITIES.items():
        results["densities"][density] = {"people_in_view": people}
        for detector in args.detectors:
            # the model's heads cost seconds a frame: fewer, shorter clips of their own, each
            # with its own true crossings
            frames, count = ((args.model_frames, args.model_sequences) if detector == "model"
                             else (args.frames, args.sequences))
            root = Path(args.work) / f"{density}_{frames}f"
            config = MovingConfig(people=people, frames=frames)
            if not (root / f"synth-flow-{count - 1:02d}" / "crossings.json").is_file():
                write_moving_crowds(root, config, sequences=count, seed=1, progress=True)
            sequences = sorted(root.glob("synth-flow-*"))[:count]
            if detector == "model":
                from maskfocal import Counter

                if counter is None:
                    counter = Counter.from_pretrained(args.model)
                threshold = counter.options.threshold
                found = {s: detections(s, counter, threshold / 2, frames) for s in sequences}
                seconds = [float(np.load(s / f"dets_{threshold / 2:.3f}_{frames}.npz",
                                         allow_pickle=True)["seconds"]) for s in sequences]
                results["densities"][density]["model_ms_per_frame"] = 1000 * np.mean(seconds)
                results["model"], results["model_threshold"] = args.model, threshold
            else:
                threshold = 0.3
                found = {s: simulated(s, seed=k) for k, s in enumerate(sequences)}
            for name in args.trackers:
                rows = []
                try:
                    for sequence, frames in found.items():
                        rows.append({"sequence": sequence.name,
                                     **score(sequence, frames, name, config.fps, threshold)})
                except ImportError as error:
                    results["runs"].setdefault(f"{detector}/{name}", {})[density] = {
                        "missing": str(error)}
                    continue
                mean = {key: float(np.mean([r[key] for r in rows]))
                        for key in ("mota", "idf1", "id_switches", "line_abs_error",
                                    "tracker_ms_per_frame", "precision", "recall")}
                results["runs"].setdefault(f"{detector}/{name}", {})[density] = {
                    "mean": mean, "sequences": rows}
                print(f"{density:6s} {detector:9s} {name:10s} MOTA {mean['mota']:.3f} "
                      f"IDF1 {mean['idf1']:.3f} IDsw {mean['id_switches']:.1f} "
                      f"line |err| {mean['line_abs_error']:.1f} "
                      f"{mean['tracker_ms_per_frame']:.2f} ms/frame", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
