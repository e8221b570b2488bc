"""The board's map without a database: the Albers projection, the shipped outline, and the label
placement for the real reference regions (badges never overlap, never leave the viewBox, and are
readable on a phone)."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import pytest

from marketplace.selectors.dashboards import BoardRegion
from marketplace.services.reference import reference_read
from marketplace.web import map as board_map
from matching.latency import latency_class_of

REGIONS = reference_read()["regions"]


def board(free_gpus: dict[str, int] | None = None, origin: str = "shanghai") -> list[BoardRegion]:
    """The reference regions as the board lists them from ``origin`` (nearest first)."""
    rtts = reference_read()["rtt_ms"][origin]
    rows = [
        BoardRegion(
            region=SimpleNamespace(**row),
            rtt_ms=rtts[row["code"]],
            latency_class=latency_class_of(rtts[row["code"]]),
            free_gpus=(free_gpus or {}).get(row["code"], 0),
        )
        for row in REGIONS
    ]
    return sorted(rows, key=lambda item: (item.rtt_ms, item.region.code))


def test_albers_keeps_the_central_meridian_vertical_and_parallels_curved():
    x1, y1 = board_map.albers(105, 20)
    x2, y2 = board_map.albers(105, 50)
    assert x1 == pytest.approx(0)
    assert x2 == pytest.approx(0)
    assert y2 > y1
    # A parallel is an arc around the cone's apex (north): its ends lie north of its middle.
    assert board_map.albers(80, 40)[1] > board_map.albers(105, 40)[1]
    assert board_map.albers(80, 40)[0] == pytest.approx(-board_map.albers(130, 40)[0])


def test_albers_is_equal_area():
    """Two 1°×1° cells at different latitudes: areas in the ratio of the sphere's cells."""

    def area(lon, lat):
        corners = [board_map.albers(lon + dx, lat + dy) for dx, dy in ((0, 0), (1, 0), (1, 1), (0, 1))]
        return abs(sum(a[0] * b[1] - b[0] * a[1] for a, b in zip(corners, corners[1:] + corners[:1], strict=True))) / 2

    def sphere(lat):
        return math.radians(1) * (math.sin(math.radians(lat + 1)) - math.sin(math.radians(lat)))

    assert area(90, 20) / area(120, 45) == pytest.approx(sphere(20) / sphere(45), rel=0.01)


def test_the_outline_has_every_province_and_every_region_falls_inside_the_map():
    names = {p.name for p in board_map.provinces()}
    assert {"北京", "上海", "内蒙古", "宁夏", "新疆", "西藏", "台湾", "海南", "黑龙江"} <= names
    assert len(names) >= 34
    frame = board_map.frame()
    assert frame.width == board_map.WIDTH
    assert 400 < frame.height < 600
    for row in REGIONS:
        x, y = board_map.project(row["lat"], row["lon"])
        assert 0 < x < frame.width, row["code"]
        assert 0 < y < frame.height, row["code"]
    # Shanghai is east of Chengdu and south of Beijing, as on any map.
    shanghai, chengdu, beijing = (
        board_map.project(lat, lon) for lat, lon in ((31.23, 121.47), (30.66, 104.07), (39.9, 116.41))
    )
    assert shanghai[0] > chengdu[0]
    assert shanghai[1] > beijing[1]
    inset = board_map.inset()
    assert inset is not None
    assert inset.x + inset.width <= frame.width
    assert inset.y + inset.height <= frame.height


def test_the_shipped_outline_is_small():
    assert board_map.GEOJSON.stat().st_size < 300_000


@pytest.mark.parametrize(
    "free_gpus",
    [
        {},
        {row["code"]: 8 for row in REGIONS},
        {"ningxia-zhongwei": 512, "anhui-wuhu": 256, "yrd-qingpu-wujiang-jiashan": 64, "shanghai": 8, "hangzhou": 400},
        {"inner-mongolia-horinger": 300, "inner-mongolia-ulanqab": 300, "hebei-zhangjiakou": 300, "beijing": 300},
    ],
    ids=["nothing-idle", "all-equal", "east-crowded", "north-crowded"],
)
@pytest.mark.parametrize("origin", ["shanghai", "chengdu"])
def test_labels_of_the_reference_regions_never_overlap_and_stay_in_the_view_box(free_gpus, origin):
    rows = board(free_gpus, origin)
    drawn = board_map.board_map(rows, origin_code=origin)
    width, height = drawn["width"], drawn["height"]
    points = {p.item.region.code: p for p in drawn["points"]}
    for layer, labels in drawn["labels"].items():
        assert [label.text for label in labels] == [str(n) for n in range(1, len(REGIONS) + 1)], layer
        for label in labels:
            box = label.box
            assert 0 <= box.x <= box.x + box.w <= width, (layer, label)
            assert 0 <= box.y <= box.y + box.h <= height, (layer, label)
            for code, point in points.items():
                if code != label.key:  # never over another region's circle
                    assert not box.meets_circle(point.x, point.y, point.r), (layer, label.key, code)
        for a, b in itertools.combinations(labels, 2):
            assert not a.box.overlaps(b.box), (layer, a.key, b.key)


def test_badges_are_at_least_11_px_on_a_phone_and_on_a_desktop():
    frame = board_map.frame()
    assert board_map.LABEL_FONT["narrow"] * board_map.PHONE_MAP_WIDTH / frame.width >= 11
    assert board_map.LABEL_FONT["wide"] * board_map.WIDE_MAP_WIDTH / frame.width >= 11


def test_a_badge_off_its_circle_has_a_leader_line_to_it():
    rows = board({"anhui-wuhu": 8, "yrd-qingpu-wujiang-jiashan": 8, "shanghai": 8, "hangzhou": 8, "nanjing": 8})
    labels = board_map.board_map(rows, origin_code="shanghai")["labels"]["narrow"]
    led = [label for label in labels if label.leader]
    assert led, "the crowded Yangtze delta needs leader lines"
    for label in led:
        _x1, _y1, x2, y2 = label.leader
        box = label.box
        assert box.x - 0.2 <= x2 <= box.x + box.w + 0.2
        assert box.y - 0.2 <= y2 <= box.y + box.h + 0.2
