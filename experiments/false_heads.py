"""False heads before and after: on the training photos where ``maskfocal mine`` found the most
heads far from every annotated head, how many each model still finds there.

    python -m experiments.false_heads --negatives runs/hard_negatives.json \\
        --checkpoints crowd-lite0 runs/lane/best.pt --top 10 [--pictures runs/false_heads]

Each model counts each photo as ``maskfocal count`` would (its own scale and threshold); a
false head is one at least the file's ``min_distance`` from every annotated head (and outside
each head box grown by half), as mining decides. These photos were trained on with crops around
their false heads, so a fall here is expected; the held-out figures (head-free crops of test
photos, photos with nobody) are ``experiments/model_card.py``'s. ``--pictures`` writes each
model's overlay of each photo (dataset pictures: they stay in ``runs/``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--negatives", type=Path, required=True, help="a `maskfocal mine` file")
    parser.add_argument("--checkpoints", nargs="+", required=True)
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pictures", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import torch

    from maskfocal import Counter
    from maskfocal.config import load_config
    from maskfocal.data.hard_negatives import far_from_heads
    from maskfocal.data.splits import build_splits
    from maskfocal.pretrained import checkpoint_or_shipped

    torch.set_num_threads(args.threads)
    document = json.loads(args.negatives.read_text())
    ranked = sorted(document["images"].items(), key=lambda item: -len(item[1]))[:args.top]
    counters = {name: Counter.from_checkpoint(checkpoint_or_shipped(name), device="cpu")
                for name in args.checkpoints}
    config = load_config(None, [], base=next(iter(counters.values())).config.to_dict())
    train, _, _ = build_splits(config.data, seed=config.train.seed)
    by_path = {str(Path(image.image_path).resolve()): image for image in train
               if image.image_path is not None}
    rows = []
    for path, mined in ranked:
        image = by_path[path]
        pixels = image.load_image()
        row = {"image": Path(path).name, "heads": image.num_heads, "mined": len(mined)}
        for name, counter in counters.items():
            result = counter(pixels, return_heatmap=args.pictures is not None)
            far = far_from_heads(result.points, image, document["min_distance"])
            row[name] = {"count": result.count, "false_heads": int(far.sum())}
            if args.pictures:
                from maskfocal.visualize import draw_overlay

                args.pictures.mkdir(parents=True, exist_ok=True)
                draw_overlay(pixels, result).save(
                    args.pictures / f"{Path(path).stem}.{Path(name).stem}.jpg", quality=85)
        rows.append(row)
        print(json.dumps(row), flush=True)
    totals = {name: sum(row[name]["false_heads"] for row in rows) for name in counters}
    print(f"false heads on the {len(rows)} most-mined training photos: "
          + ", ".join(f"{name} {total}" for name, total in totals.items()))
    if args.out:
        args.out.write_text(json.dumps({"negatives": str(args.negatives), "rows": rows,
                                        "totals": totals}, indent=1) + "\n")


if __name__ == "__main__":
    main()
