"""Zones: heads per named polygon or mask, the boundary rule, people per m², and zones
wherever counting happens (Counter, count, tiles, video)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from maskfocal.cli import main
from maskfocal.errors import MaskfocalError
from maskfocal.zones import Zone, load_zones
from tests.test_inference import checkpoint, dot_counter, dots

SQUARE = [[10, 10], [50, 10], [50, 50], [10, 50]]


def zone_file(tmp_path, zones, **extra):
    path = tmp_path / "zones.json"
    path.write_text(json.dumps({"zones": zones, **extra}))
    return path


def test_the_boundary_counts_as_inside():
    zone = Zone("square", polygon=np.array(SQUARE, float))
    points = np.array([[30, 30], [10, 30], [50, 50], [10, 10], [30, 50],  # in, edges, corners
                       [9.99, 30], [50.01, 30], [30, 50.5]])  # just outside
    assert zone.contains(points).tolist() == [True] * 5 + [False] * 3


def test_nested_and_overlapping_zones_each_count_their_heads(tmp_path):
    zones = load_zones(zone_file(tmp_path, [
        {"name": "outer", "polygon": [[0, 0], [100, 0], [100, 100], [0, 100]]},
        {"name": "inner", "polygon": SQUARE},
        {"name": "overlap", "polygon": [[40, 40], [80, 40], [80, 80], [40, 80]]},
    ]))
    points = np.array([[20, 20], [45, 45], [70, 70], [95, 5]])
    assert zones.count(points, 100, 100) == {"outer": 4, "inner": 2, "overlap": 2}


def test_a_mask_zone_counts_as_its_polygon(tmp_path):
    polygon = [[12, 8], [90, 20], [70, 85], [20, 60]]
    mask = Image.new("L", (100, 100))
    ImageDraw.Draw(mask).polygon([tuple(p) for p in polygon], fill=255)
    mask.save(tmp_path / "zone.png")
    zones = load_zones(zone_file(tmp_path, [{"name": "drawn", "polygon": polygon},
                                            {"name": "painted", "mask": "zone.png"}]))
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 100, (400, 2))
    drawn = zones.zones[0]
    import shapely

    edge = shapely.distance(shapely.Polygon(polygon).exterior, shapely.points(points)) < 1.5
    points = points[~edge]  # rasterising decides border pixels its own way
    inside = drawn.contains(points)
    assert inside.any() and (~inside).any()
    assert (zones.zones[1].contains(points) == inside).all()


def test_zones_on_a_tiled_huge_image_count_as_untiled():
    pixels, _ = dots(700, 1400, 120, seed=4)
    zones = {"zones": (Zone("left", polygon=np.array([[0, 0], [700, 0], [700, 700], [0, 700]],
                                                      float)),
                       Zone("band", polygon=np.array([[300, 200], [1100, 200], [1100, 500],
                                                      [300, 500]], float)))}
    from maskfocal.zones import Zones

    zones = Zones(zones["zones"], source="test")
    whole = dot_counter()(pixels, zones=zones)
    tiled = dot_counter(tile_above=256, tile_size=256, tile_overlap=32)(pixels, zones=zones)
    assert tiled.zones == whole.zones and sum(whole.zones.values()) > 20


def test_people_per_square_metre_with_a_scale_or_four_ground_points(tmp_path):
    points = np.array([[20, 20], [30, 30], [40, 40], [45, 15]])
    flat = load_zones(zone_file(tmp_path, [{"name": "square", "polygon": SQUARE}],
                                ground={"pixels_per_metre": 10}))
    counts = flat.count(points, 100, 100)
    assert flat.density(counts) == {"square": pytest.approx(4 / 16)}  # 40x40 px = 4x4 m
    # the image's 100x100 px square is a 5 m x 20 m rectangle on the ground
    tilted = load_zones(zone_file(tmp_path, [{"name": "square", "polygon": SQUARE}],
                                  ground={"image": [[0, 0], [100, 0], [100, 100], [0, 100]],
                                          "metres": [[0, 0], [5, 0], [5, 20], [0, 20]]}))
    assert tilted.areas() == {"square": pytest.approx(0.4 * 5 * 0.4 * 20)}
    # a mask's area is the sum of its pixels' ground areas: the same as its polygon's
    mask = np.zeros((100, 100), bool)
    mask[10:50, 10:50] = True
    assert tilted.ground.area(mask=mask) == pytest.approx(16 * 5 * 20 / 100, rel=1e-6)


@pytest.mark.parametrize("zones, message", [
    ([{"name": "bow", "polygon": [[0, 0], [40, 40], [40, 0], [0, 40]]}], "crosses itself"),
    ([{"name": "flat", "polygon": [[0, 0], [10, 10], [20, 20]]}], "empty"),
    ([{"name": "two", "polygon": [[0, 0], [10, 10]]}], "at least 3 corners"),
    ([{"name": "a", "polygon": SQUARE}, {"name": "a", "polygon": SQUARE}], "used twice"),
    ([{"name": "m", "mask": "missing.png"}], "no such mask file"),
    ([{"polygon": SQUARE}], "needs a non-empty \"name\""),
    ([{"name": "x", "polygon": [["a", 1], [2, 3], [4, 5]]}], "list of \\[x, y\\] numbers"),
    ([], "at least one zone"),
])
def test_bad_zone_files_are_one_line_errors_naming_the_file(tmp_path, zones, message):
    path = zone_file(tmp_path, zones)
    with pytest.raises(MaskfocalError, match=message) as error:
        load_zones(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_count_with_zones_json_csv_overlay_and_errors(tmp_path, capsys):
    ck = checkpoint(tmp_path, threshold=0.12)
    pixels, _ = dots(120, 160, 12, seed=2)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    zones = zone_file(tmp_path, [{"name": "left", "polygon": [[0, 0], [80, 0], [80, 120],
                                                                [0, 120]]},
                                 {"name": "right, =evil", "polygon": [[80, 0], [160, 0],
                                                                      [160, 120], [80, 120]]}],
                      ground={"pixels_per_metre": 20})
    capsys.readouterr()
    assert main(["count", str(tmp_path / "a.png"), "--checkpoint", str(ck), "--zones",
                 str(zones), "--json", "--out", str(tmp_path / "out")]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(record["zones"]) == {"left", "right, =evil"}
    assert sum(record["zones"].values()) <= record["count"]
    assert record["density"]["left"] == pytest.approx(record["zones"]["left"] / 24, abs=1e-4)
    with (tmp_path / "out" / "counts.csv").open() as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["image", "count", "overlay", "zone left", "zone right, =evil",
                       "per_m2 left", "per_m2 right, =evil"]
    assert int(rows[1][3]) == record["zones"]["left"]
    assert (tmp_path / "out" / "a.overlay.png").is_file()
    outside = zone_file(tmp_path, [{"name": "far", "polygon": [[0, 0], [500, 0], [500, 50]]}])
    assert main(["count", str(tmp_path / "a.png"), "--checkpoint", str(ck), "--zones",
                 str(outside)]) == 2
    error = capsys.readouterr().err
    assert "reaches outside the 160x120 image" in error and error.count("\n") == 1


def test_video_zone_counts_equal_per_frame_image_counts(tmp_path, capsys):
    from maskfocal.inference import Counter
    from maskfocal.video import count_video
    from tests.test_inference import checkpoint as make_checkpoint

    av = pytest.importorskip("av")
    ck = make_checkpoint(tmp_path, threshold=0.12)
    frames = [dots(96, 128, 6 + n, seed=n)[0] for n in range(4)]
    clip = tmp_path / "clip.mp4"
    with av.open(str(clip), "w") as container:  # lossless, so the frames read back equal
        stream = container.add_stream("libx264rgb", rate=5, options={"crf": "0"})
        stream.width, stream.height, stream.pix_fmt = 128, 96, "rgb24"
        for pixels in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    zones = load_zones(zone_file(tmp_path, [{"name": "top", "polygon": [[0, 0], [128, 0],
                                                                        [128, 48], [0, 48]]}]))
    counter = Counter.from_checkpoint(ck, device="cpu")
    summary = count_video(clip, counter, every=1, csv_path=tmp_path / "c.csv", zones=zones,
                          plot_path=tmp_path / "zones.png")
    with (tmp_path / "c.csv").open() as file:
        rows = list(csv.DictReader(file))
    decoded = [frame.to_ndarray(format="rgb24") for frame in av.open(str(clip)).decode(video=0)]
    expected = [counter(pixels, zones=zones).zones["top"] for pixels in decoded]
    assert [int(r["zone top"]) for r in rows] == expected
    assert summary.zone_peaks["top"][0] == max(expected)
    assert (tmp_path / "zones.png").stat().st_size > 1000


@pytest.mark.parametrize("document, message", [
    ({"zones": [{"name": "a", "polygon": SQUARE}], "grund": {"pixels_per_metre": 10}},
     "unknown key 'grund'; the keys here are zones, ground, lines"),
    ({"zones": [{"name": "a", "polygon": SQUARE, "colour": "red"}]},
     "zone 'a': unknown key 'colour'"),
    ({"zones": [{"name": "a", "polygon": SQUARE}], "ground": {"pixels_per_metre": 10,
                                                             "tilt": 3}},
     "ground: unknown key 'tilt'"),
    ({"zones": [{"name": "a", "polygon": [["0", 0], [40, 0], [40, 40]]}]},
     "list of \\[x, y\\] numbers"),
    ({"zones": [{"name": "a", "polygon": [[True, 0], [40, 0], [40, 40]]}]},
     "list of \\[x, y\\] numbers"),
    ({"zones": [{"name": "a", "polygon": SQUARE}],
      "ground": {"image": [["0", 0], [1, 0], [1, 1], [0, 1]],
                 "metres": [[0, 0], [1, 0], [1, 1], [0, 1]]}}, "four \\[x, y\\]"),
    ({"lines": [{"name": "gate", "points": [[0, 0], [10, 0]], "in": "left"}]},
     "at least one zone"),
])
def test_unknown_keys_and_strings_for_numbers_are_errors(tmp_path, document, message):
    """Issue 53, 5: a misspelt key was ignored (no density, exit 0), "0" was a number."""
    path = tmp_path / "zones.json"
    path.write_text(json.dumps(document))
    with pytest.raises(MaskfocalError, match=message) as error:
        load_zones(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_a_file_with_zones_and_lines_serves_the_zones(tmp_path):
    path = tmp_path / "zones.json"
    path.write_text(json.dumps({"zones": [{"name": "a", "polygon": SQUARE}],
                                "lines": [{"name": "gate", "points": [[0, 0], [9, 0]],
                                           "in": "left"}]}))
    assert [zone.name for zone in load_zones(path).zones] == ["a"]


def test_a_zone_in_the_top_left_corner_leaves_the_total_count_readable():
    """Issue 53, 6: a zone's label at the top-left covered the total count."""
    from maskfocal.inference.counter import CountResult
    from maskfocal.visualize import count_label, draw_overlay
    from maskfocal.zones import zones_from_dict

    pixels = np.full((300, 400, 3), 90, np.uint8)
    zones = zones_from_dict({"zones": [{"name": "corner zone with a long name",
                                        "polygon": [[0, 0], [200, 0], [200, 150], [0, 150]]}]},
                            "zones", None)
    none = {"count": 7, "points": np.zeros((0, 2)), "scores": np.zeros(0), "boxes": None}
    result = CountResult(**none, zones={zones.zones[0].name: 7})
    plain = np.asarray(draw_overlay(pixels, CountResult(**none)))
    zoned = np.asarray(draw_overlay(pixels, result, zones=zones))
    left, top, right, bottom = (round(v) for v in count_label(
        Image.fromarray(pixels), "7 heads", draw=False))
    assert np.array_equal(zoned[top:bottom, left:right], plain[top:bottom, left:right])
    below = zoned[bottom + 2:bottom + 40, 4:200]  # the zone's label moved just below it
    assert (below == 0).all(axis=2).any()  # its black backing is there
