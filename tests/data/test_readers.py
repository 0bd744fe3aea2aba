"""Every reader on small fixtures written here, damaged cases included."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from maskfocal.data.readers import READERS, read_dataset
from maskfocal.errors import DatasetError, MaskfocalError
from tests.conftest import write_image


def _shanghaitech_mat(path: Path, points: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    info = np.empty((1, 1), dtype=object)
    inner = np.empty((1, 1), dtype=[("location", "O"), ("number", "O")])
    inner[0, 0] = (np.asarray(points, dtype=np.float64), np.array([[len(points)]]))
    info[0, 0] = inner
    scipy.io.savemat(path, {"image_info": info})


def make_shanghaitech(root: Path, gt_folder: str = "ground_truth") -> Path:
    for split, sizes in (("train_data", [3, 0]), ("test_data", [2])):
        for n, count in enumerate(sizes, start=1):
            write_image(root / split / "images" / f"IMG_{n}.jpg")
            points = np.column_stack([np.linspace(5, 50, count), np.linspace(5, 40, count)])
            _shanghaitech_mat(root / split / gt_folder / f"GT_IMG_{n}.mat", points)
    return root


@pytest.mark.parametrize("gt_folder", ["ground_truth", "ground-truth"])
def test_shanghaitech_both_spellings_and_roots(tmp_path, gt_folder):
    make_shanghaitech(tmp_path / "part_B_final", gt_folder)
    for root in (tmp_path, tmp_path / "part_B_final"):
        dataset = read_dataset("shanghaitech", root)
        assert len(dataset) == 3
        assert sorted(image.num_heads for image in dataset.images) == [0, 2, 3]
        test = read_dataset("shanghaitech", root, split="test")
        assert [image.num_heads for image in test.images] == [2]
        assert test.images[0].points.dtype == np.float32
        assert test.images[0].points[0].tolist() == [5.0, 5.0]
        assert (test.images[0].width, test.images[0].height) == (64, 48)


def test_points_outside_are_dropped_and_counted(tmp_path):
    root = tmp_path / "part_A"
    write_image(root / "test_data" / "images" / "IMG_1.jpg")
    _shanghaitech_mat(root / "test_data" / "ground_truth" / "GT_IMG_1.mat",
                      np.array([[10, 10], [64.5, 10], [200, 10], [-5, 3]]))
    dataset = read_dataset("shanghaitech", root)
    image = dataset.images[0]
    assert image.num_heads == 2  # one inside, one within 1 px clipped
    assert (image.points[:, 0] < 64).all()
    assert dataset.report.counts["points outside the image dropped"] == 2
    assert dataset.report.counts["points within 1 px outside the image clipped to it"] == 1


def test_nan_coordinates_name_the_file(tmp_path):
    root = tmp_path / "part_A"
    write_image(root / "test_data" / "images" / "IMG_1.jpg")
    _shanghaitech_mat(root / "test_data" / "ground_truth" / "GT_IMG_1.mat",
                      np.array([[10, np.nan]]))
    with pytest.raises(DatasetError, match=r"GT_IMG_1\.mat: NaN"):
        read_dataset("shanghaitech", root, strict=True)
    dataset = read_dataset("shanghaitech", root, warn=False)
    assert len(dataset) == 0 and "GT_IMG_1.mat" in dataset.report.skipped[0][0]


def test_corrupt_mat_skipped_or_strict(tmp_path):
    make_shanghaitech(tmp_path)
    (tmp_path / "test_data" / "ground_truth" / "GT_IMG_1.mat").write_bytes(b"not a mat file")
    dataset = read_dataset("shanghaitech", tmp_path, warn=False)
    assert len(dataset) == 2 and len(dataset.report.skipped) == 1
    with pytest.raises(DatasetError, match=r"GT_IMG_1\.mat"):
        read_dataset("shanghaitech", tmp_path, strict=True)


def test_unreadable_image_is_skipped(tmp_path):
    make_shanghaitech(tmp_path)
    (tmp_path / "train_data" / "images" / "IMG_1.jpg").write_bytes(b"\xff\xd8 broken")
    dataset = read_dataset("shanghaitech", tmp_path, warn=False)
    assert len(dataset) == 2
    assert "cannot read image" in dataset.report.skipped[0][1]


def test_ucf_qnrf_and_cc50(tmp_path):
    qnrf = tmp_path / "qnrf"
    for split in ("Train", "Test"):
        write_image(qnrf / split / "img_0001.jpg")
        scipy.io.savemat(qnrf / split / "img_0001_ann.mat", {"annPoints": np.array([[3.0, 4.0]])})
    assert [i.meta["split"] for i in read_dataset("ucf", qnrf).images] == ["train", "test"]
    cc50 = tmp_path / "cc50"
    write_image(cc50 / "1.jpg")
    scipy.io.savemat(cc50 / "1_ann.mat", {"annPoints": np.zeros((0, 2))})
    write_image(cc50 / "2.jpg")  # no annotation: skipped and reported
    dataset = read_dataset("ucf", cc50, warn=False)
    assert len(dataset) == 1 and dataset.images[0].num_heads == 0
    assert "missing" in dataset.report.skipped[0][1]


def make_jhu(root: Path) -> Path:
    for split in ("train", "val"):
        write_image(root / split / "images" / "0001.jpg")
        write_image(root / split / "images" / "0002.jpg")
        (root / split / "gt").mkdir(parents=True)
        (root / split / "gt" / "0001.txt").write_text("10 12 4 6 1 0\n30 20 8 8 2 1\n")
        (root / split / "gt" / "0002.txt").write_text("")  # an image without people
        (root / split / "image_labels.txt").write_text("0001,2,stadium,0,0\n0002,0,street,1,0\n")
    return root


def test_jhu(tmp_path):
    dataset = read_dataset("jhu", make_jhu(tmp_path), split="val")
    first, empty = dataset.images
    assert first.num_heads == 2 and empty.num_heads == 0
    np.testing.assert_allclose(first.boxes[0], [8, 9, 12, 15])
    assert first.attributes["occlusion"].tolist() == [1, 2]
    assert first.meta["scene_type"] == "stadium"


def test_jhu_wrong_columns_names_file_and_line(tmp_path):
    make_jhu(tmp_path)
    (tmp_path / "train" / "gt" / "0001.txt").write_text("10 12 4 6 1 0\n1 2 3 4 5 6 7\n")
    with pytest.raises(DatasetError, match=r"0001\.txt: line 2: 7 columns"):
        read_dataset("jhu", tmp_path, split="train", strict=True)


def make_nwpu(root: Path) -> Path:
    for image_id in ("0001", "0002", "0003"):
        write_image(root / "images" / f"{image_id}.jpg")
    (root / "jsons").mkdir()
    (root / "jsons" / "0001.json").write_text(json.dumps(
        {"img_id": "0001.jpg", "human_num": 1, "points": [[10, 10]], "boxes": [[5, 5, 15, 15]]}))
    (root / "jsons" / "0002.json").write_text(json.dumps({"points": [], "boxes": []}))
    (root / "train.txt").write_text("0001 1 2\n")
    (root / "val.txt").write_text("0002 0 0\n")
    (root / "test.txt").write_text("0003 1 1\n")
    return root


def test_nwpu_splits_and_unlabelled_test(tmp_path):
    dataset = read_dataset("nwpu", make_nwpu(tmp_path))
    by_split = {image.meta["split"]: image for image in dataset.images}
    assert by_split["train"].num_heads == 1
    np.testing.assert_allclose(by_split["train"].boxes, [[5, 5, 15, 15]])
    assert by_split["val"].num_heads == 0
    assert not by_split["test"].labelled


def test_nwpu_invalid_json(tmp_path):
    make_nwpu(tmp_path)
    (tmp_path / "jsons" / "0001.json").write_text("{broken")
    with pytest.raises(DatasetError, match=r"0001\.json: invalid JSON"):
        read_dataset("nwpu", tmp_path, split="train", strict=True)


def _voc_xml(boxes, names=None, size=(64, 48)) -> str:
    names = names or ["head"] * len(boxes)
    objects = "".join(
        f"<object><name>{n}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b in zip(names, boxes, strict=True))
    return (f"<annotation><size><width>{size[0]}</width><height>{size[1]}</height></size>"
            f"{objects}</annotation>")


def make_voc(root: Path) -> Path:
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    write_image(root / "JPEGImages" / "a.jpg")
    write_image(root / "JPEGImages" / "b.jpg")
    (root / "Annotations" / "a.xml").write_text(_voc_xml(
        [[1, 2, 11, 12], [20, 20, 20, 30], [30, 10, 40, 20], [40, 5, 50, 15]],
        names=["head", "head", "haed", "person"], size=(0, 0)))
    (root / "Annotations" / "b.xml").write_text(_voc_xml([]))
    (root / "ImageSets" / "Main" / "train.txt").write_text("a\n")
    (root / "ImageSets" / "Main" / "test.txt").write_text("b\n")
    return root


def test_voc_survives_real_quirks(tmp_path):
    dataset = read_dataset("voc", make_voc(tmp_path), split="train")
    image = dataset.images[0]
    assert (image.width, image.height) == (64, 48)  # declared 0 x 0: real size used
    np.testing.assert_allclose(image.boxes, [[1, 2, 11, 12], [30, 10, 40, 20]])
    np.testing.assert_allclose(image.points, [[6, 7], [35, 15]])
    counts = dataset.report.counts
    assert counts["zero-area boxes dropped"] == 1
    assert counts["misspelled class name 'haed' read as 'head'"] == 1
    assert counts["objects of class 'person' left out"] == 1
    assert counts["declared size 0 x 0 (real image size used)"] == 1
    assert len(read_dataset("voc", tmp_path)) == 2


def test_voc_bad_xml(tmp_path):
    make_voc(tmp_path)
    (tmp_path / "Annotations" / "b.xml").write_text("<annotation><object>")
    with pytest.raises(DatasetError, match=r"b\.xml: invalid XML"):
        read_dataset("voc", tmp_path, strict=True)
    (tmp_path / "Annotations" / "b.xml").write_text(
        "<annotation><object><name>head</name><bndbox><xmin>x</xmin></bndbox></object>"
        "</annotation>")
    with pytest.raises(DatasetError, match="<xmin> is missing or not a number"):
        read_dataset("voc", tmp_path, strict=True)


def make_mot_sequence(folder: Path, rows: str, frames: int = 2, seqinfo: bool = True) -> Path:
    for frame in range(1, frames + 1):
        write_image(folder / "img1" / f"{frame:06d}.jpg")
    (folder / "gt").mkdir(parents=True, exist_ok=True)
    (folder / "gt" / "gt.txt").write_text(rows)
    if seqinfo:
        (folder / "seqinfo.ini").write_text(
            "[Sequence]\nname=x\nimDir=img1\nseqLength=2\nimWidth=64\nimHeight=48\nimExt=.jpg\n")
    return folder


@pytest.mark.parametrize("columns", [6, 7, 9, 10])
def test_mot_columns(tmp_path, columns):
    row = [1, 1, 10, 10, 4, 6, 1, 1, 0.8, -1][:columns]
    make_mot_sequence(tmp_path / "seq", ",".join(map(str, row)) + "\n")
    dataset = read_dataset("mot", tmp_path)
    assert [image.num_heads for image in dataset.images] == [1, 0]
    np.testing.assert_allclose(dataset.images[0].boxes, [[10, 10, 14, 16]])
    np.testing.assert_allclose(dataset.images[0].points, [[12, 13]])


def test_mot_split_folders_and_ignore_rows(tmp_path):
    make_mot_sequence(tmp_path / "train" / "s1", "1,1,1,1,4,4,1,1,1\n1,2,5,5,4,4,0,1,1\n")
    make_mot_sequence(tmp_path / "test" / "s2", "2,1,1,1,4,4,1,1,1\n9,1,1,1,4,4,1,1,1\n",
                      seqinfo=False)
    dataset = read_dataset("mot", tmp_path)
    assert {image.meta["split"] for image in dataset.images} == {"train", "test"}
    assert dataset.report.counts["gt rows with conf 0 (ignore) left out"] == 1
    assert dataset.report.counts["gt rows for frames without an image left out"] == 1
    assert len(read_dataset("mot", tmp_path, split="test")) == 2
    assert len(read_dataset("mot", tmp_path / "train")) == 2  # a root of sequences


def test_mot_too_many_columns(tmp_path):
    make_mot_sequence(tmp_path / "seq", "1,1,1,1,4,4,1,1,1,1,1\n")
    with pytest.raises(DatasetError, match=r"gt\.txt: line 1: 11 columns, expected 6 to 10"):
        read_dataset("mot", tmp_path, strict=True)


def test_coco(tmp_path):
    write_image(tmp_path / "images" / "val" / "x.jpg")
    write_image(tmp_path / "images" / "val" / "y.jpg")
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_val.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "x.jpg", "width": 64, "height": 48},
                   {"id": 2, "file_name": "y.jpg"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 10, 6, 8]},
                        {"id": 2, "image_id": 1, "category_id": 4, "bbox": [1, 1, 2, 2]},
                        {"id": 3, "image_id": 1, "category_id": 3, "bbox": [20, 20, 4, 4],
                         "iscrowd": 1}],
        "categories": [{"id": 3, "name": "Head"}, {"id": 4, "name": "person"}]}))
    dataset = read_dataset("coco", tmp_path)
    assert [image.meta["split"] for image in dataset.images] == ["val", "val"]
    np.testing.assert_allclose(dataset.images[0].boxes, [[10, 10, 16, 18]])
    assert dataset.images[1].num_heads == 0
    assert dataset.report.counts["iscrowd boxes left out"] == 1
    single = read_dataset("coco", tmp_path / "annotations" / "instances_val.json")
    assert len(single) == 2


def test_coco_not_coco(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"images": [{"file_name": "x"}]}))
    with pytest.raises(DatasetError, match="not a COCO annotation file"):
        read_dataset("coco", tmp_path, strict=True)


def test_points_list_file(tmp_path):
    write_image(tmp_path / "images" / "a.jpg")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("1 2\n3 4\n")
    (tmp_path / "train.list").write_text("images/a.jpg labels/a.txt\n")
    dataset = read_dataset("points", tmp_path)
    np.testing.assert_allclose(dataset.images[0].points, [[1, 2], [3, 4]])


def test_points_json_per_image(tmp_path):
    for split in ("train", "test"):
        write_image(tmp_path / split / "a.jpg")
        (tmp_path / split / "a.json").write_text(json.dumps({"points": [[5, 6]]}))
    dataset = read_dataset("points", tmp_path)
    assert [image.meta["split"] for image in dataset.images] == ["train", "test"]
    (tmp_path / "test" / "a.json").write_text(json.dumps({"points": [[5, 6, 7, 8, 9]][0]}))
    with pytest.raises(DatasetError, match=r"a\.json: points must be N x 2"):
        read_dataset("points", tmp_path, split="test", strict=True)


def test_user_mistakes_are_project_errors(tmp_path):
    with pytest.raises(MaskfocalError, match="unknown format"):
        read_dataset("csv", tmp_path)
    with pytest.raises(MaskfocalError, match="does not exist"):
        read_dataset("voc", tmp_path / "missing")
    for format in READERS:
        with pytest.raises(MaskfocalError):
            read_dataset(format, tmp_path)  # an empty folder is no dataset


@pytest.mark.shared_data
def test_shanghaitech_part_b_test_counts(shared_data):
    dataset = read_dataset("shanghaitech", shared_data / "ShanghaiTech" / "part_B",
                           split="test")
    assert len(dataset) == 316
    assert sum(image.num_heads for image in dataset.images) == 39121


@pytest.mark.shared_data
def test_scut_head_train_counts(shared_data):
    dataset = read_dataset("voc", shared_data / "SCUT-HEAD-PartB", split="train", warn=False)
    assert len(dataset) == 400
    assert sum(image.num_heads for image in dataset.images) == 7456
    assert dataset.report.counts["declared size 0 x 0 (real image size used)"] > 0


def test_a_dataset_read_at_half_resolution(tmp_path):
    """``data.read_scale``: pixels, heads, boxes and size resized when read, nothing written."""
    from PIL import Image

    from maskfocal.config import load_config
    from maskfocal.data.splits import build_splits
    from maskfocal.errors import MaskfocalError
    from maskfocal.structures import AnnotatedImage

    path = tmp_path / "a.png"
    pixels = np.zeros((60, 80, 3), np.uint8)
    pixels[20:30, 40:50] = 255
    Image.fromarray(pixels).save(path)
    image = AnnotatedImage(path, np.array([[45.0, 25.0]]), 80, 60,
                           boxes=np.array([[40.0, 20.0, 50.0, 30.0]]))
    half = image.rescaled(0.5)
    assert (half.width, half.height, half.read_scale) == (40, 30, 0.5)
    assert half.points.tolist() == [[22.5, 12.5]] and half.boxes.tolist() == [[20, 10, 25, 15]]
    loaded = half.load_image()
    assert loaded.shape == (30, 40, 3)
    assert loaded[12, 22].min() > 200 and loaded[2, 2].max() == 0  # the square moved with it
    assert image.load_image().shape == (60, 80, 3)  # the original untouched
    assert half.rescaled(0.5).read_scale == 0.25
    for split in ("train", "test"):
        (tmp_path / "mine" / split).mkdir(parents=True)
        for k in range(4):
            Image.fromarray(pixels).save(tmp_path / "mine" / split / f"{k}.png")
            (tmp_path / "mine" / split / f"{k}.json").write_text('{"points": [[45, 25]]}')
    config = load_config(None, ["data.format=points", f"data.root={tmp_path / 'mine'}",
                                "data.val_split=null", "data.read_scale=0.5"])
    train, val, test = build_splits(config.data)
    assert len(train) == 3 and len(val) == 1 and len(test) == 4
    assert all(i.width == 40 and i.points.tolist() == [[22.5, 12.5]] for i in [*train, *test])
    with pytest.raises(MaskfocalError, match="read_scale"):
        load_config(None, ["data.read_scale=0.5"])  # synthetic scenes: their own size
