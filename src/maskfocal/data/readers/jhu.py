"""JHU-Crowd++ v2.0 (Sindagi et al., TPAMI 2020).

Layout: ``{train,val,test}/images/*.jpg``, ``{split}/gt/<name>.txt`` with rows ``x y w h o b``
(head point, head box size, occlusion level, blur flag; an empty file is an image without
people) and ``{split}/image_labels.txt`` rows ``name,count,scene,weather,distractor``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from maskfocal.errors import DatasetError
from maskfocal.structures import AnnotatedImage

from .common import (
    ReadReport,
    choose_splits,
    collect,
    list_images,
    make_image,
    parse_number_rows,
    read_text,
    require_root,
)

SPLITS = ("train", "val", "test")
LABEL_FIELDS = ("total_count", "scene_type", "weather", "distractor")


def _image_labels(path: Path) -> dict[str, dict[str, str]]:
    if not path.is_file():
        return {}
    labels = {}
    for line in read_text(path).splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) >= 2:
            labels[fields[0]] = dict(zip(LABEL_FIELDS, fields[1:], strict=False))
    return labels


def _read_one(image_path: Path, split: str, labels: dict[str, str],
              report: ReadReport) -> AnnotatedImage:
    annotation = image_path.parent.parent / "gt" / f"{image_path.stem}.txt"
    rows = parse_number_rows(annotation, min_columns=2, max_columns=6)
    points = rows[:, :2]
    boxes = None
    attributes = {}
    if rows.shape[1] >= 4:
        sizes = rows[:, 2:4]
        if (sizes > 0).all():
            boxes = np.concatenate([points - sizes / 2, points + sizes / 2], axis=1)
        else:
            report.note("images with zero-size boxes (points kept, boxes left out)")
    if rows.shape[1] >= 6:
        if not np.isfinite(rows[:, 4:6]).all():
            raise DatasetError(annotation, "occlusion and blur must be finite numbers")
        attributes = {"occlusion": rows[:, 4].astype(np.int64),
                      "blur": rows[:, 5].astype(np.int64)}
    return make_image(image_path, points, annotation=annotation, report=report, boxes=boxes,
                      attributes=attributes, meta={"split": split, **labels})


def read_jhu(root: str | Path, split: str | None, report: ReadReport) -> list[AnnotatedImage]:
    root = require_root(root)
    found = {name: root / name for name in SPLITS if (root / name / "images").is_dir()}
    images: list[AnnotatedImage] = []
    for name, folder in choose_splits(found, split, root).items():
        labels = report.guard(_image_labels, folder / "image_labels.txt") or {}
        images += collect(
            report.guard(_read_one, p, name, labels.get(p.stem, {}), report)
            for p in list_images(folder / "images"))
    return images
