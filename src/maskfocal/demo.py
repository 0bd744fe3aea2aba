"""``maskfocal demo``: the main job on built-in synthetic data, on a fresh machine, offline.

For now it synthesises a small dataset in the GTA_Head layout, reads it back with the ``mot``
reader, prints its statistics and draws a contact sheet of annotated scenes. Training and
counting join it as they land.
"""

from __future__ import annotations

import time
from pathlib import Path

from PIL import Image

from maskfocal.data.readers import read_dataset
from maskfocal.data.stats import dataset_stats, format_stats
from maskfocal.data.synthetic import SyntheticConfig, write_mot
from maskfocal.visualize import draw_annotated

DEMO_SPLITS = {"train": 32, "val": 8, "test": 8}


def contact_sheet(images: list[Image.Image], columns: int = 2) -> Image.Image:
    width, height = images[0].size
    rows = (len(images) + columns - 1) // columns
    sheet = Image.new("RGB", (width * columns, height * rows), (255, 255, 255))
    for k, image in enumerate(images):
        sheet.paste(image, ((k % columns) * width, (k // columns) * height))
    return sheet


def run_demo(out: Path, *, seed: int = 0) -> None:
    start = time.perf_counter()
    data_root = out / "synthetic"
    print(f"1/3 synthesising {sum(DEMO_SPLITS.values())} crowd scenes into {data_root}")
    write_mot(data_root, DEMO_SPLITS, seed=seed, config=SyntheticConfig(), progress=True)
    print("2/3 reading them back with the 'mot' reader")
    dataset = read_dataset("mot", data_root)
    print(format_stats(dataset_stats(dataset)))
    print("3/3 drawing annotated scenes")
    train = [image for image in dataset.images if image.meta["split"] == "train"]
    by_count = sorted(train, key=lambda image: image.num_heads)
    picks = [by_count[len(by_count) // 8], by_count[len(by_count) // 2],
             by_count[(3 * len(by_count)) // 4], by_count[-1]]
    sheet = contact_sheet([draw_annotated(image) for image in picks])
    sheet_path = out / "scenes.png"
    sheet.save(sheet_path)
    print(f"saved {sheet_path}")
    print(f"done in {time.perf_counter() - start:.1f} s")
