"""UCF-QNRF (Idrees et al., ECCV 2018) and UCF_CC_50 (Idrees et al., CVPR 2013).

Layout: ``X.jpg`` beside ``X_ann.mat`` (key ``annPoints``, an (N, 2) array of x, y). UCF-QNRF
keeps them in ``Train/`` and ``Test/`` (the splits ``train`` and ``test``); UCF_CC_50 keeps them
in one folder (the split ``all``).
"""

from __future__ import annotations

from pathlib import Path

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


def _read_one(image_path: Path, split: str, report: ReadReport) -> AnnotatedImage:
    annotation = image_path.with_name(f"{image_path.stem}_ann.mat")
    points = load_mat(annotation, "annPoints", "UCF")
    return make_image(image_path, as_points(points, annotation, "annPoints"),
                      annotation=annotation, report=report, meta={"split": split})


def read_ucf(root: str | Path, split: str | None, report: ReadReport) -> list[AnnotatedImage]:
    root = require_root(root)
    found = {name.lower(): root / name for name in ("Train", "Test") if (root / name).is_dir()}
    if not found and list_images(root):
        found = {"all": root}
    images: list[AnnotatedImage] = []
    for name, folder in choose_splits(found, split, root).items():
        images += collect(report.guard(_read_one, p, name, report)
                          for p in list_images(folder))
    return images
