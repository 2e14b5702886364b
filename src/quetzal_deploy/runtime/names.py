"""Scenario names, as the front end allows them, checked once for every flow.

The front end accepts any name without ``/`` or ``#`` that is not ``_common`` (``scénario d'été``,
``A&B``, ``(test)``). A name is one S3 key part (``<name>/inputs/...``) and one folder name
(``scenarios/<name>/``), never a shell word, so on top of the front end's rules it must be a
single usable path segment: not ``.`` or ``..``, no control characters, short enough for a
folder name once the local run adds its time stamp.
"""

from __future__ import annotations

import unicodedata

COMMON = "_common"
FORBIDDEN = ("/", "#")
# Linux folder names stop at 255 bytes; a local run folder adds 22 bytes around the name.
MAX_NAME_BYTES = 200
# Control characters (C0, DEL, C1), line/paragraph separators and lone surrogates.
REFUSED_CATEGORIES = {"Cc", "Zl", "Zp", "Cs"}


class InvalidScenarioName(ValueError):
    """A scenario name the front end or the bucket cannot use; the message says why."""


def name_problem(name: object) -> str | None:
    """Why ``name`` is not a scenario name, or None when it is one."""
    if not isinstance(name, str):
        return f"a scenario name is text, not {type(name).__name__}"
    if name in {"", ".", ".."}:
        return "a scenario name cannot be empty, '.' or '..'"
    if name == COMMON:
        return f"{COMMON} is reserved for model-wide files"
    for char in FORBIDDEN:
        if char in name:
            return f"a scenario name cannot contain {char!r} (the front end refuses it)"
    if any(unicodedata.category(char) in REFUSED_CATEGORIES for char in name):
        return "a scenario name cannot contain control characters or line breaks"
    size = len(name.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        return f"a scenario name is at most {MAX_NAME_BYTES} bytes in UTF-8 (this one has {size})"
    return None


def check_scenario_name(name: object) -> str:
    """``name`` itself when it is a scenario name, else ``InvalidScenarioName`` saying why."""
    problem = name_problem(name)
    if problem:
        shown = repr(name) if len(repr(name)) <= 60 else repr(name)[:50] + "..."
        raise InvalidScenarioName(f"{shown} is not a scenario name: {problem}.")
    return name


def scenario_of_prefix(prefix: str) -> str:
    """The name in a one-level prefix ``<name>/`` (the front end's ``scenario_path_S3``)."""
    if not prefix.endswith("/"):
        raise InvalidScenarioName(f"{repr(prefix)[:80]} must end with '/'.")
    return check_scenario_name(prefix[:-1])
