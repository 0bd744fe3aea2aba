"""Training and inference images/s of each detector at one size, side by side, same run.

    .venv/bin/python benchmarks/detector_speed.py [--size 512 | 1024x768] [--backbone resnet18]

Every detector gets the same synthetic crowd batch and the default config with ``--loss`` (mfl
unless told); ratios are against CenterNet measured in this run. ``--loss both`` instead trains
each detector with its own loss and with MFL, one step of each in turn, and prints what a
training step with MFL costs against one with the detector's own loss (the MFL grid gives both
the same minutes)::

    .venv/bin/python benchmarks/detector_speed.py --loss both --size 256 --batch 8 \
        --backbone efficientnet_lite0 --heads 20 --detectors centernet fcos --threads 1

``--precision both`` instead times each detector's training step in float32 and under bfloat16
autocast on the CPU (channels_last, as the CPU recipes train), alternating step by step, and
prints the speed-up: what a bf16 CPU recipe would buy a run of the MFL grid::

    .venv/bin/python benchmarks/detector_speed.py --precision both --size 256 --batch 8 \
        --backbone efficientnet_lite0 --heads 20 --detectors centernet fcos --threads 1
"""

from __future__ import annotations

import argparse
import time

import torch

from maskfocal.config import load_config
from maskfocal.data.synthetic import SyntheticConfig, generate_scene
from maskfocal.data.training import detection_targets, to_sample
from maskfocal.families import FAMILIES, family_for
from maskfocal.inference import Predictor


def median_time(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def training_step(name: str, backbone: str, loss: str, images: torch.Tensor, samples: list):
    """(config, model, one optimiser step on the batch) for one detector and loss."""
    torch.manual_seed(0)
    config = load_config(None, [f"model.name={name}", f"model.backbone={backbone}",
                                f"loss.name={loss}"])
    family = family_for(config)
    model = family.build()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        model.train()
        total = sum(model(images, detection_targets(samples)).values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()

    return config, model, step


def compare_losses(args: argparse.Namespace, images: torch.Tensor, samples: list) -> None:
    """Each detector's training step with MFL against its own loss, alternating step by step."""
    print(f"{'detector':<12} {'own img/s':>10} {'MFL img/s':>10} {'MFL step / own step':>20}")
    for name in args.detectors:
        steps = {loss: training_step(name, args.backbone, loss, images, samples)[2]
                 for loss in ("native", "mfl")}
        median = alternate(steps, args.repeats)
        own, mfl = median["native"], median["mfl"]
        print(f"{name:<12} {args.batch / own:>10.2f} {args.batch / mfl:>10.2f} "
              f"{mfl / own:>19.2f}x")


def alternate(steps: dict, repeats: int) -> dict[str, float]:
    """The median seconds of each step, timed in turn (a neighbour's load hits every one)."""
    times: dict[str, list[float]] = {key: [] for key in steps}
    for step in steps.values():  # warm-up
        step()
    for _ in range(repeats):
        for key, step in steps.items():
            times[key].append(median_time(step, 1))
    return {key: sorted(values)[len(values) // 2] for key, values in times.items()}


def compare_precisions(args: argparse.Namespace, images: torch.Tensor, samples: list) -> None:
    """Each detector's training step in float32 against bfloat16 autocast, on the CPU."""
    images = images.contiguous(memory_format=torch.channels_last)
    print(f"{'detector':<12} {'fp32 img/s':>10} {'bf16 img/s':>10} {'bf16 speed-up':>14}")
    for name in args.detectors:
        _, model, step = training_step(name, args.backbone, args.loss, images, samples)
        model.to(memory_format=torch.channels_last)

        def bf16(step=step) -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                step()

        median = alternate({"fp32": step, "bf16": bf16}, args.repeats)
        print(f"{name:<12} {args.batch / median['fp32']:>10.2f} "
              f"{args.batch / median['bf16']:>10.2f} {median['fp32'] / median['bf16']:>13.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="512", help="SIDE or WIDTHxHEIGHT")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--loss", default="mfl", choices=["mfl", "native", "both"])
    parser.add_argument("--precision", default="fp32", choices=["fp32", "both"],
                        help="both: float32 against bfloat16 autocast on the CPU")
    parser.add_argument("--heads", type=int, default=150, help="heads per image")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--detectors", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    width, height = (int(v) for v in (args.size.split("x") if "x" in args.size
                                      else (args.size, args.size)))
    scenes = [generate_scene(SyntheticConfig(width=width, height=height), 0, i, count=args.heads)
              for i in range(args.batch)]
    samples = [to_sample(scene) for scene in scenes]
    images = torch.stack([sample.image for sample in samples])
    if args.precision == "both":
        if args.loss == "both":
            parser.error("--precision both times one loss; give --loss mfl or native")
        compare_precisions(args, images, samples)
        return
    if args.loss == "both":
        compare_losses(args, images, samples)
        return
    print(f"{width}x{height}, batch {args.batch} for training, 1 for inference, "
          f"{args.backbone}, loss {args.loss}, {torch.get_num_threads()} CPU threads")
    print(f"{'detector':<12} {'train img/s':>12} {'infer img/s':>12} {'train vs CN':>12} "
          f"{'infer vs CN':>12}")
    reference = None
    for name in args.detectors:
        config, model, step = training_step(name, args.backbone, args.loss, images, samples)
        predictor = Predictor(model, config, config.inference_options())

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
