"""A scenario's GeoJSON layers and OD matrices, made small enough to draw in a page.

A layer is reprojected to WGS 84 longitudes/latitudes from the CRS it declares (pyproj), then
kept under its share of ``VERTEX_BUDGET``: every k-th vertex of long lines (their ends kept),
then one feature in m if that is not enough. The layer says what was dropped, and the report
shows it. Files over ``MAX_LAYER_MB`` are listed but not read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from quetzal_deploy.contract.layers import FRONT_END_CRS

VERTEX_BUDGET = 300_000  # vertices drawn over all layers of a report (about 18 bytes each)
INPUT_SHARE = 0.25  # of the budget, for the inputs drawn faintly behind the outputs
MIN_LAYER_VERTICES = 2_000
MAX_LAYERS = 40
MAX_LAYER_MB = 400
MATRIX_SIDE = 150  # zones of an OD matrix drawn as a heat map
DIGITS = 5  # decimals of a degree kept (about a metre)

Line = list[tuple[float, float]]


@dataclass
class Layer:
    """A layer ready to draw: lines and points in longitude/latitude, and what was left out."""

    name: str
    lines: list[Line] = field(default_factory=list)
    points: Line = field(default_factory=list)
    features: int = 0
    drawn_features: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def vertices(self) -> int:
        return sum(len(line) for line in self.lines) + len(self.points)


@dataclass
class Matrix:
    """An OD matrix (rows: origins, columns: destinations), cut to ``MATRIX_SIDE`` zones a side."""

    name: str
    rows: list[str]
    columns: list[str]
    values: list[list[float | None]]
    note: str = ""


def geometry_parts(geometry: dict | None) -> Iterator[tuple[str, Line]]:
    """("line", coordinates) and ("point", [coordinate]) pieces of any GeoJSON geometry."""
    if not isinstance(geometry, dict):
        return
    kind, coordinates = geometry.get("type"), geometry.get("coordinates")
    if kind == "GeometryCollection":
        for member in geometry.get("geometries") or []:
            yield from geometry_parts(member)
    elif kind == "Point":
        yield "point", [coordinates]
    elif kind == "MultiPoint":
        yield "point", list(coordinates)
    elif kind == "LineString":
        yield "line", list(coordinates)
    elif kind in ("MultiLineString", "Polygon"):
        yield from (("line", list(line)) for line in coordinates)
    elif kind == "MultiPolygon":
        yield from (("line", list(ring)) for polygon in coordinates for ring in polygon)


def thinned(line: Line, step: int) -> Line:
    """Every ``step``-th vertex of a line, its first and last always kept."""
    if step <= 1 or len(line) <= 2:
        return line
    kept = line[::step]
    return kept if kept[-1] == line[-1] else [*kept, line[-1]]


def transformer_for(crs: str | None):
    """A function (xs, ys) -> (lons, lats) from ``crs``; None when it already is WGS 84."""
    if crs is None or crs in FRONT_END_CRS:
        return None
    from pyproj import CRS, Transformer  # loaded only when a layer needs it
    from pyproj.exceptions import CRSError

    try:
        source = CRS.from_user_input(crs)
    except CRSError as ex:
        raise ValueError(f"its CRS {crs!r} is unknown to PROJ ({ex})") from ex
    if source.equals(CRS.from_epsg(4326), ignore_axis_order=True):
        return None
    return Transformer.from_crs(source, "EPSG:4326", always_xy=True).transform


def project(parts: list[tuple[str, Line]], crs: str | None) -> list[tuple[str, Line]]:
    """The parts in rounded longitude/latitude, reprojected from ``crs`` in one call."""
    transform = transformer_for(crs)
    if transform is None:
        return [(kind, [(round(p[0], DIGITS), round(p[1], DIGITS)) for p in part]) for kind, part in parts]
    xs = [p[0] for _, part in parts for p in part]
    ys = [p[1] for _, part in parts for p in part]
    lons, lats = transform(xs, ys)
    projected, at = [], 0
    for kind, part in parts:
        projected.append((kind, [(round(lons[i], DIGITS), round(lats[i], DIGITS))
                                 for i in range(at, at + len(part))]))
        at += len(part)
    return projected


def read_layer(path: Path, name: str, budget: int) -> Layer:
    """A GeoJSON file as a drawable layer of at most about ``budget`` vertices."""
    layer = Layer(name)
    megabytes = path.stat().st_size / 2**20
    if megabytes > MAX_LAYER_MB:
        layer.notes.append(f"not drawn: {megabytes:.0f} MB is over the report's {MAX_LAYER_MB} MB a layer")
        return layer
    try:
        document = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as ex:
        layer.notes.append(f"not drawn: not JSON ({ex})")
        return layer
    features = document.get("features") if isinstance(document, dict) else None
    if not isinstance(features, list):
        layer.notes.append("not drawn: not a GeoJSON FeatureCollection")
        return layer
    layer.features = len(features)
    crs = (document.get("crs") or {}).get("properties", {}).get("name") \
        if isinstance(document.get("crs"), dict) else None
    per_feature = [list(geometry_parts(f.get("geometry"))) if isinstance(f, dict) else [] for f in features]
    total = sum(len(part) for parts in per_feature for _, part in parts)
    step = 1
    if total > budget:  # thin long lines first, then sample features
        long_vertices = sum(len(part) for parts in per_feature for kind, part in parts
                            if kind == "line" and len(part) > 2)
        short = total - long_vertices
        step = math.ceil(long_vertices / max(budget - short, 1)) if budget > short else 1
        per_feature = [[(kind, thinned(part, step) if kind == "line" else part) for kind, part in parts]
                       for parts in per_feature]
        total = sum(len(part) for parts in per_feature for _, part in parts)
    keep_every = math.ceil(total / budget) if total > budget else 1
    kept = [parts for index, parts in enumerate(per_feature) if index % keep_every == 0]
    flat = [part for parts in kept for part in parts if part[1]]
    try:
        flat = project(flat, crs)
    except (ValueError, TypeError, IndexError) as ex:
        layer.notes.append(f"not drawn: {ex}")
        return layer
    if crs is None and any(abs(x) > 180 or abs(y) > 90 for _, part in flat for x, y in part):
        layer.notes.append("not drawn: its coordinates are not longitudes/latitudes and it declares no crs")
        return layer
    if crs is not None and transformer_for(crs) is not None:
        layer.notes.append(f"reprojected from {crs} to WGS 84")
    layer.lines = [part for kind, part in flat if kind == "line"]
    layer.points = [point for kind, part in flat if kind == "point" for point in part]
    layer.drawn_features = len(kept)
    if step > 1 or keep_every > 1:
        what = [f"1 vertex in {step} of long lines"] if step > 1 else []
        what += [f"1 feature in {keep_every}"] if keep_every > 1 else []
        layer.notes.append(f"simplified for the picture: {' and '.join(what)} drawn "
                           f"({layer.drawn_features:,} of {layer.features:,} features)")
    return layer


def geojson_files(folder: Path | None) -> list[Path]:
    return sorted(p for p in folder.rglob("*.geojson") if p.is_file()) if folder and folder.is_dir() else []


def read_layers(outputs: Path | None, inputs: Path | None) -> tuple[list[Layer], list[Layer], list[str]]:
    """(output layers, input layers, notes): the budget shared out, at most ``MAX_LAYERS`` drawn."""
    notes = []
    found = {"outputs": geojson_files(outputs), "inputs": geojson_files(inputs)}
    drawn = {}
    for kind, share in (("outputs", 1 - INPUT_SHARE), ("inputs", INPUT_SHARE)):
        paths = found[kind]
        if len(paths) > MAX_LAYERS:
            notes.append(f"{len(paths) - MAX_LAYERS} of the {len(paths)} {kind} layers are not drawn "
                         f"(at most {MAX_LAYERS})")
            paths = paths[:MAX_LAYERS]
        budget = max(MIN_LAYER_VERTICES, int(VERTEX_BUDGET * share / max(len(paths), 1)))
        root = outputs if kind == "outputs" else inputs
        drawn[kind] = [read_layer(path, path.relative_to(root).as_posix(), budget) for path in paths]
    return drawn["outputs"], drawn["inputs"], notes


def matrix_from(value) -> tuple[list[str], list[str], list[list]] | None:
    """(rows, columns, values) of the shapes pandas writes (split, or {column: {row: value}}) or a
    list of rows; None when ``value`` is none of them."""
    if isinstance(value, dict) and {"columns", "data"} <= value.keys():
        rows = value.get("index") or list(range(len(value["data"])))
        return [str(r) for r in rows], [str(c) for c in value["columns"]], value["data"]
    if isinstance(value, list) and value and all(isinstance(row, list) for row in value):
        width = max(len(row) for row in value)
        return [str(i) for i in range(len(value))], [str(j) for j in range(width)], value
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        if not all(isinstance(x, (int, float, type(None))) for v in value.values() for x in v.values()):
            return None
        columns = list(value)
        rows = list(dict.fromkeys(key for column in value.values() for key in column))
        return rows, columns, [[value[c].get(r) for c in columns] for r in rows]
    return None


def number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def read_matrices(outputs: Path | None) -> list[Matrix]:
    """The ``.json`` beside a same-name output ``.geojson`` (the front end's OD matrices); a file
    of several named matrices gives one each."""
    matrices = []
    for layer in geojson_files(outputs):
        path = layer.with_suffix(".json")
        if not path.is_file():
            continue
        name = path.relative_to(outputs).as_posix()
        try:
            document = json.loads(path.read_bytes())
        except (ValueError, UnicodeDecodeError):
            continue
        found = matrix_from(document)
        named = [(name, found)] if found else [
            (f"{name}: {key}", matrix_from(value)) for key, value in document.items()
        ] if isinstance(document, dict) else []
        for title, shape in named:
            if shape is None:
                continue
            rows, columns, values = shape
            note = ""
            if len(rows) > MATRIX_SIDE or len(columns) > MATRIX_SIDE:
                note = (f"the first {MATRIX_SIDE} of {len(rows)} x {len(columns)} zones a side are drawn")
            cells = [[number(x) for x in row[:MATRIX_SIDE]] for row in values[:MATRIX_SIDE]]
            matrices.append(Matrix(title, rows[:MATRIX_SIDE], columns[:MATRIX_SIDE], cells, note))
    return matrices
