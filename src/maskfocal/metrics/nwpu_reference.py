"""The NWPU-Crowd scorers' rules restated the plain way they compute, to check ours against.

``official_*`` restate gjy3035/NWPU-Crowd-Sample-Code-for-Localization ``eval/eval.py`` +
``eval/utils.py`` and gjy3035/NWPU-Crowd-Sample-Code ``misc/evaluation_code.py``: a dense
distance matrix, a recursive augmenting-path matching, running sums. They are slow and are
not what ``maskfocal eval`` runs (:mod:`maskfocal.metrics.protocols` is: KD-tree candidates, an
iterative search); the tests and ``experiments/protocol_agreement.py`` require both to agree to
1e-9 on :func:`random_case` inputs.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import distance_matrix

from .protocols import NwpuTruth

__all__ = ["official_counting", "official_localization", "official_matching", "random_case"]


def official_matching(allowed: np.ndarray) -> np.ndarray:
    """(P, G) bool -> (P, G) bool assignment: Kuhn, preds in order, heads in index order."""
    preds, heads = allowed.shape
    owner = [-1] * heads
    options = [list(np.flatnonzero(row)) for row in allowed]

    def augment(u: int, visited: list[bool]) -> bool:
        for v in options[u]:
            if visited[v]:
                continue
            visited[v] = True
            if owner[v] == -1 or augment(owner[v], visited):
                owner[v] = u
                return True
        return False

    for u in range(preds):
        augment(u, [False] * heads)
    assignment = np.zeros((preds, heads), dtype=bool)
    for v, u in enumerate(owner):
        if u >= 0:
            assignment[u, v] = True
    return assignment


def official_localization(preds: dict, truths: dict) -> dict:
    sums = {n: {"tp": 0, "fp": 0, "fn": 0, "tp_c": np.zeros(6), "fn_c": np.zeros(6)}
            for n in ("small", "large")}
    mae = mse = nae = 0.0
    nae_images = 0
    for key, truth in truths.items():
        pred = np.asarray(preds[key]).reshape(-1, 2)
        for column, name in enumerate(("small", "large")):
            s = sums[name]
            if truth.count == 0 and len(pred):
                s["fp"] += len(pred)
            if len(pred) == 0 and truth.count:
                s["fn"] += len(truth.points)
                for c in range(6):
                    s["fn_c"][c] += (truth.level == c).sum()
            if truth.count and len(pred):
                dist = distance_matrix(pred, truth.points, p=2)
                allowed = np.zeros(dist.shape, dtype=bool)
                for i in range(len(pred)):
                    allowed[i, :] = dist[i, :] <= truth.sigma[:, column]
                assign = official_matching(allowed)
                tp_heads = np.flatnonzero(assign.sum(0) == 1)
                fn_heads = np.flatnonzero(assign.sum(0) == 0)
                s["tp"] += len(np.flatnonzero(assign.sum(1) == 1))
                s["fp"] += len(np.flatnonzero(assign.sum(1) == 0))
                s["fn"] += len(fn_heads)
                for c in range(6):
                    s["tp_c"][c] += (truth.level[tp_heads] == c).sum()
                    s["fn_c"][c] += (truth.level[fn_heads] == c).sum()
        error = abs(truth.count - len(pred))
        mae += error
        mse += error * error
        if truth.count:
            nae += error / truth.count
            nae_images += 1
    out = {}
    for name, s in sums.items():
        ap = s["tp"] / (s["tp"] + s["fp"] + 1e-20)
        ar = s["tp"] / (s["tp"] + s["fn"] + 1e-20)
        out[f"precision_{name}"], out[f"recall_{name}"] = ap, ar
        out[f"f1_{name}"] = 2 * ap * ar / (ap + ar)  # ZeroDivisionError when both are 0
        per_class = s["tp_c"] / (s["tp_c"] + s["fn_c"] + 1e-20)
        out[f"recall_per_class_{name}"] = per_class.tolist()
        out[f"recall_class_mean_{name}"] = per_class.mean()
    out["mae"] = mae / len(truths)
    out["mse"] = math.sqrt(mse / len(truths))
    out["nae"] = nae / nae_images if nae_images else 0
    return out


def official_counting(pred: dict, target: dict) -> dict:
    """target: id -> (illum, level, count)."""
    def meter(rows):
        if not rows:
            return {"mae": -1, "mse": -1, "nae": -1}
        errors = [abs(p - g) for p, g in rows]
        naes = [e / g for e, (_, g) in zip(errors, rows, strict=True) if g > 0]
        return {"mae": sum(errors) / len(rows),
                "mse": math.sqrt(sum(e**2 for e in errors) / len(rows)),
                "nae": sum(naes) / len(naes) if naes else -1}

    rows = {k: (pred[k], t[2]) for k, t in target.items()}
    levels = [meter([rows[k] for k, t in target.items() if t[1] == lv]) for lv in range(5)]
    illums = [meter([rows[k] for k, t in target.items() if t[0] == il]) for il in range(4)]
    return {"overall": meter(list(rows.values())), "levels": levels, "illums": illums,
            "mmae": {"mmae_level": sum(m["mae"] for m in levels) / 5,
                     "mmae_illum": sum(m["mae"] for m in illums) / 4}}


def random_case(rng: np.random.Generator):
    truths, preds = {}, {}
    for key in range(3000, 3000 + int(rng.integers(1, 6))):
        heads = int(rng.choice([0, 1, 3, 12, 40]))
        points = rng.integers(0, 40, size=(heads, 2))
        small = rng.integers(0, 6, size=heads)
        sigma = np.stack([small, small + rng.integers(0, 5, size=heads)], axis=1)
        truths[key] = NwpuTruth(count=heads, points=points, sigma=sigma,
                                level=rng.integers(0, 6, size=heads))
        found = int(rng.choice([0, 1, heads, heads + 5, 30]))
        near = points[rng.integers(0, max(heads, 1), size=found)] if heads else \
            np.zeros((found, 2), dtype=np.int64)
        preds[key] = near + rng.integers(-4, 5, size=(found, 2))  # many exactly on a circle
    return preds, truths
