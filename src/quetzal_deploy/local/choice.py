"""Choice rules: comparison operators (and their ``...Path`` twins), type tests,
``And``/``Or``/``Not``, as Step Functions evaluates them."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from quetzal_deploy.local.errors import StatesError
from quetzal_deploy.local.jsonpaths import check_path, check_reference_path, select

COMPARE = {
    "Equals": operator.eq,
    "LessThan": operator.lt,
    "GreaterThan": operator.gt,
    "LessThanEquals": operator.le,
    "GreaterThanEquals": operator.ge,
}
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str) or not TIMESTAMP.fullmatch(value):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def literal_pieces(pattern: str) -> list[str]:
    """The pattern's text between its unescaped ``*`` (``\\*`` is a star, ``\\\\`` a backslash)."""
    pieces, current, index = [], [], 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            current.append(pattern[index + 1])
            index += 2
            continue
        if char == "*":
            pieces.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    return [*pieces, "".join(current)]


def wildcard_matches(pattern: str, text: str) -> bool:
    """StringMatches without backtracking: the pieces between stars are found left to right."""
    first, *rest = literal_pieces(pattern)
    if not rest:
        return text == first
    *middle, last = rest
    if len(text) < len(first) + len(last) or not text.startswith(first) or not text.endswith(last):
        return False
    position, end = len(first), len(text) - len(last)
    for piece in middle:  # the leftmost match of each piece leaves the most room for the next
        found = text.find(piece, position, end)
        if found < 0:
            return False
        position = found + len(piece)
    return True


TYPE_TESTS = {
    "IsNull": lambda v: v is None,
    "IsNumeric": is_number,
    "IsString": lambda v: isinstance(v, str),
    "IsBoolean": lambda v: isinstance(v, bool),
    "IsTimestamp": lambda v: timestamp(v) is not None,
}
KINDS = {
    "String": (lambda v: isinstance(v, str), lambda v: v),
    "Numeric": (is_number, lambda v: v),
    "Boolean": (lambda v: isinstance(v, bool), lambda v: v),
    "Timestamp": (lambda v: timestamp(v) is not None, timestamp),
}
OPERATORS = (
    {f"{kind}{name}" for kind in KINDS for name in COMPARE if kind != "Boolean" or name == "Equals"}
    | {"StringMatches"}
)
PATH_OPERATORS = {f"{name}Path" for name in OPERATORS if name != "StringMatches"}
ALL_TESTS = OPERATORS | PATH_OPERATORS | set(TYPE_TESTS) | {"IsPresent"}


def matches(rule: dict, data: Any, context: dict | None = None) -> bool:
    """Whether ``rule`` holds for the Choice state's input."""
    if "And" in rule:
        return all(matches(r, data, context) for r in rule["And"])
    if "Or" in rule:
        return any(matches(r, data, context) for r in rule["Or"])
    if "Not" in rule:
        return not matches(rule["Not"], data, context)
    test = next(key for key in rule if key in ALL_TESTS)
    variable, expected = rule["Variable"], rule[test]
    if test == "IsPresent":
        try:
            select(data, variable, context)
        except StatesError:
            return not expected
        return expected
    value = select(data, variable, context)
    if test in TYPE_TESTS:
        return TYPE_TESTS[test](value) == expected
    if test in PATH_OPERATORS:
        test, expected = test[: -len("Path")], select(data, expected, context)
    if test == "StringMatches":
        return isinstance(value, str) and wildcard_matches(expected, value)
    kind = next(k for k in KINDS if test.startswith(k))
    accepts, convert = KINDS[kind]
    if not accepts(value) or not accepts(expected):
        return False
    return COMPARE[test[len(kind):]](convert(value), convert(expected))


def rule_problems(rule: Any, where: str, top: bool = True) -> Iterator[str]:
    """What in a Choice rule cannot be evaluated, each naming its place."""
    if not isinstance(rule, dict):
        yield f"{where} must be an object"
        return
    combinators = [key for key in ("And", "Or", "Not") if key in rule]
    tests = [key for key in rule if key in ALL_TESTS]
    known = {"Variable", "Next", "Comment", *combinators, *tests}
    for key in rule:
        if key not in known:
            yield f"{where}: '{key}' is not a comparison this runner supports"
    if top and "Next" not in rule:
        yield f"{where} needs 'Next'"
    if len(combinators) + len(tests) != 1:
        yield f"{where} needs exactly one comparison or And/Or/Not"
        return
    if combinators:
        children = rule[combinators[0]]
        children = [children] if combinators[0] == "Not" else children
        if not isinstance(children, list) or not children:
            yield f"{where}.{combinators[0]} needs a non-empty list of rules"
            return
        for index, child in enumerate(children):
            yield from rule_problems(child, f"{where}.{combinators[0]}[{index}]", top=False)
        return
    try:
        check_path(rule.get("Variable"))
    except ValueError as ex:
        yield f"{where}.Variable: {ex}"
    problem = operand_problem(tests[0], rule[tests[0]])
    if problem:
        yield f"{where}.{tests[0]} {problem}"


def operand_problem(test: str, operand: Any) -> str | None:
    """What is wrong with a comparison's operand (a reference path for ``...Path`` tests)."""
    if test in PATH_OPERATORS:
        try:
            check_reference_path(operand)
        except ValueError as ex:
            return f"must be a reference path: {ex}"
        return None
    if test in TYPE_TESTS or test in {"IsPresent", "BooleanEquals"}:
        return None if isinstance(operand, bool) else f"must be true or false, not {operand!r}"
    if test.startswith("Numeric"):
        finite = is_number(operand) and math.isfinite(operand)
        return None if finite else f"must be a finite number, not {operand!r}"
    if test.startswith("Timestamp"):
        return None if timestamp(operand) else f"must be an ISO 8601 timestamp (2024-01-31T12:00:00Z), " \
            f"not {operand!r}"
    return None if isinstance(operand, str) else f"must be a string, not {operand!r}"

