"""COCO-style JSON with head boxes (``bbox`` = [left, top, width, height]).

``--root`` is either one annotation file or a folder holding ``annotations/*.json`` (or
``*.json``); the split is the file's stem without an ``instances_`` prefix. Images are looked up
by ``file_name`` under ``images/<split>/``, ``images/``, ``<split>/`` and the folder itself.
A category named "head" (any case) is used when present, otherwise every category. Boxes with
``iscrowd`` set are left out and counted.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from maskfocal.errors import DatasetError, MaskfocalError
from maskfocal.structures import AnnotatedImage

from .common import ReadReport, choose_splits, make_image, require_root
from .nwpu import read_json


def _annotation_files(root: Path) -> dict[str, Path]:
    if root.is_file():
        files = [root]
    else:
        files = sorted((root / "annotations").glob("*.json")) or sorted(root.glob("*.json"))
    return {p.stem.removeprefix("instances_"): p for p in files}


def _read_file(path: Path, split: str, report: ReadReport) -> list[AnnotatedImage]:
    data = read_json(path)
    try:
        categories = {c["id"]: str(c.get("name", "")) for c in data.get("categories", [])}
        heads = {i for i, name in categories.items() if name.lower() == "head"} or None
        per_image = defaultdict(list)
        for annotation in data.get("annotations", []):
            if heads is not None and annotation.get("category_id") not in heads:
                continue
            if annotation.get("iscrowd", 0):
                report.note("iscrowd boxes left out")
                continue
            per_image[annotation["image_id"]].append([float(v) for v in annotation["bbox"][:4]])
        records = [(r["id"], str(r["file_name"]), r.get("width"), r.get("height"))
                   for r in data["images"]]
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
        raise DatasetError(path, f"not a COCO annotation file ({type(error).__name__}: "
                                 f"{error})") from None
    base = path.parent.parent if path.parent.name == "annotations" else path.parent
    folders = [base / "images" / split, base / "images", base / split, base]
    images = []
    for image_id, file_name, width, height in records:
        image_path = next((f / file_name for f in folders if (f / file_name).is_file()), None)
        if image_path is None:
            report.skip(DatasetError(base / file_name, f"image listed in {path.name} not found"))
            continue
        try:
            boxes = np.asarray(per_image.get(image_id, []), dtype=np.float64).reshape(-1, 4)
            size = (int(width), int(height)) if width and height else None
        except (TypeError, ValueError, OverflowError) as error:
            report.skip(DatasetError(path, f"image {file_name!r}: malformed boxes or size "
                                           f"({type(error).__name__}: {error})"))
            continue
        boxes[:, 2:] += boxes[:, :2]
        image = report.guard(make_image, image_path, (boxes[:, :2] + boxes[:, 2:]) / 2,
                             annotation=path, report=report, boxes=boxes, size=size,
                             meta={"split": split})
        if image is not None:
            images.append(image)
    return images


def read_coco(root: str | Path, split: str | None, report: ReadReport) -> list[AnnotatedImage]:
    root = require_root(root)
    found = _annotation_files(root)
    if not found:
        raise MaskfocalError(f"{root}: no COCO annotation .json file")
    images: list[AnnotatedImage] = []
    for name, path in choose_splits(found, split, root).items():
        images += report.guard(_read_file, path, name, report) or []
    return images
