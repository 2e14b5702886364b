"""JSONPath as Step Functions uses it: selection (InputPath, OutputPath, ItemsPath, ``.$``
values) and ResultPath assignment, on jsonpath-ng.

jsonpath-ng's extended grammar is parsed, then only what Step Functions accepts is kept: field,
index, slice, wildcard and ``..`` steps, and filters comparing a field with a literal. Its
arithmetic, ``sub``/``split``/``len``/sorting extensions and ``=~`` (a backtracking regular
expression) are refused. Reference paths (ResultPath, ``...Path`` comparisons, SecondsPath...)
name one node: only ``.name``, ``['name']`` and ``[n]`` steps.
"""

from __future__ import annotations

import copy
import json
import threading
from functools import cache, lru_cache
from typing import Any

from jsonpath_ng import Child, Descendants, Fields, Index, Root, Slice, This
from jsonpath_ng.ext.filter import Expression, Filter
from jsonpath_ng.ext.parser import ExtendedJsonPathParser

from quetzal_deploy.local.errors import runtime_error

MAX_PATH_NODES = 256  # far beyond real paths; keeps jsonpath-ng's recursive evaluation shallow
COMPARISONS = {"==", "!=", "<", "<=", ">", ">="}
STEPS = (Child, Fields, Index, Slice, Descendants, Filter)
EXTENSIONS = {"Operation": "arithmetic", "SortedThis": "sorting", "Union": "'|' unions",
              "Intersect": "'&' intersections", "Where": "'where'", "WhereNot": "'wherenot'"}


def unsupported(node, in_filter: bool) -> str | None:
    """What in one parsed node Step Functions does not accept (None: accepted)."""
    if type(node) is Root:
        return "'$' inside a filter (use '@')" if in_filter else None
    if type(node) is This:
        return None if in_filter else "'@' or `this` outside a filter"
    if type(node) is Expression:
        if node.op is not None and node.op not in COMPARISONS:
            return f"the filter operator {node.op!r} (Step Functions compares with ==, !=, <, <=, >, >=)"
        return None
    if type(node) in STEPS:
        return None
    name = type(node).__name__
    what = EXTENSIONS.get(name, repr(name.lower()))
    return f"{what}, a jsonpath-ng extension Step Functions does not support"


def children(node) -> list:
    if isinstance(node, (Child, Descendants)):
        return [node.left, node.right]
    if isinstance(node, Filter):
        return list(node.expressions)
    if isinstance(node, Expression):
        return [node.target]
    return []


def check_supported_nodes(path: str, expr) -> None:
    """ValueError naming the first construct Step Functions would refuse (walked without recursion)."""
    pending, seen = [(expr, False)], 0
    while pending:
        node, in_filter = pending.pop()
        seen += 1
        if seen > MAX_PATH_NODES:
            raise ValueError(f"{path[:80]!r}... is too long a JSONPath (over {MAX_PATH_NODES} steps)")
        problem = unsupported(node, in_filter)
        if problem:
            raise ValueError(f"{path!r} uses {problem}")
        pending += [(child, in_filter or isinstance(node, Filter)) for child in children(node)]


def compile_path(path: str):
    """The parsed JSONPath; ValueError when ``path`` is not one Step Functions accepts."""
    if not isinstance(path, str) or not path.startswith("$"):
        raise ValueError(f"{path!r} is not a JSONPath (it must be a string starting with '$')")
    return parsed(path)


PARSING = threading.Lock()  # one parser, used by one thread at a time (Map items run in threads)


def jayway_and(path: str) -> str:
    """Step Functions' (Jayway's) ``&&`` between filter comparisons, written as jsonpath-ng
    writes it (``&``), outside quoted text; ``||`` has no jsonpath-ng equivalent."""
    out, quote, index = [], None, 0
    while index < len(path):
        if quote is None and path.startswith(("&&", "||"), index):
            if path[index] == "|":
                raise ValueError(f"{path!r} uses '||' in a filter, which the local runner does not support "
                                 "(use two paths, or a Choice state with Or)")
            out.append("&")
            index += 2
            continue
        char = path[index]
        if quote is None and char in "'\"":
            quote = char
        elif char == quote:
            quote = None
        out.append(char)
        index += 1
    return "".join(out)


@cache
def parser() -> ExtendedJsonPathParser:
    """Built once: building costs ~50 ms, parsing with it ~1 ms."""
    return ExtendedJsonPathParser()


@lru_cache(maxsize=1024)
def parsed(path: str):
    text = jayway_and(path)
    try:
        with PARSING:
            expr = parser().parse(text)
    except RecursionError as ex:
        raise ValueError(f"{path[:80]!r}... is nested too deeply to be a JSONPath") from ex
    except Exception as ex:  # the ply-based parser raises several unrelated types
        raise ValueError(f"{path!r} is not a valid JSONPath: {ex}") from ex
    check_supported_nodes(path, expr)
    return expr


def check_path(path: str) -> None:
    """ValueError when ``path`` is not a JSONPath (``$$...`` context paths included)."""
    compile_path(path[1:] if isinstance(path, str) and path.startswith("$$") else path)


def check_reference_path(path: str, context: bool = True) -> None:
    """ValueError unless ``path`` names a single node (``$$...`` only when ``context``)."""
    if context and isinstance(path, str) and path.startswith("$$"):
        path = path[1:]
    if not is_definite(compile_path(path), reference=True):
        raise ValueError(f"{path!r} must be a reference path: one node, named with .field, "
                         "['field'] or [index] steps (no wildcard, slice, filter or '..')")


def is_definite(expr, reference: bool = False) -> bool:
    """True when the path names at most one value (no wildcard, slice, filter or '..');
    ``reference``: also no negative index and no '@'."""
    if isinstance(expr, Child):
        return is_definite(expr.left, reference) and is_definite(expr.right, reference)
    if isinstance(expr, Fields):
        return len(expr.fields) == 1 and expr.fields[0] != "*"
    if isinstance(expr, Index):
        return len(expr.indices) == 1 and not (reference and expr.indices[0] < 0)
    return type(expr) is Root or (type(expr) is This and not reference)


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
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError) as ex:
        # a filter comparing text to a number, a step that does not fit the data
        raise runtime_error(f"Invalid path '{path}' on {preview(data)}: {ex}") from ex
    if not is_definite(expr):
        return found
    if not found:
        raise runtime_error(f"Invalid path '{path}': no value at that path in {preview(data)}")
    return found[0]


def assign(data: Any, path: str | None, value: Any) -> Any:
    """ResultPath: ``data`` with ``value`` placed at ``path`` (``$`` replaces, None discards).
    Missing fields are created; stepping through anything but an object (or a list's existing
    index) is a States.Runtime error."""
    if path is None:
        return data
    if path == "$":
        return value
    expr = compile_path(path)
    if not is_definite(expr, reference=True):
        raise runtime_error(f"ResultPath '{path}' must name a single place (no wildcard or filter)")
    target = copy.deepcopy(data)
    container, steps = target, reference_steps(expr)
    try:
        for step in steps[:-1]:
            check_step(container, step)
            container = container.setdefault(step, {}) if isinstance(step, str) else container[step]
        check_step(container, steps[-1])
    except (TypeError, IndexError) as ex:
        raise runtime_error(f"ResultPath '{path}' cannot be applied to {preview(data)}: {ex}") from ex
    container[steps[-1]] = value
    return target


def check_step(container: Any, step: str | int) -> None:
    if isinstance(step, str) and not isinstance(container, dict):
        raise TypeError(f"field '{step}' of something that is not an object")
    if isinstance(step, int) and not (isinstance(container, list) and step < len(container)):
        raise IndexError(f"index {step} of something that is not a list that long")


def reference_steps(expr) -> list[str | int]:
    """The field names and indices of a reference path, in order."""
    if isinstance(expr, Child):
        return reference_steps(expr.left) + reference_steps(expr.right)
    if isinstance(expr, Fields):
        return [expr.fields[0]]
    if isinstance(expr, Index):
        return [expr.indices[0]]
    return []


def preview(data: Any, limit: int = 200) -> str:
    """A short JSON rendering of ``data`` for error messages."""
    try:
        text = json.dumps(data, default=str)
    except (RecursionError, ValueError):
        return "(a value too deep or too large to show)"
    return text if len(text) <= limit else text[:limit] + "..."
