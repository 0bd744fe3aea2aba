"""ShanghaiTech Part A / Part B (Zhang et al., CVPR 2016).

Layout: ``[part_X_final/]{train,test}_data/images/IMG_n.jpg`` with
``ground_truth/GT_IMG_n.mat`` (the official zip) or ``ground-truth/GT_IMG_n.mat``. The ``.mat``
holds ``image_info[0,0][0,0]['location']``, an (N, 2) array of x, y in pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from maskfocal.errors import DatasetError, MaskfocalError
from maskfocal.structures import AnnotatedImage

from .common import (
    ReadReport,
    as_points,
    choose_splits,
    collect,
    list_images,
    load_mat,
    make_image,
    require_root,
)

SPLITS = {"train": "train_data", "test": "test_data"}
GT_FOLDERS = ("ground_truth", "ground-truth")


def _dataset_folder(root: Path) -> Path:
    if any((root / folder).is_dir() for folder in SPLITS.values()):
        return root
    parts = sorted(p for p in root.glob("part_*") if p.is_dir()
                   and any((p / folder).is_dir() for folder in SPLITS.values()))
    if len(parts) == 1:
        return parts[0]
    if len(parts) > 1:
        names = ", ".join(p.name for p in parts)
        raise MaskfocalError(f"{root}: holds several parts ({names}); pass one as --root")
    raise MaskfocalError(f"{root}: no train_data/ or test_data/ (or part_*/ holding them)")


def read_location_mat(path: Path) -> np.ndarray:
    """The (N, 2) head locations of one ``GT_IMG_n.mat``."""
    image_info = load_mat(path, "image_info", "ShanghaiTech")
    try:
        info = image_info[0, 0][0, 0]
        location = info["location"] if "location" in (info.dtype.names or ()) else info[0]
    except (IndexError, TypeError, ValueError, AttributeError) as error:
        raise DatasetError(path, f"unexpected image_info layout ({error})") from None
    return as_points(location, path, "image_info location")


def _read_one(image_path: Path, gt_folder: Path, split: str,
              report: ReadReport) -> AnnotatedImage:
    annotation = gt_folder / f"GT_{image_path.stem}.mat"
    points = read_location_mat(annotation)
    return make_image(image_path, points, annotation=annotation, report=report,
                      meta={"split": split})


def read_shanghaitech(root: str | Path, split: str | None,
                      report: ReadReport) -> list[AnnotatedImage]:
    folder = _dataset_folder(require_root(root))
    found = {name: folder / sub for name, sub in SPLITS.items() if (folder / sub).is_dir()}
    images: list[AnnotatedImage] = []
    for name, split_folder in choose_splits(found, split, folder).items():
        gt_folder = next((split_folder / g for g in GT_FOLDERS if (split_folder / g).is_dir()),
                         None)
        if gt_folder is None or not (split_folder / "images").is_dir():
            raise MaskfocalError(f"{split_folder}: expected images/ and ground_truth/ "
                                 "(or ground-truth/)")
        images += collect(
            report.guard(_read_one, p, gt_folder, name, report)
            for p in list_images(split_folder / "images"))
    return images
