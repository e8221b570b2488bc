"""The capacity board's map: China's provinces and the regions, drawn server-side as SVG.

- Outline: ``marketplace/reference/china_provinces.geojson`` (simplified from the MIT-licensed
  ``china-geojson`` npm package by ``bin/simplify_china_geojson.py``; see docs/web.md). The South
  China Sea islands (南海诸岛), which the source draws as an inset, are drawn as an inset in the
  map's bottom-right corner, boxed, as Chinese maps do.
- Projection: Albers equal-area conic, standard parallels 25°N and 47°N, central meridian 105°E
  (the usual one for maps of China), on the sphere; provinces and regions use the same one.
- Labels: each region has a numbered badge (its row number in the table, which is the legend).
  Badges are placed greedily (:func:`place_labels`): on the region if it is alone, else at the
  nearest free spot around it with a leader line; a badge never overlaps another badge or another
  region's circle and never leaves the viewBox. Two layers are computed: ``wide`` for a map drawn
  about 560–760 px wide, ``narrow`` with bigger badges for a phone (board.css shows one of them),
  so the numbers are at least 11 CSS px on a 390 px phone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from django.utils.functional import Promise
from django.utils.translation import pgettext_lazy

from marketplace.selectors.dashboards import BoardRegion
from marketplace.web.formatting import latency_class_name as latency_class_name_of
from marketplace.web.formatting import local_name
from matching.latency import LatencyClass

GEOJSON = Path(__file__).resolve().parent.parent / "reference" / "china_provinces.geojson"

#: Albers equal-area conic parameters (degrees).
PARALLEL_1, PARALLEL_2, CENTRAL_MERIDIAN, ORIGIN_LATITUDE = 25.0, 47.0, 105.0, 0.0
WIDTH = 640.0
MARGIN = 6.0
#: The inset's size relative to the mainland's scale.
INSET_SCALE = 0.55
MIN_RADIUS, MAX_RADIUS = 4.0, 26.0
EMPTY_RADIUS = 3.0

#: Badge text size in SVG user units, by layer, and the map width (CSS px) each layer is shown at
#: or above; board.css switches layers at the same width.
LABEL_FONT = {"wide": 13.0, "narrow": 22.0}
#: The narrowest the map is drawn: a 390 px phone less page and card padding (board.css).
PHONE_MAP_WIDTH = 340.0
#: The narrowest the map is drawn with the wide layer (board.css shows it from a 760 px viewport).
WIDE_MAP_WIDTH = 690.0


def _albers_constants() -> tuple[float, float, float]:
    phi1, phi2, phi0 = (math.radians(v) for v in (PARALLEL_1, PARALLEL_2, ORIGIN_LATITUDE))
    n = (math.sin(phi1) + math.sin(phi2)) / 2
    c = math.cos(phi1) ** 2 + 2 * n * math.sin(phi1)
    rho0 = math.sqrt(c - 2 * n * math.sin(phi0)) / n
    return n, c, rho0


_N, _C, _RHO0 = _albers_constants()


def albers(lon: float, lat: float) -> tuple[float, float]:
    """Albers equal-area conic of (lon, lat) on the unit sphere: x east, y north."""
    rho = math.sqrt(_C - 2 * _N * math.sin(math.radians(lat))) / _N
    theta = _N * math.radians(lon - CENTRAL_MERIDIAN)
    return rho * math.sin(theta), _RHO0 - rho * math.cos(theta)


@dataclass(frozen=True)
class Frame:
    """Maps Albers coordinates onto the SVG's user units (x right, y down)."""

    min_x: float
    max_y: float
    scale: float
    width: float
    height: float

    def to_svg(self, lon: float, lat: float) -> tuple[float, float]:
        x, y = albers(lon, lat)
        return MARGIN + (x - self.min_x) * self.scale, MARGIN + (self.max_y - y) * self.scale


@cache
def _features() -> list[dict]:
    with GEOJSON.open(encoding="utf-8") as handle:
        return json.load(handle)["features"]


def _rings(feature: dict) -> Iterable[list[list[float]]]:
    for polygon in feature["geometry"]["coordinates"]:
        yield from polygon


@cache
def frame() -> Frame:
    """The mainland (and Taiwan, Hainan) fitted to ``WIDTH``; the height follows."""
    points = [
        albers(lon, lat) for f in _features() if not f["properties"]["inset"] for r in _rings(f) for lon, lat in r
    ]
    min_x, max_x = min(p[0] for p in points), max(p[0] for p in points)
    min_y, max_y = min(p[1] for p in points), max(p[1] for p in points)
    scale = (WIDTH - 2 * MARGIN) / (max_x - min_x)
    height = round((max_y - min_y) * scale + 2 * MARGIN, 1)
    return Frame(min_x=min_x, max_y=max_y, scale=scale, width=WIDTH, height=height)


def _d(points: Sequence[tuple[float, float]], *, closed: bool) -> str:
    out: list[str] = []
    for x, y in points:
        cell = f"{x:.1f},{y:.1f}"
        if not out or out[-1] != cell:
            out.append(cell)
    return "M" + "L".join(out) + ("Z" if closed else "")


@dataclass(frozen=True)
class Province:
    name: str
    d: str


@dataclass(frozen=True)
class Inset:
    """The South China Sea islands, boxed in the bottom-right corner."""

    d: str
    x: float
    y: float
    width: float
    height: float


@cache
def provinces() -> tuple[Province, ...]:
    """Each province's SVG path (``name`` in Chinese, for the tooltip)."""
    f = frame()
    out = []
    for feature in _features():
        if feature["properties"]["inset"]:
            continue
        d = "".join(_d([f.to_svg(lon, lat) for lon, lat in ring], closed=True) for ring in _rings(feature))
        out.append(Province(name=feature["properties"]["name"], d=d))
    return tuple(out)


@cache
def inset() -> Inset | None:
    """The inset's islands and dashes, scaled by ``INSET_SCALE`` into the bottom-right corner."""
    f = frame()
    features = [feature for feature in _features() if feature["properties"]["inset"]]
    if not features:
        return None
    # The inset is a separate small map: plate carrée at its own latitude, upright in its box.
    squash = math.cos(math.radians(15.0))
    unit = math.radians(1.0) * f.scale * INSET_SCALE  # SVG units per degree of latitude
    rings = [[(lon * squash, lat) for lon, lat in ring] for ring in _rings(features[0])]
    xs = [x for ring in rings for x, _ in ring]
    ys = [y for ring in rings for _, y in ring]
    width, height = (max(xs) - min(xs)) * unit, (max(ys) - min(ys)) * unit
    left, top = f.width - MARGIN - width, f.height - MARGIN - height

    def place(x: float, y: float) -> tuple[float, float]:
        return left + (x - min(xs)) * unit, top + (max(ys) - y) * unit

    d = "".join(_d([place(x, y) for x, y in ring], closed=False) for ring in rings)
    return Inset(d=d, x=round(left, 1), y=round(top, 1), width=round(width, 1), height=round(height, 1))


def project(lat: float, lon: float) -> tuple[float, float]:
    """SVG user units (x right, y down) of a point, with the provinces' projection."""
    x, y = frame().to_svg(lon, lat)
    return round(x, 1), round(y, 1)


# --- regions and their labels -------------------------------------------------------------------


@dataclass(frozen=True)
class MapPoint:
    """A region's circle: area proportional to its idle GPUs (a dot when it has none)."""

    item: BoardRegion
    number: int
    x: float
    y: float
    r: float
    is_origin: bool

    @property
    def ring(self) -> float:
        """The origin's ring, just outside its circle."""
        return round(self.r + 3, 1)

    @property
    def css_class(self) -> str:
        latency = self.item.latency_class.value if self.item.latency_class else "unknown"
        return f"lc-{latency}" + ("" if self.item.free_gpus else " empty")


def map_points(board: list[BoardRegion], *, origin_code: str) -> list[MapPoint]:
    """Circles for ``board``, numbered in its order (the table's), the largest drawn first so that
    small ones stay visible on top."""
    most = max((item.free_gpus for item in board), default=0) or 1
    points = []
    for number, item in enumerate(board, start=1):
        x, y = project(item.region.lat, item.region.lon)
        if item.free_gpus:
            r = MIN_RADIUS + (MAX_RADIUS - MIN_RADIUS) * math.sqrt(item.free_gpus / most)
        else:
            r = EMPTY_RADIUS
        points.append(
            MapPoint(item=item, number=number, x=x, y=y, r=round(r, 1), is_origin=item.region.code == origin_code)
        )
    return sorted(points, key=lambda p: -p.r)


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float

    def overlaps(self, other: Box, gap: float = 0.0) -> bool:
        return not (
            self.x + self.w + gap <= other.x
            or other.x + other.w + gap <= self.x
            or self.y + self.h + gap <= other.y
            or other.y + other.h + gap <= self.y
        )

    def meets_circle(self, cx: float, cy: float, r: float) -> bool:
        nearest_x = min(max(cx, self.x), self.x + self.w)
        nearest_y = min(max(cy, self.y), self.y + self.h)
        return (cx - nearest_x) ** 2 + (cy - nearest_y) ** 2 < r * r

    def inside(self, width: float, height: float, margin: float = 1.0) -> bool:
        return (
            self.x >= margin
            and self.y >= margin
            and self.x + self.w <= width - margin
            and self.y + self.h <= height - margin
        )

    @property
    def centre(self) -> tuple[float, float]:
        return self.x + self.w / 2, self.y + self.h / 2


@dataclass(frozen=True)
class Anchor:
    """What a label labels: a circle at (x, y) of radius r."""

    key: str
    text: str
    x: float
    y: float
    r: float


@dataclass(frozen=True)
class Label:
    key: str
    text: str
    box: Box
    #: The leader line from the circle's edge to the badge, when the badge is off the circle.
    leader: tuple[float, float, float, float] | None

    @property
    def text_x(self) -> float:
        return round(self.box.centre[0], 1)

    @property
    def text_y(self) -> float:
        return round(self.box.centre[1], 1)


#: Directions tried around a point, in order of preference (right, left, up, down, diagonals…).
_ANGLES = [0, 180, 270, 90, 315, 225, 45, 135, 337.5, 202.5, 292.5, 247.5, 22.5, 157.5, 67.5, 112.5]


def badge_box(text: str, font: float, cx: float, cy: float) -> Box:
    """The badge of ``text`` at ``font`` size centred on (cx, cy): digits are about 0.6 em wide."""
    w, h = font * (0.62 * len(text) + 0.7), font * 1.3
    return Box(cx - w / 2, cy - h / 2, w, h)


def place_labels(anchors: Sequence[Anchor], *, font: float, width: float, height: float) -> list[Label]:
    """A badge for every anchor, in ``anchors``' order, each at the first candidate spot that lies
    in the viewBox, overlaps no badge placed before it (2 units apart) and no circle but its own:
    first centred on its own circle (when the circle is big enough to hold it), then around it
    at growing distances (with a leader line unless it nearly touches the circle). Raises
    ``ValueError`` when an anchor has no room at all."""
    placed: list[Label] = []
    for anchor in anchors:
        label = _place_one(anchor, anchors, placed, font=font, width=width, height=height)
        if label is None:
            raise ValueError(f"no room for the label of {anchor.key}")
        placed.append(label)
    return placed


def _place_one(anchor, anchors, placed, *, font, width, height) -> Label | None:
    others = [a for a in anchors if a.key != anchor.key]

    def free(box: Box) -> bool:
        return (
            box.inside(width, height)
            and not any(box.overlaps(label.box, gap=2.0) for label in placed)
            and not any(box.meets_circle(a.x, a.y, a.r + 1.5) for a in others)
        )

    on_it = badge_box(anchor.text, font, anchor.x, anchor.y)
    if 2 * anchor.r >= on_it.h and free(on_it):  # inside a big circle; a small one stays visible
        return Label(anchor.key, anchor.text, on_it, None)
    step = font * 0.5
    distance = anchor.r + font * 0.9
    while distance < width:
        for angle in _ANGLES:
            radians = math.radians(angle)
            cx, cy = anchor.x + distance * math.cos(radians), anchor.y + distance * math.sin(radians)
            box = badge_box(anchor.text, font, cx, cy)
            if box.meets_circle(anchor.x, anchor.y, anchor.r) or not free(box):
                continue
            leader = _leader(anchor, box)
            near = math.hypot(leader[2] - leader[0], leader[3] - leader[1]) < font * 0.4
            return Label(anchor.key, anchor.text, box, None if near else leader)
        distance += step
    return None


def _leader(anchor: Anchor, box: Box) -> tuple[float, float, float, float]:
    """From the circle's edge towards the badge's centre, ending at the badge's edge."""
    cx, cy = box.centre
    dx, dy = cx - anchor.x, cy - anchor.y
    length = math.hypot(dx, dy) or 1.0
    ux, uy = dx / length, dy / length
    # Where the ray from the centre leaves the box: the nearer of its vertical and horizontal sides.
    tx = (box.w / 2) / abs(ux) if ux else math.inf
    ty = (box.h / 2) / abs(uy) if uy else math.inf
    end = length - min(tx, ty)
    return (
        round(anchor.x + ux * anchor.r, 1),
        round(anchor.y + uy * anchor.r, 1),
        round(anchor.x + ux * end, 1),
        round(anchor.y + uy * end, 1),
    )


def anchors_of(points: Sequence[MapPoint]) -> list[Anchor]:
    """The labels' anchors in table order (nearest region first)."""
    return [
        Anchor(key=p.item.region.code, text=str(p.number), x=p.x, y=p.y, r=p.r)
        for p in sorted(points, key=lambda p: p.number)
    ]


def label_layers(points: Sequence[MapPoint]) -> dict[str, list[Label]]:
    """Both label layers (``wide`` and ``narrow``) for ``points``."""
    f = frame()
    anchors = anchors_of(points)
    return {
        layer: place_labels(anchors, font=font, width=f.width, height=f.height) for layer, font in LABEL_FONT.items()
    }


def board_map(board: list[BoardRegion], *, origin_code: str) -> dict:
    """Everything the board's template draws: size, provinces, inset, circles and label layers."""
    f = frame()
    points = map_points(board, origin_code=origin_code)
    return {
        "width": f.width,
        "height": f.height,
        "provinces": provinces(),
        "inset": inset(),
        "points": points,
        "labels": label_layers(points),
        "fonts": LABEL_FONT,
    }


# --- the table's names --------------------------------------------------------------------------

#: The provinces of the reference regions, as the table prints them under a region's name.
PROVINCES: dict[str, Promise] = {
    "Anhui": pgettext_lazy("province", "Anhui"),
    "Beijing": pgettext_lazy("province", "Beijing"),
    "Chongqing": pgettext_lazy("province", "Chongqing"),
    "Gansu": pgettext_lazy("province", "Gansu"),
    "Guangdong": pgettext_lazy("province", "Guangdong"),
    "Guizhou": pgettext_lazy("province", "Guizhou"),
    "Hebei": pgettext_lazy("province", "Hebei"),
    "Henan": pgettext_lazy("province", "Henan"),
    "Hubei": pgettext_lazy("province", "Hubei"),
    "Inner Mongolia": pgettext_lazy("province", "Inner Mongolia"),
    "Jiangsu": pgettext_lazy("province", "Jiangsu"),
    "Ningxia": pgettext_lazy("province", "Ningxia"),
    "Shaanxi": pgettext_lazy("province", "Shaanxi"),
    "Shanghai": pgettext_lazy("province", "Shanghai"),
    "Sichuan": pgettext_lazy("province", "Sichuan"),
    "Zhejiang": pgettext_lazy("province", "Zhejiang"),
}


def province_name(province: str) -> str:
    """A province (or "A/B/C" provinces) in the reader's language; unknown ones as they are."""
    return "/".join(str(PROVINCES.get(part, part)) for part in province.split("/"))


@dataclass(frozen=True)
class LatencyClassName:
    value: str
    name: str


def latency_class_name(latency_class: LatencyClass | None) -> LatencyClassName | None:
    """A latency class's CSS value and its name in the reader's language."""
    if latency_class is None:
        return None
    return LatencyClassName(value=latency_class.value, name=latency_class_name_of(latency_class))


@dataclass(frozen=True)
class BoardRow:
    """A table row: the region's figures, its number on the map, its province when the region's
    name does not already say it, and its latency class's name."""

    item: BoardRegion
    number: int
    province: str
    latency: LatencyClassName | None


def board_row(item: BoardRegion, number: int) -> BoardRow:
    region = item.region
    province = province_name(region.province)
    name = local_name(region)
    return BoardRow(
        item=item,
        number=number,
        province="" if province in name else province,
        latency=latency_class_name(item.latency_class),
    )
