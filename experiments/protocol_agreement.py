"""NWPU-Crowd protocol: ours against the official scorers' rules on random cases.

    .venv/bin/python -m experiments.protocol_agreement [--cases 500]

The official rules are restated in ``maskfocal.metrics.nwpu_reference`` (dense distance matrix,
recursive augmenting-path matching, running sums, as ``eval/eval.py`` and
``misc/evaluation_code.py`` compute); this prints the largest difference of any figure.
"""

from __future__ import annotations

import argparse

import numpy as np

from maskfocal.metrics.nwpu_reference import official_counting, official_localization, random_case
from maskfocal.metrics.protocols import nwpu_counting, nwpu_localization


def _largest_gap(ours: dict, official: dict) -> float:
    gap = 0.0
    for key, value in official.items():
        if isinstance(value, dict):
            gap = max(gap, _largest_gap(ours[key], value))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            gap = max([gap, *(_largest_gap(a, b) for a, b in zip(ours[key], value, strict=True))])
        else:
            gap = max(gap, float(np.max(np.abs(np.asarray(ours[key]) - np.asarray(value)))))
    return gap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=500)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    loc_gap, loc_cases, stopped, heads = 0.0, 0, 0, 0
    for _ in range(args.cases):
        preds, truths = random_case(rng)
        try:
            official = official_localization(preds, truths)
        except ZeroDivisionError:
            stopped += 1  # precision = recall = 0: the official script divides by zero
            continue
        loc_gap = max(loc_gap, _largest_gap(nwpu_localization(preds, truths), official))
        loc_cases += 1
        heads += sum(t.count for t in truths.values())
    count_gap = 0.0
    for _ in range(args.cases):
        n = int(rng.integers(1, 40))
        target = {3110 + k: (int(rng.integers(0, 4)), int(rng.integers(0, 5)),
                             float(rng.choice([0, rng.integers(1, 3000)]))) for k in range(n)}
        pred = {k: float(rng.random() * 3000) for k in target}
        ours = nwpu_counting(pred, {k: t[2] for k, t in target.items()},
                             levels={k: t[1] for k, t in target.items()},
                             illuminations={k: t[0] for k, t in target.items()})
        count_gap = max(count_gap, _largest_gap(ours, official_counting(pred, target)))
    print(f"localisation: {loc_cases} random cases ({heads} heads; {stopped} more where the "
          f"official script divides by zero), largest difference {loc_gap:.3g}")
    print(f"counting: {args.cases} random cases, largest difference {count_gap:.3g}")


if __name__ == "__main__":
    main()
