"""Images/s of eager PyTorch and ONNX Runtime, same model, same images, same process.

    .venv/bin/python benchmarks/onnx_speed.py --checkpoint demo_out/run/best.pt
    .venv/bin/python benchmarks/onnx_speed.py --model fcos      # a random FCOS-R18
    .venv/bin/python benchmarks/onnx_speed.py --backbone efficientnet_lite0

Both go through :class:`maskfocal.Counter` (decoding included, which is the same Python code
for both), single images of ``--size``, after two warm-up calls; counts must agree.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def rate(counter, images, repeats: int) -> tuple[float, list[int]]:
    for image in images[:2]:
        counter(image)
    start = time.perf_counter()
    counts = []
    for _ in range(repeats):
        counts = [counter(image).count for image in images]
    return repeats * len(images) / (time.perf_counter() - start), counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="default: a random model")
    parser.add_argument("--model", default="centernet", choices=["centernet", "fcos",
                                                                  "retinanet"])
    parser.add_argument("--backbone", default="resnet18", help="of the random model")
    parser.add_argument("--size", default="1024x768")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from maskfocal import Counter
    from maskfocal.config import load_config
    from maskfocal.data.synthetic import SyntheticConfig, generate_scene
    from maskfocal.engine import save_checkpoint
    from maskfocal.export import export_onnx
    from maskfocal.families import build_model

    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = args.checkpoint
        if checkpoint is None:
            config = load_config(None, [f"model.name={args.model}",
                                        f"model.backbone={args.backbone}"])
            checkpoint = Path(scratch) / "random.pt"
            save_checkpoint(checkpoint, {"model": build_model(config).state_dict(),
                                         "config": config.to_dict(), "threshold": 0.3})
        onnx_path = export_onnx(checkpoint, Path(scratch) / "model.onnx")
        eager = Counter.from_checkpoint(checkpoint, device="cpu")
        exported = Counter.from_checkpoint(onnx_path, device="cpu")
        config = SyntheticConfig(width=width, height=height, max_count=800)
        images = [generate_scene(config, seed=3, index=i).load_image()
                  for i in range(args.images)]
        eager_rate, eager_counts = rate(eager, images, args.repeats)
        onnx_rate, onnx_counts = rate(exported, images, args.repeats)
    name = eager.config.model.name
    print(f"{name} {eager.config.model.backbone}, {width}x{height}, CPU, {args.threads} threads")
    print(f"eager PyTorch: {eager_rate:.2f} images/s   counts {eager_counts}")
    print(f"ONNX Runtime:  {onnx_rate:.2f} images/s   counts {onnx_counts}")
    print(f"ONNX Runtime / eager: {onnx_rate / eager_rate:.2f}x; counts equal: "
          f"{np.array_equal(eager_counts, onnx_counts)}")


if __name__ == "__main__":
    main()
