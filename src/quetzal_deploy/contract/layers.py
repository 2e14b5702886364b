"""Output layers the front end can load: a ``.geojson`` needs a CRS it reads.

The front end refuses a layer whose ``crs.properties.name`` is not one of ``FRONT_END_CRS``
(a GeoJSON without ``crs`` included). Only the start of a big file is read (and its end when
``features`` comes first), so a check after a run costs two small reads per layer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path

CRS84 = {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}}
FRONT_END_CRS = ("urn:ogc:def:crs:OGC:1.3:CRS84", "EPSG:4326", "urn:ogc:def:crs:EPSG:4326")
EDGE_BYTES = 64 * 1024
CRS_MEMBER = re.compile(r'"crs"\s*:\s*')
WHITESPACE = re.compile(r"\s*")
Reader = Callable[[int, int], bytes]  # (first byte, last byte) -> bytes


class Unreadable(ValueError):
    """The file is not a GeoJSON object."""


def crs_name(value: object) -> str | None:
    properties = value.get("properties") if isinstance(value, dict) else None
    name = properties.get("name") if isinstance(properties, dict) else None
    return name if isinstance(name, str) else None


def scan_head(text: str) -> tuple[bool, str | None]:
    """Read the top-level members in order: (found the answer, CRS name) before ``features``."""
    decoder, at = json.JSONDecoder(), WHITESPACE.match(text, 0).end()
    if not text.startswith("{", at):
        raise Unreadable("not a JSON object")
    at += 1
    try:
        while True:
            at = WHITESPACE.match(text, at).end()
            if text.startswith("}", at):
                return True, None
            key, at = decoder.raw_decode(text, at)
            at = WHITESPACE.match(text, at).end() + 1  # the ':'
            at = WHITESPACE.match(text, at).end()
            if key == "features":
                return False, None
            value, at = decoder.raw_decode(text, at)
            if key == "crs":
                return True, crs_name(value)
            at = WHITESPACE.match(text, at).end() + 1  # ',' or '}'
    except (ValueError, IndexError):  # the head ends inside a member
        return False, None


def scan_tail(text: str) -> str | None:
    """The CRS name of the last ``"crs"`` member in the end of the file."""
    found = list(CRS_MEMBER.finditer(text))
    if not found:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(text, found[-1].end())
    except ValueError:
        return None
    return crs_name(value)


def layer_crs(size: int, read: Reader) -> str | None:
    """The CRS name a GeoJSON of ``size`` bytes declares (None: none), reading little of it."""
    if size == 0:
        raise Unreadable("empty file")
    if size <= 2 * EDGE_BYTES:
        try:
            document = json.loads(read(0, size - 1))
        except ValueError as ex:
            raise Unreadable(str(ex)) from ex
        if not isinstance(document, dict):
            raise Unreadable("not a JSON object")
        return crs_name(document.get("crs"))
    decided, name = scan_head(read(0, EDGE_BYTES - 1).decode("utf-8", errors="replace"))
    if decided:
        return name
    return scan_tail(read(size - EDGE_BYTES, size - 1).decode("utf-8", errors="replace"))


def crs_warnings(layers: Iterable[tuple[str, int, Reader]]) -> list[str]:
    """One warning per layer (shown name, size, reader) the front end would refuse."""
    warnings = []
    for shown, size, read in layers:
        try:
            name = layer_crs(size, read)
        except Unreadable as ex:
            warnings.append(f"WARNING: {shown} is not a GeoJSON object ({ex}): the front end cannot load it.")
            continue
        if name not in FRONT_END_CRS:
            found = f"its CRS is {name!r}" if name else "it has no crs member"
            warnings.append(
                f"WARNING: {shown}: {found}; the front end refuses the layer. Write it in WGS 84 "
                f"with \"crs\": {json.dumps(CRS84)} (or EPSG:4326).")
    return warnings


def file_reader(path: Path) -> Reader:
    def read(first: int, last: int) -> bytes:
        with path.open("rb") as file:
            file.seek(first)
            return file.read(last - first + 1)

    return read


def folder_layers(outputs: Path, shown_as: str) -> list[tuple[str, int, Reader]]:
    """The ``.geojson`` files under a local ``outputs/`` folder."""
    paths = sorted(outputs.rglob("*.geojson")) if outputs.is_dir() else []
    return [(f"{shown_as}{p.relative_to(outputs).as_posix()}", p.stat().st_size, file_reader(p))
            for p in paths if p.is_file()]


def bucket_layers(s3, bucket: str, prefix: str) -> list[tuple[str, int, Reader]]:
    """The ``.geojson`` objects under ``prefix`` (a scenario's ``outputs/``) in the bucket."""
    def reader(key: str) -> Reader:
        def read(first: int, last: int) -> bytes:
            return s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={first}-{last}")["Body"].read()
        return read

    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [(f"s3://{bucket}/{item['Key']}", item["Size"], reader(item["Key"]))
            for page in pages for item in page.get("Contents", []) if item["Key"].endswith(".geojson")]
