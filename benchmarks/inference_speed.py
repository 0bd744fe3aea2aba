"""Counting speed at a given resolution: the whole Counter call against the bare forward pass.

    .venv/bin/python benchmarks/inference_speed.py [--checkpoint CK] [--size 1024x768]

Without a checkpoint a randomly initialised CenterNet-R18 (the default config) is timed; the
speed does not depend on the weights. The ratio says how much decoding, padding and
conversion add on top of the network itself, measured in the same run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from maskfocal.config import Config
from maskfocal.families import build_model
from maskfocal.inference import Counter, Predictor


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint")
    parser.add_argument("--size", default="1024x768")
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    if args.checkpoint:
        counter = Counter.from_checkpoint(args.checkpoint, device=args.device)
    else:
        config = Config()
        counter = Counter(Predictor(build_model(config), config, config.inference_options(),
                                     args.device), 0.3)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
              for _ in range(args.images)]
    counter(images[0])  # warm up
    start = time.perf_counter()
    for image in images:
        counter(image)
    whole = (time.perf_counter() - start) / args.images
    predictor = counter.predictor  # the detection core alone: pad, forward, decode
    tensor = torch.rand(3, height, width)
    predictor.detect([tensor], counter.threshold)
    start = time.perf_counter()
    for _ in range(args.images):
        predictor.detect([tensor], counter.threshold)
    forward = (time.perf_counter() - start) / args.images
    name = f"{counter.config.model.name}-{counter.config.model.backbone}"
    print(f"{name} at {width}x{height} on {args.device}, {torch.get_num_threads()} threads")
    print(f"Counter (decode included): {1 / whole:6.2f} images/s")
    print(f"detection core alone:      {1 / forward:6.2f} images/s")
    print(f"ratio whole / forward:     {whole / forward:6.2f}x")


if __name__ == "__main__":
    main()
