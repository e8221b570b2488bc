"""The capacity board's map: regions drawn as circles on an SVG of China from their lat/lon.

An equirectangular projection scaled by cos(latitude) at the map's centre: plain, and faithful
enough at this scale to tell east from west. The outline is a coarse hand-drawn polygon (about
a hundred km of error), there to orient the eye, not to survey borders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from marketplace.selectors.dashboards import BoardRegion

LON_MIN, LON_MAX, LAT_MIN, LAT_MAX = 97.0, 127.0, 18.0, 45.0
WIDTH = 640.0
_KX = math.cos(math.radians((LAT_MIN + LAT_MAX) / 2))
_SCALE = WIDTH / ((LON_MAX - LON_MIN) * _KX)
HEIGHT = round((LAT_MAX - LAT_MIN) * _SCALE, 1)
MIN_RADIUS, MAX_RADIUS = 4.0, 30.0

#: (lon, lat) of mainland China's outline, coarse, clockwise from the far west.
OUTLINE = [
    (73.5, 39.5), (75.0, 37.0), (78.0, 35.5), (79.0, 32.5), (78.7, 31.0), (81.0, 30.2), (85.0, 28.3),
    (88.0, 27.9), (89.0, 28.1), (92.0, 26.9), (95.5, 28.3), (97.5, 28.2), (98.7, 25.5), (97.6, 23.9),
    (99.5, 22.1), (101.6, 21.2), (102.2, 22.4), (103.5, 22.7), (105.5, 23.3), (106.7, 22.0), (108.0, 21.6),
    (109.7, 21.5), (110.4, 20.3), (111.8, 21.6), (113.5, 22.2), (114.3, 22.5), (116.5, 22.9), (118.5, 24.5),
    (119.6, 25.8), (120.5, 27.2), (121.9, 29.9), (121.9, 31.0), (120.8, 32.6), (119.3, 34.8), (120.3, 36.0),
    (122.5, 36.9), (121.0, 37.8), (119.0, 37.2), (117.9, 38.6), (118.8, 39.2), (121.0, 40.8), (121.3, 39.0),
    (122.2, 40.4), (124.3, 39.9), (126.0, 41.2), (128.1, 41.9), (129.7, 42.4), (130.6, 42.4), (131.2, 43.4),
    (131.3, 44.9), (133.1, 45.1), (134.7, 48.3), (132.5, 47.7), (130.9, 47.9), (127.5, 49.8), (125.9, 52.5),
    (123.5, 53.5), (120.9, 53.3), (120.0, 52.0), (117.8, 49.5), (116.7, 49.8), (115.5, 48.1), (119.7, 47.1),
    (117.4, 46.6), (113.6, 44.8), (111.8, 43.6), (106.3, 42.2), (101.8, 42.5), (96.4, 42.7), (95.3, 44.3),
    (90.9, 45.3), (90.9, 46.3), (90.1, 47.9), (87.8, 49.2), (85.5, 47.0), (82.5, 47.0), (82.8, 45.4),
    (80.2, 45.0), (80.3, 43.0), (80.2, 42.2), (76.5, 40.4),
]  # fmt: skip
HAINAN = [(108.6, 19.2), (110.0, 20.1), (111.0, 19.6), (110.0, 18.3), (109.0, 18.4)]


def project(lat: float, lon: float) -> tuple[float, float]:
    """SVG user units (x right, y down) of a point, within ``0..WIDTH`` × ``0..HEIGHT`` on the map."""
    return round((lon - LON_MIN) * _KX * _SCALE, 1), round((LAT_MAX - lat) * _SCALE, 1)


def _path(points: list[tuple[float, float]]) -> str:
    coords = [project(lat, lon) for lon, lat in points]
    return "M" + " L".join(f"{x},{y}" for x, y in coords) + " Z"


OUTLINE_PATH = _path(OUTLINE) + " " + _path(HAINAN)


@dataclass(frozen=True)
class MapPoint:
    """A region's circle: area proportional to its idle GPUs (a dot when it has none)."""

    item: BoardRegion
    x: float
    y: float
    r: float
    is_origin: bool

    @property
    def css_class(self) -> str:
        latency = self.item.latency_class.value if self.item.latency_class else "unknown"
        return f"lc-{latency}" + ("" if self.item.free_gpus else " empty")


def map_points(board: list[BoardRegion], *, origin_code: str) -> list[MapPoint]:
    """Circles for ``board``, the largest drawn first so that small ones stay visible on top."""
    most = max((item.free_gpus for item in board), default=0) or 1
    points = []
    for item in board:
        x, y = project(item.region.lat, item.region.lon)
        r = MIN_RADIUS + (MAX_RADIUS - MIN_RADIUS) * math.sqrt(item.free_gpus / most) if item.free_gpus else 2.5
        points.append(MapPoint(item=item, x=x, y=y, r=round(r, 1), is_origin=item.region.code == origin_code))
    return sorted(points, key=lambda p: -p.r)
