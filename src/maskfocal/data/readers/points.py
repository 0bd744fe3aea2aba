"""A simple interchange format for point annotations.

Either a P2PNet-style list file ``<split>.list`` (or ``<split>_list.txt``) of
``image annotation`` pairs, paths relative to the root, where each annotation file has one
``x y`` per line; or one JSON per image, ``X.json`` beside ``X.jpg``, holding
``{"points": [[x, y], ...]}`` (optionally ``"boxes"``), with ``train/``, ``val/`` and ``test/``
folders as splits when present.
"""

from __future__ import annotations

from pathlib import Path

from maskfocal.errors import DatasetError
from maskfocal.structures import AnnotatedImage

from .common import (
    IMAGE_EXTENSIONS,
    ReadReport,
    as_boxes,
    as_points,
    choose_splits,
    collect,
    make_image,
    parse_number_rows,
    read_text,
    require_root,
)
from .nwpu import read_json


def _list_files(root: Path) -> dict[str, Path]:
    files = sorted(root.glob("*.list")) + sorted(root.glob("*_list.txt"))
    return {p.name.removesuffix(".list").removesuffix("_list.txt"): p for p in files}


def _read_pair(root: Path, line: str, list_file: Path, split: str,
               report: ReadReport) -> AnnotatedImage:
    fields = line.split()
    if len(fields) != 2:
        raise DatasetError(list_file, f"expected 'image annotation' per line, got {line!r}")
    image_path, annotation = root / fields[0], root / fields[1]
    rows = parse_number_rows(annotation, min_columns=2, max_columns=2)
    return make_image(image_path, rows, annotation=annotation, report=report,
                      meta={"split": split})


def _read_json_image(image_path: Path, split: str, report: ReadReport) -> AnnotatedImage:
    annotation = image_path.with_suffix(".json")
    data = read_json(annotation)
    points = as_points(data.get("points", []), annotation)
    boxes = as_boxes(data.get("boxes"), annotation)
    return make_image(image_path, points, annotation=annotation, report=report, boxes=boxes,
                      meta={"split": split})


def _json_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS
                  and p.with_suffix(".json").is_file())


def read_points(root: str | Path, split: str | None,
                report: ReadReport) -> list[AnnotatedImage]:
    root = require_root(root)
    lists = _list_files(root)
    images: list[AnnotatedImage] = []
    if lists:
        for name, list_file in choose_splits(lists, split, root).items():
            lines = [line for line in read_text(list_file).splitlines() if line.strip()]
            images += collect(report.guard(_read_pair, root, x, list_file, name, report)
                              for x in lines)
        return images
    found = {name: root / name for name in ("train", "val", "test")
             if (root / name).is_dir() and _json_images(root / name)}
    if not found and _json_images(root):
        found = {"all": root}
    for name, folder in choose_splits(found, split, root).items():
        images += collect(report.guard(_read_json_image, p, name, report)
                          for p in _json_images(folder))
    return images
