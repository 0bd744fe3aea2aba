"""Training images per second of the old and the new ShanghaiTech B recipe, in the same process.

The old recipe is ``configs/centernet_r18_shb.yaml`` (384 px crops, two loader processes), the
new one ``configs/shb_cpu.yaml`` (256 px crops, channels_last, decoded images kept, no loader
processes). Each trains ``--steps`` steps after ``--warmup`` untimed ones, alternating A/B/A/B so
that a neighbour's load hits both; the ratio is the figure (absolute rates on a shared machine
are noise). Also prints the split of one step of the new recipe (data, targets, forward,
backward, optimiser) and the seconds of one validation pass::

    .venv/bin/python benchmarks/train_speed.py --data-root ../shared/data/ShanghaiTech/part_B
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from maskfocal.config import load_config
from maskfocal.data.splits import build_splits
from maskfocal.data.training import TrainingSet, collate, detection_targets
from maskfocal.families import family_for
from maskfocal.inference import Predictor
from maskfocal.targets.centernet import encode_centernet

CONFIGS = {"old (centernet_r18_shb.yaml)": "configs/centernet_r18_shb.yaml",
           "new (shb_cpu.yaml)": "configs/shb_cpu.yaml"}


class Recipe:
    def __init__(self, path: str, root: str) -> None:
        self.config = load_config(path, [f"data.root={root}"])
        self.family = family_for(self.config)
        torch.manual_seed(0)
        self.model = self.family.build()
        self.channels_last = self.config.train.channels_last
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.train_images, self.val_images, _ = build_splits(self.config.data, seed=0)
        dataset = TrainingSet(self.train_images, self.config.data, seed=0)
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_size=self.config.data.batch_size, shuffle=True,
            num_workers=self.config.data.workers, collate_fn=collate,
            persistent_workers=self.config.data.workers > 0)
        self.batches = iter(self.loader)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4)

    def next_batch(self):
        try:
            return next(self.batches)
        except StopIteration:
            self.batches = iter(self.loader)
            return next(self.batches)

    def step(self) -> tuple[int, dict[str, float]]:
        """One training step; (images, seconds per part)."""
        times = {}
        started = time.perf_counter()
        images, samples = self.next_batch()
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        times["data"] = time.perf_counter() - started
        self.model.train()
        mark = time.perf_counter()
        encode_centernet([s.points for s in samples], [s.boxes for s in samples],
                         [s.has_boxes for s in samples], images.shape[-2], images.shape[-1],
                         stride=self.family.stride, rule=self.config.loss)
        times["targets"] = time.perf_counter() - mark  # measured apart; the loss encodes again
        mark = time.perf_counter()
        losses = self.model(images, detection_targets(samples))
        loss = sum(losses.values())
        times["forward+loss"] = time.perf_counter() - mark
        mark = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        times["backward"] = time.perf_counter() - mark
        mark = time.perf_counter()
        self.optimizer.step()
        times["optimiser"] = time.perf_counter() - mark
        return len(samples), times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="../shared/data/ShanghaiTech/part_B")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    recipes = {name: Recipe(path, args.data_root) for name, path in CONFIGS.items()}
    for recipe in recipes.values():
        for _ in range(args.warmup):
            recipe.step()
    rates: dict[str, list[float]] = {name: [] for name in recipes}
    parts: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for name, recipe in recipes.items():
            images, seconds = 0, 0.0
            for _ in range(args.steps):
                count, times = recipe.step()
                images += count
                seconds += sum(times.values()) - times["targets"]
                if name.startswith("new"):
                    for part, value in times.items():
                        parts.setdefault(part, []).append(value)
            rates[name].append(images / seconds)
    old, new = (statistics.median(rates[name]) for name in recipes)
    figures = {"old_images_per_second": round(old, 2), "new_images_per_second": round(new, 2),
               "ratio": round(new / old, 2),
               "new_step_seconds": {k: round(statistics.median(v), 3) for k, v in parts.items()}}
    recipe = recipes["new (shb_cpu.yaml)"]
    started = time.perf_counter()
    Predictor(recipe.model, recipe.config, recipe.config.inference_options()).candidates(
        recipe.val_images[:10])
    figures["validation_seconds_per_image"] = round((time.perf_counter() - started) / 10, 3)
    for name in recipes:
        print(f"{name:32s} {statistics.median(rates[name]):6.2f} training images/s "
              f"(rounds: {', '.join(f'{r:.2f}' for r in rates[name])})")
    print(f"ratio new / old: {figures['ratio']:.2f}x")
    print("one step of the new recipe (median s): " + ", ".join(
        f"{k} {v}" for k, v in figures["new_step_seconds"].items()))
    print(f"validation: {figures['validation_seconds_per_image']} s per 1024x768 image")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
