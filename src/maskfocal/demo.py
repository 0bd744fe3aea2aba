"""``maskfocal demo``: the main job on built-in synthetic data, on a fresh machine, offline.

Trains CenterNet-R18 with Mask Focal Loss on synthetic crowds (``src/maskfocal/demo.yaml``; drawn on
the fly, nothing downloaded), calibrates the counting threshold on validation, evaluates on the
test scenes next to a naive baseline that always predicts the mean training count, and saves a
test overlay and the training curves.
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import numpy as np

from maskfocal.config import load_config
from maskfocal.data.splits import build_splits
from maskfocal.engine import train
from maskfocal.fileio import OutputFolder, atomic_write_bytes, save_png
from maskfocal.inference import Counter
from maskfocal.metrics import counting_errors
from maskfocal.visualize import draw_heads

DEMO_CONFIG = Path(__file__).with_name("demo.yaml")  # package data: the demo runs from a wheel


def training_curves(metrics_csv: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with metrics_csv.open(newline="") as file:
        rows = list(csv.DictReader(file))
    epochs = [int(r["epoch"]) + 1 for r in rows]
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    left.plot(epochs, [float(r["loss"]) for r in rows], marker="o")
    left.set(xlabel="epoch", ylabel="training loss", title="loss")
    right.plot(epochs, [float(r["val_mae"]) if r["val_mae"] else np.nan for r in rows],
               marker="o", label="MAE")
    right.plot(epochs, [float(r["val_rmse"]) if r["val_rmse"] else np.nan for r in rows],
               marker="s", label="RMSE")
    right.set(xlabel="epoch", ylabel="heads", title="validation error")
    right.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    atomic_write_bytes(out, buffer.getvalue())


def run_demo(out: Path, *, seed: int = 0, overrides: list[str] | None = None) -> dict:
    start = time.perf_counter()
    config = load_config(DEMO_CONFIG, [f"train.seed={seed}", *(overrides or [])])
    folder = OutputFolder(out, "demo")
    run, overlay, curves = folder.claim_all(["run", "overlay.png", "training_curves.png"],
                                            rename=True, keep_earlier=False)  # its own: replaced
    s = config.data.synthetic
    print(f"1/3 training CenterNet-{config.model.backbone} + Mask Focal Loss on "
          f"{s.train_images} synthetic scenes ({s.width}x{s.height}) on this machine")
    result = train(config, run, overwrite=True, progress=True)
    print("2/3 evaluating on the test scenes")
    train_images, _, test_images = build_splits(config.data, seed=config.train.seed)
    mean_count = float(np.mean([image.num_heads for image in train_images]))
    true_counts = [image.num_heads for image in test_images]
    naive = counting_errors([mean_count] * len(test_images), true_counts)
    test = result["test"]
    print(f"   model  (threshold {test['threshold']:.2f})  MAE {test['mae']:7.2f}   "
          f"RMSE {test['rmse']:7.2f}")
    print(f"   naive  (always {mean_count:.1f})          MAE {naive['mae']:7.2f}   "
          f"RMSE {naive['rmse']:7.2f}")
    print("3/3 drawing")
    counter = Counter.from_checkpoint(run / "best.pt", device=config.train.device)
    busiest = max(range(len(test_images)), key=lambda i: test_images[i].num_heads)
    scene = test_images[busiest]
    found = counter(scene.load_image())
    picture = draw_heads(scene.load_image(), found.points, found.boxes,
                         label=f"{found.count} counted / {scene.num_heads} true")
    save_png(picture, overlay)
    training_curves(run / "metrics.csv", curves)
    print(f"saved {overlay}, {curves}; checkpoints in {run}")
    minutes = (time.perf_counter() - start) / 60
    print(f"done in {minutes:.1f} min")
    return {"test": test, "naive": naive, "minutes": minutes}
