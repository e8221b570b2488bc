#!/usr/bin/env python3
"""Make the capacity board's outline of China: marketplace/reference/china_provinces.geojson.

Run once, by hand, when the source changes; the output is committed (the pages never fetch maps):

    npm pack china-geojson@1.0.0          # antvis/china-geojson, MIT (package.json "licenses")
    tar xzf china-geojson-1.0.0.tgz
    python3 bin/simplify_china_geojson.py package/src/geojson/china.json

Each ring is simplified with Douglas–Peucker (tolerance ``TOLERANCE`` degrees, about 3 km: well
under a pixel at the board's scale) and its coordinates rounded to ``PLACES`` decimals; rings left
with fewer than four points are dropped. Properties kept: ``name`` (Chinese), ``adcode`` (the
province's two-digit GB/T 2260 prefix) and ``inset``: true for the 南海诸岛 (South China Sea
islands) feature, which the source already draws as an inset box east of Taiwan and which
``marketplace/web/map.py`` moves into the map's corner.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TOLERANCE = 0.03
PLACES = 2
OUT = Path(__file__).resolve().parent.parent / "marketplace" / "reference" / "china_provinces.geojson"
SOURCE = "china-geojson 1.0.0 (npm; github.com/antvis/china-geojson), src/geojson/china.json, MIT licence"
INSET_NAME = "南海诸岛"


def _distance(p, a, b) -> float:
    """Distance of ``p`` from the segment ``a``–``b`` (planar, in degrees)."""
    (px, py), (ax, ay), (bx, by) = p, a, b
    dx, dy = bx - ax, by - ay
    if dx == dy == 0:
        return ((px - ax) ** 2 + (py - ay) ** 2) ** 0.5
    t = max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)))
    return ((px - ax - t * dx) ** 2 + (py - ay - t * dy) ** 2) ** 0.5


def douglas_peucker(points: list, tolerance: float) -> list:
    """The points of ``points`` that Douglas–Peucker keeps (iterative, so deep rings cannot overflow)."""
    if len(points) < 3:
        return list(points)
    keep = [False] * len(points)
    keep[0] = keep[-1] = True
    stack = [(0, len(points) - 1)]
    while stack:
        first, last = stack.pop()
        worst, index = 0.0, None
        for i in range(first + 1, last):
            d = _distance(points[i], points[first], points[last])
            if d > worst:
                worst, index = d, i
        if index is not None and worst > tolerance:
            keep[index] = True
            stack += [(first, index), (index, last)]
    return [p for p, kept in zip(points, keep, strict=True) if kept]


def _ring(ring: list) -> list | None:
    simple = douglas_peucker(ring, TOLERANCE)
    rounded = []
    for x, y in simple:
        point = [round(x, PLACES), round(y, PLACES)]
        if not rounded or rounded[-1] != point:
            rounded.append(point)
    if rounded[0] != rounded[-1]:
        rounded.append(rounded[0])
    return rounded if len(rounded) >= 4 else None


def _lines(ring: list) -> list | None:
    """An open line (the inset's dashes) simplified and rounded; None when nothing is left."""
    simple = [[round(x, PLACES), round(y, PLACES)] for x, y in douglas_peucker(ring, TOLERANCE / 3)]
    return simple if len(simple) >= 2 else None


def simplify(source: dict) -> dict:
    features = []
    for feature in source["features"]:
        properties, geometry = feature["properties"], feature["geometry"]
        polygons = geometry["coordinates"] if geometry["type"] == "MultiPolygon" else [geometry["coordinates"]]
        inset = properties["name"] == INSET_NAME
        simplified = []
        for polygon in polygons:
            rings = [r for r in ((_lines if inset else _ring)(ring) for ring in polygon) if r]
            if rings:
                simplified.append(rings)
        adcode = str(properties.get("id") or feature.get("id") or "")[:2]
        features.append(
            {
                "type": "Feature",
                "properties": {"name": properties["name"], "adcode": adcode, "inset": inset},
                "geometry": {"type": "MultiPolygon", "coordinates": simplified},
            }
        )
    return {"type": "FeatureCollection", "source": SOURCE, "features": features}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as handle:
        result = simplify(json.load(handle))
    OUT.write_text(json.dumps(result, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    points = sum(len(r) for f in result["features"] for p in f["geometry"]["coordinates"] for r in p)
    print(f"{OUT}: {len(result['features'])} features, {points} points, {OUT.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
