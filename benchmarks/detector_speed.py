"""Training and inference images/s of each detector at one size, side by side, same run.

    .venv/bin/python benchmarks/detector_speed.py [--size 512 | 1024x768] [--backbone resnet18]

Every detector gets the same synthetic crowd batch and the default config with ``--loss`` (mfl
unless told); ratios are against CenterNet measured in this run.
"""

from __future__ import annotations

import argparse
import time

import torch

from maskfocal.config import load_config
from maskfocal.data.synthetic import SyntheticConfig, generate_scene
from maskfocal.data.training import to_sample
from maskfocal.families import FAMILIES, family_for
from maskfocal.inference import Predictor


def median_time(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="512", help="SIDE or WIDTHxHEIGHT")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--loss", default="mfl", choices=["mfl", "native"])
    parser.add_argument("--detectors", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    args = parser.parse_args()
    width, height = (int(v) for v in (args.size.split("x") if "x" in args.size
                                      else (args.size, args.size)))
    scenes = [generate_scene(SyntheticConfig(width=width, height=height), 0, i, count=150)
              for i in range(args.batch)]
    samples = [to_sample(scene) for scene in scenes]
    images = torch.stack([sample.image for sample in samples])
    print(f"{width}x{height}, batch {args.batch} for training, 1 for inference, "
          f"{args.backbone}, loss {args.loss}, {torch.get_num_threads()} CPU threads")
    print(f"{'detector':<12} {'train img/s':>12} {'infer img/s':>12} {'train vs CN':>12} "
          f"{'infer vs CN':>12}")
    reference = None
    for name in args.detectors:
        torch.manual_seed(0)
        config = load_config(None, [f"model.name={name}", f"model.backbone={args.backbone}",
                                    f"loss.name={args.loss}"])
        family = family_for(config)
        model = family.build()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step(model=model, optimizer=optimizer, family=family):
            model.train()
            loss = sum(family.training_losses(model, images, samples).values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        predictor = Predictor(model, config)

        def infer(model=model, predictor=predictor):
            model.eval()  # step() left it training
            predictor.detect([images[0]], threshold=0.3)

        step()
        infer()
        train_rate = args.batch / median_time(step, args.repeats)
        infer_rate = 1 / median_time(infer, args.repeats)
        if reference is None:
            reference = (train_rate, infer_rate)
        print(f"{name:<12} {train_rate:>12.2f} {infer_rate:>12.2f} "
              f"{train_rate / reference[0]:>11.2f}x {infer_rate / reference[1]:>11.2f}x")


if __name__ == "__main__":
    main()
