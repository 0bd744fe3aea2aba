"""One record of ``experiments/results/recipe.json``: a finished training run's figures.

    .venv/bin/python -m experiments.recipe_record RUN --label "shb_cpu.yaml (new), 60 min" \\
        --seed 0 --data ../shared/data

Reads the run's ``test_metrics.json`` (ShanghaiTech B test, written when training ended) and
``metrics.csv`` (epochs, images/s, validation curve), scores ``best.pt`` on SCUT-HEAD B test
(200 images) and replaces the record of the same label and seed (others are kept).
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished run folder")
    parser.add_argument("--label", required=True, help="what the run is (recipe, budget)")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--machine", default="2-core CPU (this project's)")
    parser.add_argument("--note", help="anything that affected the run (other load, ...)")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/recipe.json"))
    args = parser.parse_args()

    from maskfocal.engine import run_summary
    from maskfocal.evaluation import evaluate_checkpoint
    from maskfocal.fileio import atomic_write_text

    run = run_summary(args.run)
    test = run["test"]
    started = time.perf_counter()
    scut = evaluate_checkpoint(args.run / "best.pt", "voc", str(args.data / "SCUT-HEAD-PartB"),
                               split="test", device="cpu")
    record = {
        "recipe": args.label, "seed": args.seed, "machine": args.machine,
        "date": datetime.date.today().isoformat(),
        **{k: run[k] for k in ("budget_minutes", "minutes", "epochs", "training_images",
                               "training_images_per_second", "best_val_mae", "val_curve")},
        "shb_test": {k: test[k] for k in ("mae", "rmse", "nae", "f1_sigma8", "f1_sigma4",
                                          "threshold")},
        "scut_head_b_test": {k: scut[k] for k in ("images", "mae", "rmse", "nae",
                                                  "f1_sigma8")},
        "scut_eval_seconds": round(time.perf_counter() - started, 1),
    }
    if args.note:
        record["note"] = args.note
    results = json.loads(args.out.read_text()) if args.out.is_file() else []
    results = [r for r in results
               if not (r["recipe"] == args.label and r["seed"] == args.seed)] + [record]
    atomic_write_text(args.out, json.dumps(results, indent=1) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k != "val_curve"}, indent=1))


if __name__ == "__main__":
    main()
