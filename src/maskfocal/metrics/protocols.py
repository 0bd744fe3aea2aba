"""Leaderboard protocols: NWPU-Crowd as its official scorers compute it, JHU-Crowd++ breakdowns.

NWPU-Crowd publishes two scorers, and this module follows each rule of theirs:

- localisation, ``eval/eval.py`` of gjy3035/NWPU-Crowd-Sample-Code-for-Localization: the ground
  truth is a text file of integers, one image per line, ``id n x y sigma_s sigma_l level ...``;
  predictions are integers too, ``id n x y ...``. A prediction matches a head when their
  Euclidean distance is at most the head's radius (``<=``; integers make the comparison
  exact); the matching is the maximum one-to-one matching that Kuhn's augmenting-path search
  finds when it tries predictions in file order and, for each, heads in file order (the
  scorer's ``hungarian``). Which heads are matched, and so the recall per head-size class,
  depends on that order, so :func:`kuhn_matching` repeats it exactly. Precision, recall and
  per-class recall are pooled over the images (``tp / (tp + fp + 1e-20)``); the per-class
  average is over all six classes, a class without heads counting as 0.
- counting, ``misc/evaluation_code.py`` of gjy3035/NWPU-Crowd-Sample-Code: MAE, MSE (the root
  of the mean squared error) and NAE (over images with people) overall, per scene level
  (0-4) and per illumination class (0-3); ``mMAE`` is the mean of the five level MAEs. The
  scorer writes -1 for a value over no images (a level without images, NAE with no people) and
  its mMAE averages those -1 in; :func:`nwpu_counting` returns what it returns.

Where the official code would fail, ours gives a number and says so here: F1 when precision
and recall are both 0 is 0 (the scorer divides 0 by 0 and stops).

Radii from boxes (:func:`nwpu_truth_from_boxes`) follow the public converter that writes this
file format from NWPU-style JSON boxes (IIM's ``loc_gt_make``): box corners truncated to
integers, the head at ``int((x1 + x2) / 2), int((y1 + y2) / 2)``, ``sigma_s = int(min(w, h) /
2)``, ``sigma_l = int(sqrt(w^2 + h^2) / 2)`` (truncation, as Python's ``int`` does: the file
holds integers and truncation is what the converter uses), and the head-size class by box area
in pixels: ``<10, <100, <1e3, <1e4, <1e5, >=1e5`` for classes 0-5 (the converter's own
comparisons leave areas of exactly 10, 100, ... in class 0; ours puts them in the class above).
Zero-area boxes stay in the count but out of the matching, as there. The official
``val_gt_loc.txt`` ships with NWPU-Crowd: read it with :func:`read_nwpu_gt` for the
leaderboard's own radii.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maskfocal.errors import DatasetError
from maskfocal.metrics.localization import candidate_pairs

__all__ = ["JHU_DENSITY_LEVELS", "JHU_WEATHER", "NwpuTruth", "jhu_report", "kuhn_matching",
           "nwpu_counting", "nwpu_localization", "nwpu_truth_from_boxes", "read_nwpu_counts",
           "read_nwpu_gt", "read_nwpu_loc", "round_points", "write_nwpu_counts",
           "write_nwpu_loc"]

HEAD_CLASSES = 6
SCENE_LEVELS = 5
ILLUMINATIONS = 4
AREA_BOUNDS = (10, 100, 1_000, 10_000, 100_000)
EPS = 1e-20  # the scorer's guard in every ratio

JHU_DENSITY_LEVELS = {"low": (0, 50), "medium": (51, 500), "high": (501, math.inf)}
"""JHU-Crowd++ density levels by the true count (Sindagi et al., TPAMI 2020)."""
JHU_WEATHER = {0: "none", 1: "fog/haze", 2: "rain", 3: "snow"}
"""JHU-Crowd++ ``image_labels.txt`` weather codes."""


@dataclass
class NwpuTruth:
    """One image of an NWPU ground-truth localisation file: integer heads, radii, classes.

    ``count`` is the line's ``n`` (the image's people); ``points`` may hold fewer rows when
    zero-area boxes were left out of the matching.
    """

    count: int
    points: np.ndarray  # (N, 2) int64 x, y
    sigma: np.ndarray  # (N, 2) int64 sigma_s, sigma_l
    level: np.ndarray  # (N,) int64 head-size class 0-5


def round_points(points: np.ndarray | Sequence) -> np.ndarray:
    """Predicted points as the integers a submission holds: nearest pixel, halves up."""
    return np.floor(np.asarray(points, dtype=np.float64).reshape(-1, 2) + 0.5).astype(np.int64)


def nwpu_truth_from_boxes(boxes: np.ndarray | Sequence) -> NwpuTruth:
    """The integer ground truth the converter writes for boxes (N, 4) ``x1 y1 x2 y2``."""
    corners = np.trunc(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)).astype(np.int64)
    x1, y1, x2, y2 = corners.T
    width, height = x2 - x1, y2 - y1
    area = width * height
    keep = area != 0
    # int((x1 + x2) / 2) truncates towards zero, as np.trunc does
    centre = np.trunc(np.stack([(x1 + x2) / 2, (y1 + y2) / 2], axis=1)).astype(np.int64)
    small = np.trunc(np.minimum(width, height) / 2)
    large = np.trunc(np.sqrt((width * width + height * height).astype(np.float64)) / 2)
    level = np.searchsorted(np.asarray(AREA_BOUNDS), area, side="right")
    return NwpuTruth(count=len(corners), points=centre[keep],
                     sigma=np.stack([small, large], axis=1).astype(np.int64)[keep],
                     level=level.astype(np.int64)[keep])


# --- files -----------------------------------------------------------------------------------


def _integers(path: Path, number: int, line: str) -> list[int]:
    try:
        return [int(field) for field in line.split()]
    except ValueError:
        raise DatasetError(path, f"line {number}: every field must be an integer") from None


def read_nwpu_gt(path: str | Path) -> dict[int, NwpuTruth]:
    """An official ground-truth localisation file: ``id n x y sigma_s sigma_l level ...``."""
    path = Path(path)
    truths: dict[int, NwpuTruth] = {}
    for number, line in enumerate(_lines(path), 1):
        fields = _integers(path, number, line)
        if len(fields) < 2 or (len(fields) - 2) % 5:
            raise DatasetError(path, f"line {number}: expected id, n and 5 integers per head")
        rows = np.asarray(fields[2:], dtype=np.int64).reshape(-1, 5)
        truths[fields[0]] = NwpuTruth(count=fields[1], points=rows[:, :2], sigma=rows[:, 2:4],
                                      level=rows[:, 4])
    return truths


def read_nwpu_loc(path: str | Path) -> dict[int, np.ndarray]:
    """A localisation file ``id n x1 y1 ... xn yn`` (integers), checked as the scorer checks."""
    path = Path(path)
    points: dict[int, np.ndarray] = {}
    for number, line in enumerate(_lines(path), 1):
        fields = _integers(path, number, line)
        if len(fields) < 2 or len(fields) % 2 or (len(fields) - 2) // 2 != fields[1]:
            raise DatasetError(path, f"line {number}: expected id, n and n pairs x y")
        points[fields[0]] = np.asarray(fields[2:], dtype=np.int64).reshape(-1, 2)
    return points


def read_nwpu_counts(path: str | Path) -> dict[int, float]:
    """A counting file ``id count`` per line."""
    path = Path(path)
    counts: dict[int, float] = {}
    for number, line in enumerate(_lines(path), 1):
        fields = line.split()
        try:
            counts[int(fields[0])] = float(fields[1])
        except (ValueError, IndexError):
            raise DatasetError(path, f"line {number}: expected an integer id and a count") \
                from None
        if len(fields) != 2:
            raise DatasetError(path, f"line {number}: expected an integer id and a count")
    return counts


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(path, f"cannot read ({error})") from None
    return [line for line in text.splitlines() if line.strip()]


def write_nwpu_counts(path: str | Path, counts: Mapping[int, float]) -> str:
    """The counting submission: ``id count`` per line, sorted by id, 4 decimals (the
    leaderboard's example). Returns the text written."""
    from maskfocal.fileio import atomic_write_text

    text = "".join(f"{key} {float(counts[key]):.4f}\n" for key in sorted(counts))
    atomic_write_text(Path(path), text)
    return text


def write_nwpu_loc(path: str | Path, points: Mapping[int, np.ndarray]) -> str:
    """The localisation submission: ``id n x1 y1 ... xn yn``, integers (:func:`round_points`),
    sorted by id."""
    from maskfocal.fileio import atomic_write_text

    lines = []
    for key in sorted(points):
        xy = round_points(points[key])
        lines.append(" ".join(str(v) for v in [key, len(xy), *xy.reshape(-1).tolist()]))
    text = "".join(f"{line}\n" for line in lines)
    atomic_write_text(Path(path), text)
    return text


# --- matching --------------------------------------------------------------------------------


def _adjacency(pred: np.ndarray, gt: np.ndarray, radius: np.ndarray) -> list[list[int]]:
    """For each prediction, the heads within their radius, in head order: the scorer's
    ``distance_matrix(pred, gt) <= sigma`` (:func:`~maskfocal.metrics.localization.
    candidate_pairs`: the same arithmetic, through a KD-tree)."""
    adjacency: list[list[int]] = [[] for _ in range(len(pred))]
    if len(pred) == 0 or len(gt) == 0:
        return adjacency
    pred_index, gt_index, _ = candidate_pairs(pred, gt, radius)
    order = np.lexsort((gt_index, pred_index))
    for i, j in zip(pred_index[order].tolist(), gt_index[order].tolist(), strict=True):
        adjacency[i].append(j)
    return adjacency


def kuhn_matching(adjacency: Sequence[Sequence[int]], heads: int) -> np.ndarray:
    """``match[j]`` = the prediction matched to head ``j`` (-1: none).

    Kuhn's augmenting paths, predictions tried in order, each one's heads in its list order,
    a head visited at most once per try: the official scorer's result, without its recursion
    (no depth limit) or its per-try reset of every head (a try counter instead).
    """
    match = np.full(heads, -1, dtype=np.int64)
    seen = np.full(heads, -1, dtype=np.int64)  # seen[j] == try: visited in this try
    for root in range(len(adjacency)):
        if not adjacency[root]:
            continue
        stack = [[root, 0]]  # (prediction, next position in its list)
        via: list[int] = []  # the head that led to each deeper level
        while stack:
            frame = stack[-1]
            options = adjacency[frame[0]]
            descended = False
            while frame[1] < len(options):
                v = options[frame[1]]
                frame[1] += 1
                if seen[v] == root:
                    continue
                seen[v] = root
                if match[v] == -1:  # a free head: flip the path
                    for (level_u, _), level_v in zip(stack, [*via, v], strict=True):
                        match[level_v] = level_u
                    stack = []
                    descended = True
                    break
                via.append(v)
                stack.append([int(match[v]), 0])
                descended = True
                break
            if not descended:
                stack.pop()
                if via:
                    via.pop()
    return match


def _match_image(pred: np.ndarray, truth: NwpuTruth, column: int):
    """(tp, fp, fn, tp per class, fn per class) of one image at sigma_s (0) or sigma_l (1)."""
    tp_c = np.zeros(HEAD_CLASSES)
    fn_c = np.zeros(HEAD_CLASSES)
    if len(truth.points) == 0 or len(pred) == 0:
        if len(pred) == 0:
            np.add.at(fn_c, truth.level, 1)
        return 0, len(pred), len(truth.points), tp_c, fn_c
    adjacency = _adjacency(pred.astype(np.float64), truth.points.astype(np.float64),
                           truth.sigma[:, column].astype(np.float64))
    matched = kuhn_matching(adjacency, len(truth.points)) >= 0
    np.add.at(tp_c, truth.level[matched], 1)
    np.add.at(fn_c, truth.level[~matched], 1)
    tp = int(matched.sum())
    return tp, len(pred) - tp, len(truth.points) - tp, tp_c, fn_c


def nwpu_localization(predictions: Mapping[int, np.ndarray], truths: Mapping[int, NwpuTruth],
                      ids: Iterable[int] | None = None) -> dict:
    """What ``eval/eval.py`` prints, as numbers: precision, recall, F1 at sigma_s
    (``*_small``) and sigma_l (``*_large``), recall per head-size class and its mean, and the
    counting block (MAE, MSE, NAE; NAE 0 when no image has people, as that script gives).

    ``predictions`` maps image id to integer points (:func:`round_points`); every id scored
    must have one (an image without heads is an empty array). ``ids`` defaults to the truths'.
    """
    ids = list(truths) if ids is None else list(ids)
    missing = [i for i in ids if i not in predictions]
    if missing:
        raise ValueError(f"no prediction for image ids {missing[:5]}"
                         f"{' ...' if len(missing) > 5 else ''}")
    report: dict = {}
    for column, name in enumerate(("small", "large")):
        tp = fp = fn = 0
        tp_c = np.zeros(HEAD_CLASSES)
        fn_c = np.zeros(HEAD_CLASSES)
        for key in ids:
            pred = np.asarray(predictions[key], dtype=np.int64).reshape(-1, 2)
            a, b, c, d, e = _match_image(pred, truths[key], column)
            tp, fp, fn, tp_c, fn_c = tp + a, fp + b, fn + c, tp_c + d, fn_c + e
        precision = tp / (tp + fp + EPS)
        recall = tp / (tp + fn + EPS)
        per_class = tp_c / (tp_c + fn_c + EPS)
        report.update({
            f"precision_{name}": precision, f"recall_{name}": recall,
            f"f1_{name}": 2 * precision * recall / (precision + recall)
            if precision + recall else 0.0,
            f"recall_per_class_{name}": per_class.tolist(),
            f"recall_class_mean_{name}": float(per_class.mean()),
            f"tp_{name}": tp, f"fp_{name}": fp, f"fn_{name}": fn})
    errors = np.array([abs(truths[k].count - len(predictions[k])) for k in ids], dtype=float)
    people = np.array([truths[k].count for k in ids], dtype=float)
    populated = people != 0
    report["mae"] = float(errors.mean()) if len(ids) else 0.0
    report["mse"] = float(np.sqrt((errors**2).mean())) if len(ids) else 0.0
    report["nae"] = float((errors[populated] / people[populated]).mean()) \
        if populated.any() else 0.0
    report["images"] = len(ids)
    return report


def _judge(pairs: Sequence[tuple[float, float]]) -> dict[str, float]:
    """The counting scorer's AverageMeter over (predicted, true) pairs; -1 where undefined."""
    if not pairs:
        return {"mae": -1.0, "mse": -1.0, "nae": -1.0, "images": 0}
    errors = [abs(p - t) for p, t in pairs]
    relative = [e / t for e, (_, t) in zip(errors, pairs, strict=True) if t > 0]
    return {"mae": sum(errors) / len(errors),
            "mse": math.sqrt(sum(e * e for e in errors) / len(errors)),
            "nae": sum(relative) / len(relative) if relative else -1.0, "images": len(pairs)}


def nwpu_counting(pred_counts: Mapping[int, float], true_counts: Mapping[int, float],
                  levels: Mapping[int, int] | None = None,
                  illuminations: Mapping[int, int] | None = None) -> dict:
    """What ``misc/evaluation_code.py`` returns: ``overall``, ``levels`` (5) and ``illums``
    (4) MAE/MSE/NAE, and ``mmae`` (``mmae_level``, ``mmae_illum``: means of the group MAEs,
    an empty group's -1 included, as there). Without scene labels only ``overall`` is given.
    """
    missing = [k for k in true_counts if k not in pred_counts]
    if missing:
        raise ValueError(f"no predicted count for image ids {missing[:5]}")
    keys = list(true_counts)
    report: dict = {"overall": _judge([(pred_counts[k], true_counts[k]) for k in keys])}
    for name, mean_name, labels, size in (("levels", "mmae_level", levels, SCENE_LEVELS),
                                          ("illums", "mmae_illum", illuminations,
                                           ILLUMINATIONS)):
        if labels is None:
            continue
        groups: list[list[tuple[float, float]]] = [[] for _ in range(size)]
        for k in keys:
            groups[labels[k]].append((pred_counts[k], true_counts[k]))
        report[name] = [_judge(g) for g in groups]
        report.setdefault("mmae", {})[mean_name] = sum(g["mae"] for g in report[name]) / size
    return report


def jhu_report(pred_counts: Sequence[float], true_counts: Sequence[float],
               weather: Sequence[int | None] | None = None) -> dict:
    """JHU-Crowd++ as its paper reports it: MAE/MSE overall, per density level (true count
    0-50, 51-500, over 500) and per weather condition (``image_labels.txt`` codes, and
    ``adverse``: any weather), each with its image count. A group without images is left out.
    """
    pred = np.asarray(pred_counts, dtype=np.float64)
    true = np.asarray(true_counts, dtype=np.float64)

    def errors(mask: np.ndarray) -> dict:
        error = pred[mask] - true[mask]
        return {"mae": float(np.abs(error).mean()), "mse": float(np.sqrt((error**2).mean())),
                "images": int(mask.sum())}

    report = {"overall": errors(np.ones(len(true), dtype=bool)), "density": {}, "weather": {}}
    for name, (low, high) in JHU_DENSITY_LEVELS.items():
        mask = (true >= low) & (true <= high)
        if mask.any():
            report["density"][name] = errors(mask)
    if weather is not None:
        codes = np.array([int(w) if str(w).strip().isdigit() else -1 for w in weather])
        for code, name in JHU_WEATHER.items():
            if (codes == code).any():
                report["weather"][name] = errors(codes == code)
        if (codes > 0).any():
            report["weather"]["adverse"] = errors(codes > 0)
    return report
