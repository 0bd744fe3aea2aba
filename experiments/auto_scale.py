"""A head-size-aware test-time scale per photo (``--scale auto``) against one fixed scale, on
each validation source, before anything is built into the counter.

    python -m experiments.auto_scale --checkpoint crowd-lite0 --threads 1

Every validation image of the checkpoint's config (the 110 that ``crowd-lite0``'s recipe holds
out of ShanghaiTech A, B and SCUT-HEAD B) is counted once at each scale of ``--scales``
(every candidate head kept). The rules are then applied to those passes, so each rule costs no
further counting here (in use, a rule costs its first pass plus the chosen one):

- ``fixed S``: every photo at scale S (the shipped rule: the scale chosen on validation).
- ``boxes T``: a first pass at scale 1; the median side of the heads it finds (the size head's
  boxes, sqrt of the area, in the photo's pixels) is the photo's head size h; the photo is then
  counted at the scale of ``--scales`` nearest to T / h (T: the head side the network counts
  best, px at its input); photos with fewer than 5 heads in the first pass keep the fixed scale.
- ``spacing T``: the same with h = the median distance from each head found to its nearest
  neighbour (crowds: heads touch, so spacing is about the head size).

Each rule's threshold is chosen as training does (the mean relative MAE over the sources), and
so is T from ``--targets``: on the same validation images, one number per rule, which favours
the rules with a parameter a little; the report says so. ``--test DATA`` then applies the rules
so chosen (the fixed scale in use and the per-photo ones, each with its validation threshold)
to ShanghaiTech B test and SCUT-HEAD B test, where nothing is chosen. Writes ``--out`` and
prints a table of each source's MAE, the mean relative MAE and the cost: seconds of counting
per photo relative to the fixed rule (a photo the rule keeps at scale 1 costs its first pass
alone).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def head_size(detections, threshold: float, how: str) -> float | None:
    """The median head size of the heads found above ``threshold`` (photo pixels), or None
    with fewer than 5."""
    from maskfocal.inference.predictor import AUTO_MIN_HEADS, head_spacing

    if how == "spacing":  # the rule `--scale auto` counts with
        return head_spacing(detections, threshold)
    kept = detections.above(threshold)
    if kept.count < AUTO_MIN_HEADS or kept.boxes is None:
        return None
    sides = (kept.boxes[:, 2:] - kept.boxes[:, :2]).clamp(min=0).prod(dim=1).sqrt()
    return float(sides.median())


def held_out(args, predictor, rules: dict) -> dict:
    """The rules chosen on validation (their target and threshold, from the ``--out`` file),
    applied to ShanghaiTech B test and SCUT-HEAD B test (``--test DATA``): nothing is chosen
    on them. Only the passes a rule needs are run."""
    from maskfocal.data import read_dataset
    from maskfocal.inference import Predictions, per_source
    from maskfocal.inference.predictor import AUTO_SCALES

    sets = {"part_B": read_dataset("shanghaitech", args.test / "ShanghaiTech" / "part_B",
                                   split="test").images,
            "SCUT-HEAD-PartB": read_dataset("voc", args.test / "SCUT-HEAD-PartB",
                                            split="test").images}
    images = [image for group in sets.values() for image in group]
    labels = [name for name, group in sets.items() for _ in group]
    passes: dict[tuple[int, float], object] = {}
    seconds: dict[float, float] = {}

    def found(i: int, scale: float):
        if (i, scale) not in passes:
            started = time.perf_counter()
            passes[i, scale] = predictor.at_scale(scale).candidates([images[i]]).detections[0]
            seconds[scale] = seconds.get(scale, 0.0) + time.perf_counter() - started
        return passes[i, scale]

    result = {}
    for name, rule in rules.items():
        started = time.perf_counter()
        kind, value = name.split()
        choice = []
        for i in range(len(images)):
            if kind == "fixed":
                choice.append(float(value))
                continue
            size = head_size(found(i, 1.0), predictor.threshold, kind)
            wanted = predictor.input_scale if size is None else float(value) / size
            choice.append(min(AUTO_SCALES, key=lambda s, w=wanted: abs(s - w)))
        found_all = Predictions(detections=[found(i, s) for i, s in enumerate(choice)],
                                gt_points=[image.points for image in images],
                                gt_boxes=[image.boxes for image in images])
        scored = per_source(found_all, rule["threshold"], labels)
        result[name] = {"threshold": rule["threshold"],
                        "relative_mae": scored["val_relative_mae"],
                        "per_source": {k: v["mae"] for k, v in scored["per_source"].items()},
                        "scales_used": {f"{k:g}": choice.count(k) for k in sorted(set(choice))},
                        "seconds": round(time.perf_counter() - started, 1)}
        print(name, json.dumps(result[name]), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="crowd-lite0")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 1.25, 1.5, 1.75, 2.0])
    parser.add_argument("--fixed", type=float, help="the fixed rule's scale (default: the "
                                                     "checkpoint's decode.input_scale)")
    parser.add_argument("--targets", type=float, nargs="+",
                        default=[8, 10, 12, 14, 16, 18, 20, 24])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--test", type=Path, metavar="DATA",
                        help="apply the rules --out holds (chosen on validation) to "
                             "ShanghaiTech B test and SCUT-HEAD B test under DATA")
    parser.add_argument("--limit", type=int, help="every n-th validation image only (a smoke "
                                                  "run)")
    parser.add_argument("--out", type=Path,
                        default=Path("experiments/results/crowd_lite0/auto_scale.json"))
    args = parser.parse_args()

    import torch

    from maskfocal.data.splits import build_splits, sources
    from maskfocal.inference import Predictions, Predictor, balanced_threshold, per_source
    from maskfocal.pretrained import checkpoint_or_shipped

    torch.set_num_threads(args.threads)
    predictor = Predictor.from_checkpoint(checkpoint_or_shipped(args.checkpoint), device="cpu")
    config = predictor.config
    if args.test:
        saved = json.loads(args.out.read_text())
        fixed = args.fixed or config.decode.input_scale
        rules = {name: rule for name, rule in saved["rules"].items()  # the fixed one in use
                 if not name.startswith("fixed") or float(name.split()[1]) == fixed}
        saved["held_out_test"] = held_out(args, predictor, rules)
        args.out.write_text(json.dumps(saved, indent=1) + "\n")
        return
    fixed = args.fixed or config.decode.input_scale
    scales = sorted(set(args.scales) | {fixed, 1.0})
    _, val, _ = build_splits(config.data, seed=config.train.seed)
    if args.limit:
        val = val[::max(1, len(val) // args.limit)]
    labels = sources(config.data, val)
    passes, seconds = {}, {}
    for scale in scales:
        started = time.perf_counter()
        passes[scale] = predictor.at_scale(scale).candidates(val).detections
        seconds[scale] = time.perf_counter() - started
        print(f"scale {scale}: {seconds[scale]:.0f} s", flush=True)

    def rule(choice: list[float]) -> dict:
        found = Predictions(detections=[passes[s][i] for i, s in enumerate(choice)],
                            gt_points=[image.points for image in val],
                            gt_boxes=[image.boxes for image in val])
        threshold, relative = balanced_threshold(found, labels)
        cost = sum(seconds[s] for s in choice) / len(val)
        return {"threshold": threshold, "val_relative_mae": round(relative, 4),
                "per_source": {Path(k).name: v["mae"] for k, v in
                               per_source(found, threshold, labels)["per_source"].items()},
                "seconds_per_image": round(cost, 2), "scales_used": dict(zip(
                    *np.unique(np.array(choice), return_counts=True), strict=True))}

    rows = {f"fixed {s}": rule([s] * len(val)) for s in scales}
    first = passes[1.0]
    for how in ("boxes", "spacing"):
        best = None
        for target in args.targets:
            choice = []
            for detections in first:
                size = head_size(detections, predictor.threshold, how)
                wanted = fixed if size is None else target / size
                choice.append(min(scales, key=lambda s, w=wanted: abs(s - w)))
            row = rule(choice)
            row["target"] = target
            # the first pass, at scale 1, is every photo's; where the rule keeps scale 1 it
            # is also the count (no second pass)
            second = sum(seconds[s] for s in choice if s != 1.0) / len(val)
            row["seconds_per_image"] = round(seconds[1.0] / len(val) + second, 2)
            if best is None or row["val_relative_mae"] < best["val_relative_mae"]:
                best = row
        rows[f"{how} {best['target']:g}"] = best
    for row in rows.values():
        row["scales_used"] = {f"{k:g}": int(v) for k, v in row["scales_used"].items()}
    result = {"checkpoint": args.checkpoint, "validation_images": len(val),
              "fixed_scale": fixed, "rules": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    base = rows[f"fixed {fixed}"]["seconds_per_image"]
    print("| rule | SHA / SHB / SCUT val MAE | mean relative MAE | cost |")
    print("|---|---|---|---|")
    for name, row in rows.items():
        maes = " / ".join(f"{row['per_source'].get(k, float('nan')):.2f}"
                          for k in ("part_A", "part_B", "SCUT-HEAD-PartB"))
        print(f"| {name} | {maes} | {row['val_relative_mae']:.4f} | "
              f"{row['seconds_per_image'] / base:.2f}x |")


if __name__ == "__main__":
    main()
