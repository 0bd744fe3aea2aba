"""Pascal VOC head sets: SCUT-HEAD (Peng et al., ICPR 2018) and the like.

Layout: ``JPEGImages/<id>.jpg``, ``Annotations/<id>.xml`` with one
``<object><name>head</name><bndbox>xmin ymin xmax ymax</bndbox></object>`` per head, and
``ImageSets/Main/<split>.txt``. Survives the quirks of real files: a declared ``<size>`` of 0 x 0
or one that disagrees with the image (the real size wins), zero-area boxes, and misspelled class
names; each is counted in the read report.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from maskfocal.errors import DatasetError, MaskfocalError
from maskfocal.structures import AnnotatedImage

from .common import (
    ReadReport,
    choose_splits,
    collect,
    find_image,
    image_size,
    make_image,
    read_split_list,
    require_root,
)

HEAD_CLASS = "head"


def _typo_of_head(word: str) -> bool:
    """The slips of the keyboard that head annotations hold: "head"'s letters in another
    order (``haed``, ``hade``), one of them dropped (``hed``, ``hea``) or doubled
    (``heaad``), or a plural (``heads``). Not a letter replaced: ``hand``, ``bead``,
    ``dead``, ``hear``, ``heap`` are other words, not heads."""
    if word == f"{HEAD_CLASS}s" or (len(word) == len(HEAD_CLASS)
                                     and sorted(word) == sorted(HEAD_CLASS)):
        return True
    dropped = {HEAD_CLASS[:i] + HEAD_CLASS[i + 1:] for i in range(len(HEAD_CLASS))}
    doubled = {HEAD_CLASS[:i] + HEAD_CLASS[i] + HEAD_CLASS[i:] for i in range(len(HEAD_CLASS))}
    return word in dropped | doubled


def _class_is_head(name: str, report: ReadReport) -> bool:
    cleaned = name.strip().lower()
    if cleaned == HEAD_CLASS:
        if name != HEAD_CLASS:
            report.note(f"class name {name!r} read as {HEAD_CLASS!r}")
        return True
    if _typo_of_head(cleaned):
        report.note(f"misspelled class name {name!r} read as {HEAD_CLASS!r}")
        return True
    report.note(f"objects of class {name!r} left out")
    return False


def _number(element: ET.Element, tag: str, path: Path) -> float:
    child = element.find(tag)
    try:
        return float(child.text)  # type: ignore[union-attr, arg-type]
    except (AttributeError, TypeError, ValueError):
        raise DatasetError(path, f"<{tag}> is missing or not a number") from None


def read_voc_xml(path: Path, report: ReadReport) -> tuple[np.ndarray, tuple[int, int]]:
    """Head boxes (N, 4) and the declared (width, height) of one VOC annotation file."""
    try:
        tree = ET.parse(path)
    except FileNotFoundError:
        raise DatasetError(path, "annotation file is missing") from None
    except (ET.ParseError, OSError) as error:
        raise DatasetError(path, f"invalid XML ({error})") from None
    root = tree.getroot()
    boxes = []
    for obj in root.iter("object"):
        name = obj.findtext("name") or ""
        if not _class_is_head(name, report):
            continue
        box = obj.find("bndbox")
        if box is None:
            raise DatasetError(path, "an <object> has no <bndbox>")
        boxes.append([_number(box, tag, path) for tag in ("xmin", "ymin", "xmax", "ymax")])
    size = root.find("size")
    declared = (0, 0)
    if size is not None:
        try:
            declared = (int(float(size.findtext("width") or 0)),
                        int(float(size.findtext("height") or 0)))
        except ValueError:
            declared = (0, 0)
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4), declared


def _read_one(root: Path, image_id: str, split: str, report: ReadReport) -> AnnotatedImage:
    annotation = root / "Annotations" / f"{image_id}.xml"
    boxes, declared = read_voc_xml(annotation, report)
    image_path = find_image(root / "JPEGImages", image_id)
    if image_path is None:
        raise DatasetError(root / "JPEGImages" / image_id, "image file is missing")
    size = image_size(image_path)
    if declared == (0, 0):
        report.note("declared size 0 x 0 (real image size used)")
    elif declared != size:
        report.note("declared size differs from the image (real image size used)")
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    return make_image(image_path, centres, annotation=annotation, report=report, boxes=boxes,
                      size=size, meta={"split": split})


def read_voc(root: str | Path, split: str | None, report: ReadReport) -> list[AnnotatedImage]:
    root = require_root(root)
    if not (root / "Annotations").is_dir():
        raise MaskfocalError(f"{root}: expected Annotations/ and JPEGImages/")
    main = root / "ImageSets" / "Main"
    found = {p.stem: p for p in sorted(main.glob("*.txt"))} if main.is_dir() else {}
    if not found:
        found = {"all": None}
    images: list[AnnotatedImage] = []
    seen: set[str] = set()
    for name, list_file in choose_splits(found, split, root).items():
        if list_file is None:
            ids = [p.stem for p in sorted((root / "Annotations").glob("*.xml"))]
        else:
            ids = report.guard(read_split_list, list_file) or []
        ids = [i for i in ids if i not in seen]  # trainval repeats train and val
        seen.update(ids)
        images += collect(report.guard(_read_one, root, i, name, report)
                          for i in ids)
    return images
