"""Payload templates (Parameters, ItemSelector, ResultSelector): ``"key.$"`` values are a path
or an intrinsic function call, everything else is copied as is."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from quetzal_deploy.local.intrinsics import evaluate, parse_call
from quetzal_deploy.local.jsonpaths import check_path, select


def fill(template: Any, data: Any, context: dict | None = None) -> Any:
    """The template with every ``key.$`` replaced by the value its path or function gives."""
    if isinstance(template, list):
        return [fill(item, data, context) for item in template]
    if not isinstance(template, dict):
        return template
    result = {}
    for key, value in template.items():
        if key.endswith(".$"):
            result[key[:-2]] = select(data, value, context) if value.startswith("$") else evaluate(
                value, data, context
            )
        else:
            result[key] = fill(value, data, context)
    return result


def template_problems(template: Any, where: str) -> Iterator[str]:
    """What in the template cannot run: non-string ``.$`` values, bad paths, unknown functions."""
    if isinstance(template, list):
        for index, item in enumerate(template):
            yield from template_problems(item, f"{where}[{index}]")
        return
    if not isinstance(template, dict):
        return
    for key, value in template.items():
        field = f"{where}.{key}"
        if not key.endswith(".$"):
            yield from template_problems(value, field)
        elif not isinstance(value, str):
            yield f"{field} must be a string (a JSONPath or an intrinsic function)"
        else:
            try:
                check_path(value) if value.startswith("$") else parse_call(value)
            except ValueError as ex:
                yield f"{field}: {ex}"
