"""JSONPath as Step Functions uses it: selection (InputPath, OutputPath, ItemsPath, ``.$``
values) and ResultPath assignment, on jsonpath-ng."""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from typing import Any

from jsonpath_ng import Child, Descendants, Fields, Index, Root, Slice, This
from jsonpath_ng.ext import parse

from quetzal_deploy.local.errors import runtime_error

DEFINITE = (Root, This, Child, Fields, Index)


@lru_cache(maxsize=1024)
def compile_path(path: str):
    """The parsed JSONPath; ValueError when ``path`` is not one."""
    if not isinstance(path, str) or not path.startswith("$"):
        raise ValueError(f"{path!r} is not a JSONPath (it must start with '$')")
    try:
        return parse(path)
    except Exception as ex:  # the ply-based parser raises several unrelated types
        raise ValueError(f"{path!r} is not a valid JSONPath: {ex}") from ex


def check_path(path: str) -> None:
    """ValueError when ``path`` is not a JSONPath (``$$...`` context paths included)."""
    compile_path(path[1:] if isinstance(path, str) and path.startswith("$$") else path)


def is_definite(expr) -> bool:
    """True when the path names at most one value (no wildcard, slice, filter or '..')."""
    if isinstance(expr, Child):
        return is_definite(expr.left) and is_definite(expr.right)
    if isinstance(expr, Fields):
        return len(expr.fields) == 1 and expr.fields[0] != "*"
    if isinstance(expr, Index):
        return len(expr.indices) == 1
    return isinstance(expr, DEFINITE) and not isinstance(expr, (Slice, Descendants))


def select(data: Any, path: str | None, context: dict | None = None) -> Any:
    """The value at ``path`` (``$$...`` reads the context object); None path gives ``{}``."""
    if path is None:
        return {}
    if path.startswith("$$"):
        return select(context or {}, path[1:])
    expr = compile_path(path)
    if path == "$":
        return data
    try:
        found = [match.value for match in expr.find(data)]
    except (TypeError, ValueError, KeyError, AttributeError) as ex:  # a filter comparing text to a number
        raise runtime_error(f"Invalid path '{path}' on {preview(data)}: {ex}") from ex
    if not is_definite(expr):
        return found
    if not found:
        raise runtime_error(f"Invalid path '{path}': no value at that path in {preview(data)}")
    return found[0]


def assign(data: Any, path: str | None, value: Any) -> Any:
    """ResultPath: ``data`` with ``value`` placed at ``path`` (``$`` replaces, None discards)."""
    if path is None:
        return data
    if path == "$":
        return value
    expr = compile_path(path)
    if not is_definite(expr):
        raise runtime_error(f"ResultPath '{path}' must name a single place (no wildcard or filter)")
    target = copy.deepcopy(data)
    if not isinstance(target, dict):
        raise runtime_error(f"ResultPath '{path}' cannot be applied to {preview(data)}: not an object")
    try:
        return expr.update_or_create(target, value)
    except (TypeError, KeyError, IndexError, AttributeError) as ex:
        raise runtime_error(f"ResultPath '{path}' cannot be applied to {preview(data)}: {ex}") from ex


def preview(data: Any, limit: int = 200) -> str:
    """A short JSON rendering of ``data`` for error messages."""
    text = json.dumps(data, default=str)
    return text if len(text) <= limit else text[:limit] + "..."
