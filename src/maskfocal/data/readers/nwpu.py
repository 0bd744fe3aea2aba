"""NWPU-Crowd (Wang et al., TPAMI 2020).

Layout: ``images/<id>.jpg``, ``jsons/<id>.json`` with ``points`` ([[x, y], ...]) and ``boxes``
([[x1, y1, x2, y2], ...]), and split lists ``train.txt``, ``val.txt``, ``test.txt`` whose lines
begin with the image id. Test labels are withheld: its images come back with ``labelled=False``.

A split line ``id illumination scene_level`` (integers, the column order of the official
counting scorer's target file) puts ``illumination`` (0-3) and ``scene_level`` (0-4) in the
image's ``meta``, for the NWPU protocol's per-level errors (mMAE).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from maskfocal.errors import DatasetError, MaskfocalError
from maskfocal.structures import AnnotatedImage

from .common import (
    ReadReport,
    as_boxes,
    as_points,
    choose_splits,
    collect,
    find_image,
    image_size,
    list_images,
    make_image,
    read_split_list,
    read_text,
    require_root,
)

SPLITS = ("train", "val", "test")


def read_json(path: Path) -> dict:
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as error:
        raise DatasetError(path, f"invalid JSON ({error})") from None
    if not isinstance(data, dict):
        raise DatasetError(path, "expected a JSON object")
    return data


def _scene_labels(list_file: Path) -> dict[str, dict[str, int]]:
    """``{id: {"illumination": i, "scene_level": l}}`` from lines ``id i l`` (others: none)."""
    labels = {}
    for line in read_text(list_file).splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1].isdigit() and fields[2].isdigit():
            illumination, level = int(fields[1]), int(fields[2])
            if illumination < 4 and level < 5:
                labels[fields[0]] = {"illumination": illumination, "scene_level": level}
    return labels


def _read_one(image_path: Path, split: str, report: ReadReport,
              labels: dict[str, int] | None = None) -> AnnotatedImage:
    annotation = image_path.parent.parent / "jsons" / f"{image_path.stem}.json"
    meta = {"split": split, **(labels or {})}
    if not annotation.is_file() and split == "test":
        width, height = image_size(image_path)
        return AnnotatedImage(image_path, np.zeros((0, 2)), width, height,
                              meta=meta, labelled=False)
    data = read_json(annotation)
    points = as_points(data.get("points", []), annotation)
    boxes = as_boxes(data.get("boxes"), annotation)
    if boxes is not None and len(boxes) != len(points):
        report.note("images whose box and point counts differ (boxes left out)")
        boxes = None
    return make_image(image_path, points, annotation=annotation, report=report, boxes=boxes,
                      meta=meta)


def read_nwpu(root: str | Path, split: str | None, report: ReadReport) -> list[AnnotatedImage]:
    root = require_root(root)
    image_folder = root / "images"
    if not image_folder.is_dir():
        raise MaskfocalError(f"{root}: expected images/ and jsons/")
    found = {name: root / f"{name}.txt" for name in SPLITS if (root / f"{name}.txt").is_file()}
    if not found:
        found = {"all": None}
    images: list[AnnotatedImage] = []
    for name, list_file in choose_splits(found, split, root).items():
        labels: dict[str, dict[str, int]] = {}
        if list_file is None:
            paths = list_images(image_folder)
        else:
            labels = _scene_labels(list_file)
            paths = []
            for image_id in read_split_list(list_file):
                path = find_image(image_folder, image_id)
                if path is None:
                    report.skip(DatasetError(image_folder / image_id,
                                             f"listed in {list_file.name} but no image found"))
                else:
                    paths.append(path)
        images += collect(report.guard(_read_one, p, name, report, labels.get(p.stem))
                          for p in paths)
    return images
