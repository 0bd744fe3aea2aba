"""Fuzzing: every reader fed malformed annotation files and random point sets.

The only outcomes allowed are a parsed dataset or the project's own error
(:class:`MaskfocalError`, of which :class:`DatasetError` is one); any other exception fails.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from maskfocal.data.readers import read_dataset
from maskfocal.errors import MaskfocalError
from tests.conftest import write_image
from tests.data.test_readers import (
    _shanghaitech_mat,
    _voc_xml,
    make_jhu,
    make_mot_sequence,
    make_nwpu,
    make_shanghaitech,
    make_voc,
)

FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

# JSON-like values of any shape: what a wrong or hostile annotation file may hold
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.sampled_from(["points", "boxes", "images", "annotations",
                                       "categories", "id", "image_id", "bbox", "file_name",
                                       "width", "height", "img_id", "human_num", "name",
                                       "category_id", "iscrowd", "x", "y"]) | st.text(max_size=4),
                      children, max_size=6),
    max_leaves=25)
text_lines = st.lists(st.lists(st.sampled_from(["1", "-3", "2.5", "nan", "inf", "1e400", "x",
                                                 "", "0", "99999", "-0.0", ","]),
                               max_size=9).map(" ".join), max_size=8).map("\n".join)
raw = st.binary(max_size=300) | st.text(max_size=300).map(str.encode)


def read_all(format: str, root: Path) -> None:
    """Both modes: non-strict must read or raise ours; strict likewise."""
    for strict in (False, True):
        try:
            dataset = read_dataset(format, root, strict=strict, warn=False)
        except MaskfocalError:
            continue
        for image in dataset.images:  # what was read is well formed
            assert image.points.ndim == 2 and image.points.shape[1] == 2
            assert np.isfinite(image.points).all()
            assert ((image.points >= 0) & (image.points < [image.width, image.height])).all()
            if image.boxes is not None:
                assert image.boxes.shape == (len(image.points), 4)
                assert (image.boxes[:, 2:] > image.boxes[:, :2]).all()


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz")
    made = {"shanghaitech": make_shanghaitech(base / "sh"), "jhu": make_jhu(base / "jhu"),
            "nwpu": make_nwpu(base / "nwpu"), "voc": make_voc(base / "voc")}
    make_mot_sequence(base / "mot" / "train" / "s1", "1,1,10,10,5,5,1,1,1\n")
    made["mot"] = base / "mot"
    for name in ("coco", "points", "ucf"):
        (base / name).mkdir()
        made[name] = base / name
    write_image(made["coco"] / "images" / "val" / "x.jpg")
    write_image(made["points"] / "train" / "a.jpg")
    write_image(made["ucf"] / "Train" / "img_0001.jpg")
    return made


@FUZZ
@given(content=raw)
def test_mat_readers_on_garbage_bytes(roots, content):
    (roots["shanghaitech"] / "test_data" / "ground_truth" / "GT_IMG_1.mat").write_bytes(content)
    read_all("shanghaitech", roots["shanghaitech"])
    (roots["ucf"] / "Train" / "img_0001_ann.mat").write_bytes(content)
    read_all("ucf", roots["ucf"])


@FUZZ
@given(values=arrays(np.float64, st.tuples(st.integers(0, 40), st.integers(0, 4)),
                     elements=st.floats(allow_nan=True, allow_infinity=True, width=64)))
def test_mat_readers_on_wrong_arrays(roots, values):
    _shanghaitech_mat(roots["shanghaitech"] / "test_data" / "ground_truth" / "GT_IMG_1.mat",
                      values)
    read_all("shanghaitech", roots["shanghaitech"])
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"annPoints": values})
    (roots["ucf"] / "Train" / "img_0001_ann.mat").write_bytes(buffer.getvalue())
    read_all("ucf", roots["ucf"])


@FUZZ
@given(points=arrays(np.float64, st.tuples(st.integers(0, 3000), st.just(2)),
                     elements=st.floats(-100, 200, width=32)))
def test_random_point_sets(roots, points):
    """Empty, duplicated, outside the image and very many points (image 64x48)."""
    if len(points) > 3:
        points[1::3] = points[0]  # duplicates
    _shanghaitech_mat(roots["shanghaitech"] / "test_data" / "ground_truth" / "GT_IMG_1.mat",
                      points)
    read_all("shanghaitech", roots["shanghaitech"])
    (roots["points"] / "train" / "a.json").write_text(json.dumps({"points": points.tolist()}))
    read_all("points", roots["points"])


@FUZZ
@given(value=json_values)
def test_json_readers_on_wrong_structures(roots, value):
    text = json.dumps(value)
    (roots["nwpu"] / "jsons" / "0001.json").write_text(text)
    read_all("nwpu", roots["nwpu"])
    (roots["coco"] / "annotations").mkdir(exist_ok=True)
    (roots["coco"] / "annotations" / "instances_val.json").write_text(text)
    read_all("coco", roots["coco"])
    (roots["points"] / "train" / "a.json").write_text(text)
    read_all("points", roots["points"])


@FUZZ
@given(content=raw)
def test_json_readers_on_garbage_bytes(roots, content):
    (roots["nwpu"] / "jsons" / "0001.json").write_bytes(content)
    read_all("nwpu", roots["nwpu"])
    (roots["coco"] / "annotations").mkdir(exist_ok=True)
    (roots["coco"] / "annotations" / "instances_val.json").write_bytes(content)
    read_all("coco", roots["coco"])


@FUZZ
@given(content=text_lines)
def test_text_readers_on_malformed_rows(roots, content):
    (roots["jhu"] / "train" / "gt" / "0001.txt").write_text(content)
    read_all("jhu", roots["jhu"])
    (roots["jhu"] / "train" / "image_labels.txt").write_text(content.replace(" ", ","))
    read_all("jhu", roots["jhu"])
    gt = roots["mot"] / "train" / "s1" / "gt" / "gt.txt"
    gt.write_text(content.replace(" ", ","))
    read_all("mot", roots["mot"])
    gt.write_text(content)
    read_all("mot", roots["mot"])
    (roots["nwpu"] / "train.txt").write_text(content)
    read_all("nwpu", roots["nwpu"])


@FUZZ
@given(content=raw, seqinfo=st.text(max_size=120))
def test_text_readers_on_garbage_bytes(roots, content, seqinfo):
    (roots["jhu"] / "train" / "gt" / "0001.txt").write_bytes(content)
    read_all("jhu", roots["jhu"])
    sequence = roots["mot"] / "train" / "s1"
    (sequence / "gt" / "gt.txt").write_bytes(content)
    (sequence / "seqinfo.ini").write_text(seqinfo)
    read_all("mot", roots["mot"])


boxes = st.lists(st.tuples(*[st.sampled_from(["1", "-5", "10.5", "1e9", "nan", "", "x",
                                              "30", "63", "0"])] * 4), max_size=6)


@FUZZ
@given(content=raw, rows=boxes, width=st.sampled_from(["64", "0", "-1", "x", "", "1e9"]),
       name=st.sampled_from(["head", "Head", "haed", "person", "", "<b>"]))
def test_voc_on_malformed_xml(roots, content, rows, width, name):
    annotation = roots["voc"] / "Annotations" / "a.xml"
    annotation.write_bytes(content)
    read_all("voc", roots["voc"])
    objects = "".join(f"<object><name>{name}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
                      f"<xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>" for a, b, c, d in rows)
    annotation.write_text(f"<annotation><size><width>{width}</width><height>48</height></size>"
                          f"{objects}</annotation>")
    read_all("voc", roots["voc"])
    annotation.write_text(_voc_xml([]))


def test_fixtures_are_valid_before_fuzzing(tmp_path):
    """The fuzzed fixtures read cleanly when not damaged (so the fuzzing starts from valid)."""
    root = make_shanghaitech(tmp_path / "sh")
    assert len(read_dataset("shanghaitech", root, strict=True)) == 3
    shutil.rmtree(root)
