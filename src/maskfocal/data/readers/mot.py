"""MOTChallenge layout, as used by GTA_Head (Zhong et al.) and the synthetic generator.

Layout: ``[<split>/]<sequence>/img1/<frame:06d>.jpg``, ``<sequence>/gt/gt.txt`` with rows
``frame,id,left,top,width,height[,conf,class,visibility,...]`` (6 to 10 columns; a row with
conf 0 is marked "ignore" by MOTChallenge and left out), and ``<sequence>/seqinfo.ini``
(``imDir``, ``imExt``, ``imWidth``, ``imHeight``). The root holds sequences directly, or split
folders of sequences.
"""

from __future__ import annotations

import configparser
from pathlib import Path

import numpy as np

from maskfocal.errors import DatasetError, MaskfocalError
from maskfocal.structures import AnnotatedImage

from .common import (
    ReadReport,
    choose_splits,
    list_images,
    make_image,
    parse_number_rows,
    require_root,
)


def _is_sequence(folder: Path) -> bool:
    return (folder / "gt" / "gt.txt").is_file() or (folder / "seqinfo.ini").is_file()


def _seqinfo(folder: Path) -> dict[str, str]:
    path = folder / "seqinfo.ini"
    if not path.is_file():
        return {}
    parser = configparser.ConfigParser()
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as error:
        raise DatasetError(path, f"invalid seqinfo.ini ({error})") from None
    return dict(parser["Sequence"]) if parser.has_section("Sequence") else {}


def _read_sequence(folder: Path, split: str, report: ReadReport) -> list[AnnotatedImage]:
    info = _seqinfo(folder)
    image_folder = folder / info.get("imdir", "img1")
    if not image_folder.is_dir():
        raise DatasetError(image_folder, "image folder is missing")
    extension = info.get("imext", ".jpg")
    size = None
    if "imwidth" in info and "imheight" in info:
        try:
            size = (int(info["imwidth"]), int(info["imheight"]))
        except ValueError:
            raise DatasetError(folder / "seqinfo.ini", "imWidth/imHeight are not integers") \
                from None
    annotation = folder / "gt" / "gt.txt"
    rows = (parse_number_rows(annotation, min_columns=6, max_columns=10)
            if annotation.is_file() else np.zeros((0, 6)))
    if rows.shape[1] >= 7:
        ignored = rows[:, 6] == 0
        report.note("gt rows with conf 0 (ignore) left out", int(ignored.sum()))
        rows = rows[~ignored]
    if not np.isfinite(rows[:, 0]).all():
        raise DatasetError(annotation, "frame numbers must be finite")
    frames = {}
    for path in list_images(image_folder):
        if path.suffix.lower() == extension.lower() and path.stem.isdigit():
            frames[int(path.stem)] = path
    unknown = ~np.isin(rows[:, 0].astype(np.int64), list(frames))
    report.note("gt rows for frames without an image left out", int(unknown.sum()))
    rows = rows[~unknown]
    images = []
    for frame, path in sorted(frames.items()):
        frame_rows = rows[rows[:, 0].astype(np.int64) == frame]
        boxes = np.concatenate([frame_rows[:, 2:4], frame_rows[:, 2:4] + frame_rows[:, 4:6]],
                               axis=1)
        attributes = {"track_id": frame_rows[:, 1].astype(np.int64)}
        if frame_rows.shape[1] >= 9:
            attributes["visibility"] = frame_rows[:, 8].astype(np.float32)
        image = report.guard(make_image, path, (boxes[:, :2] + boxes[:, 2:]) / 2,
                             annotation=annotation, report=report, boxes=boxes,
                             attributes=attributes, size=size,
                             meta={"split": split, "sequence": folder.name, "frame": frame})
        if image is not None:
            images.append(image)
    return images


def read_mot(root: str | Path, split: str | None, report: ReadReport) -> list[AnnotatedImage]:
    root = require_root(root)
    children = sorted(p for p in root.iterdir() if p.is_dir())
    if _is_sequence(root):
        found = {"all": [root]}
    elif any(_is_sequence(child) for child in children):
        found = {"all": [c for c in children if _is_sequence(c)]}
    else:
        found = {}
        for child in children:
            sequences = sorted(p for p in child.iterdir() if p.is_dir() and _is_sequence(p))
            if sequences:
                found[child.name] = sequences
    if not found:
        raise MaskfocalError(f"{root}: no MOT sequences (<sequence>/gt/gt.txt or seqinfo.ini)")
    images: list[AnnotatedImage] = []
    for name, sequences in choose_splits(found, split, root).items():
        for sequence in sequences:
            images += report.guard(_read_sequence, sequence, name, report) or []
    return images
