"""The figures and pictures of the model card (``docs/MODEL.md``), measured on this machine.

    .venv/bin/python -m pip install -e '.[card]'     # scikit-image: its bundled photos
    .venv/bin/python -m experiments.model_card --data ../shared/data

- Test errors of the shipped model (or ``--checkpoint``): ShanghaiTech B test (316) and
  SCUT-HEAD B test (200): MAE, RMSE, NAE, F1 at 4 and 8 px, each image's error; with
  ``--fp32 FILE`` the same weights in float32 on ShanghaiTech B, to show what fp16 costs.
- Images/s at 1024x768 (single images through :class:`maskfocal.Counter`, decoding included),
  eager PyTorch and ONNX Runtime in the same process.
- Counts on photos with nobody, or one person, in them (scikit-image's bundled,
  public-domain/CC0 photos: a brick wall, grass, gravel, coffee, a cat, an astronaut's
  portrait, the cameraman, a rocket, the Hubble deep field).
- Heads found on head-free crops of the test photos (``head_free_crops``): from each
  ShanghaiTech B and SCUT-HEAD B test image and each of the 30 ShanghaiTech A validation
  photos (:func:`sha_validation`), up to ``--crops-per-image`` windows of 256 x 256
  px (at the photo's own resolution) with no annotated head centre within 32 px of the window
  (head boxes are larger than 8 px, so the margin keeps a head's face and hair out), drawn at
  random (seed 0) by :func:`maskfocal.data.negatives.head_free_window`; each crop is counted on
  its own as a user's photo would be. A head the annotators missed counts against the model.
- Pictures (``--pictures DIR``): the worst undercount of ShanghaiTech B test (its densest
  scenes) and the SCUT-HEAD B test image with the most heads under 8 px, downscaled, and a
  sheet of the photos with nobody in them. Only two dataset pictures: the data's terms.

Writes ``--out`` (JSON) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

STOCK = ("brick", "grass", "gravel", "coffee", "chelsea", "astronaut", "camera", "rocket",
         "hubble_deep_field")


def errors_of(counter, images) -> tuple[dict, list[tuple[str, int, int]]]:
    from maskfocal.inference import score

    predictions = counter.predictor.candidates(images, progress=True)
    metrics = {"images": len(images), **score(predictions, counter.threshold)}
    counts = predictions.counts(counter.threshold)
    rows = [(name, int(true), int(found)) for name, true, found in
            zip(predictions.names, predictions.gt_counts, counts, strict=True)]
    return metrics, rows


def images_per_second(counter, images, repeats: int = 3) -> float:
    for image in images[:2]:
        counter(image)
    start = time.perf_counter()
    for _ in range(repeats):
        for image in images:
            counter(image)
    return repeats * len(images) / (time.perf_counter() - start)


def small_heads(image) -> int:
    if image.boxes is None:
        return 0
    sides = np.sqrt(np.prod(image.boxes[:, 2:] - image.boxes[:, :2], axis=1))
    return int((sides < 8).sum())


def head_free_crops(counter, images, per_image: int, side: int = 256,
                    margin: float = 32.0) -> dict:
    """Mean heads found per head-free ``side`` x ``side`` crop (see the module docstring)."""
    from maskfocal.data.negatives import head_free_window

    rng = np.random.default_rng(0)
    counts = []
    for image in images:
        pixels = image.load_image()
        height, width = pixels.shape[:2]
        taken = set()
        for _ in range(per_image):
            found = head_free_window(image.points, height, width, side, rng, margin=margin,
                                     tries=40)
            if found is None or found in taken:
                continue
            taken.add(found)
            top, left = found
            counts.append(counter(pixels[top:top + side, left:left + side]).count)
    counts = np.array(counts)
    return {"crops": len(counts), "mean_heads": round(float(counts.mean()), 4) if len(counts)
            else None, "crops_with_any_head": int((counts > 0).sum()),
            "max_heads": int(counts.max(initial=0))}


def picture(counter, image, path: Path, side: int = 640) -> None:
    from PIL import Image

    from maskfocal.visualize import draw_overlay

    pixels = image.load_image()
    overlay = draw_overlay(pixels, counter(pixels, return_heatmap=True))
    overlay.thumbnail((side, side), Image.Resampling.LANCZOS)
    overlay.save(path, optimize=True)


def sha_validation(data: Path) -> list:
    """The 30 ShanghaiTech A photos that ``configs/crowd_lite0_cpu.yaml`` holds out (seed 0):
    Part A's test split is kept back from this project, and no shipped model trained on these
    (dense crowds under trees and roofs)."""
    from maskfocal.config import load_config
    from maskfocal.data.splits import build_splits, sources

    root = data / "ShanghaiTech" / "part_A"
    config = load_config("configs/crowd_lite0_cpu.yaml", [
        f"data.root={data / 'ShanghaiTech' / 'part_B'}", "data.negative_textures=0",
        f"data.extra_train=[shanghaitech:{root}, voc:{data / 'SCUT-HEAD-PartB'}]"])
    _, val, _ = build_splits(config.data, seed=config.train.seed)
    return [image for image, source in zip(val, sources(config.data, val), strict=True)
            if source == str(root)]


PARTS = ("test", "speed", "nobody")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="../shared/data")
    parser.add_argument("--checkpoint", help="a file or a shipped model's name (default: the "
                                             "shipped model)")
    parser.add_argument("--fp32", help="the same weights in float32 (fp16 check)")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/model_card.json"))
    parser.add_argument("--pictures", type=Path, help="write the card's pictures here")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--crops-per-image", type=int, default=2)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                        help="test errors, speed, and/or photos and crops with nobody")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from maskfocal import Counter
    from maskfocal.data import read_dataset
    from maskfocal.pretrained import MODELS, checkpoint_or_shipped, pretrained_path

    checkpoint = (pretrained_path(args.checkpoint) if args.checkpoint in MODELS
                  else checkpoint_or_shipped(args.checkpoint))
    counter = Counter.from_checkpoint(checkpoint, device="cpu")
    card: dict = {"checkpoint": str(checkpoint), "threshold": counter.threshold,
                  "input_scale": counter.config.decode.input_scale,
                  "torch_threads": args.threads}
    shb = read_dataset("shanghaitech", args.data / "ShanghaiTech" / "part_B",
                       split="test").images
    scut = read_dataset("voc", args.data / "SCUT-HEAD-PartB", split="test").images
    if "test" in args.parts:
        card["shb_test"], shb_rows = errors_of(counter, shb)
        card["scut_head_b_test"], scut_rows = errors_of(counter, scut)
        if args.fp32:
            card["shb_test_fp32"], _ = errors_of(Counter.from_checkpoint(args.fp32,
                                                                         device="cpu"), shb)
        card["per_image"] = {"shb_test": shb_rows, "scut_head_b_test": scut_rows}

    if "speed" in args.parts:
        from maskfocal.export import export_onnx

        frames = [image.load_image() for image in shb[:4]]  # 1024x768
        with tempfile.TemporaryDirectory() as folder:
            onnx = export_onnx(checkpoint, Path(folder) / "model.onnx")
            card["images_per_second_1024x768"] = {
                "eager": round(images_per_second(counter, frames), 3),
                "onnx": round(images_per_second(Counter.from_checkpoint(onnx, device="cpu"),
                                                frames), 3)}

    sheet = []
    if "nobody" in args.parts:
        card["head_free_crops"] = {
            "shb_test": head_free_crops(counter, shb, args.crops_per_image),
            "scut_head_b_test": head_free_crops(counter, scut, args.crops_per_image),
            "sha_val": head_free_crops(counter, sha_validation(args.data),
                                       args.crops_per_image)}
        nobody = {}
        try:
            from skimage import data as stock
        except ImportError:
            print("scikit-image is missing (pip install -e '.[card]'): no stock photos")
            stock = None
        if stock is not None:
            from maskfocal.structures import as_rgb
            from maskfocal.visualize import draw_overlay

            for name in STOCK:
                pixels = as_rgb(np.asarray(getattr(stock, name)()))
                result = counter(pixels, return_heatmap=True)
                nobody[name] = {"size": list(pixels.shape[:2]), "count": result.count}
                sheet.append((draw_overlay(pixels, result), f"{name}: {result.count}"))
        card["photos_without_crowds"] = nobody

    if args.pictures:
        from maskfocal.visualize import contact_sheet

        args.pictures.mkdir(parents=True, exist_ok=True)
        if "test" in args.parts:
            worst = min(range(len(shb_rows)), key=lambda i: shb_rows[i][2] - shb_rows[i][1])
            tiny = max(range(len(scut)), key=lambda i: small_heads(scut[i]))
            picture(counter, shb[worst], args.pictures / "shb_densest_undercount.jpg")
            picture(counter, scut[tiny], args.pictures / "scut_small_heads.jpg")
            card["pictures"] = {"shb_densest_undercount": shb_rows[worst],
                                "scut_small_heads": [*scut_rows[tiny],
                                                     small_heads(scut[tiny])]}
        if sheet:
            contact_sheet(sheet, thumb=240, columns=5).save(
                args.pictures / "no_crowd_photos.jpg", optimize=True, quality=85)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(card, indent=1))
    for key in ("shb_test", "scut_head_b_test", "shb_test_fp32"):
        if key in card:
            m = card[key]
            print(f"{key:18s} MAE {m['mae']:6.2f}  RMSE {m['rmse']:6.2f}  NAE {m['nae']:.3f}  "
                  f"F1@8 {m['f1_sigma8']:.3f}  F1@4 {m['f1_sigma4']:.3f}")
    for key in ("images_per_second_1024x768", "head_free_crops"):
        if key in card:
            print(f"{key}:", card[key])
    if card.get("photos_without_crowds"):
        print("photos without crowds:",
              {k: v["count"] for k, v in card["photos_without_crowds"].items()})


if __name__ == "__main__":
    main()
