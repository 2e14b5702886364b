"""``step-functions.json``: load it, list its notebooks, fill its ``${...}`` placeholders.

Placeholders are ``${name}`` with a lowercase name; ``$.path`` and ``$$.Map...`` JSONPaths
are left alone (which rules out ``string.Template``, where ``$$`` is an escape).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from quetzal_deploy.errors import QuetzalError

PLACEHOLDER = re.compile(r"\$\{([a-z_][a-z0-9_]*)\}")
LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"


class DefinitionError(QuetzalError):
    """step-functions.json is not a usable state machine definition."""


def load_definition(path: Path) -> dict[str, Any]:
    """Parse the definition file with a message that points at the broken line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DefinitionError(f"{path} not found: restore it from git or re-bake the model") from None
    try:
        definition = json.loads(text)
    except json.JSONDecodeError as ex:
        raise DefinitionError(
            f"{path.name} is not valid JSON (line {ex.lineno}, column {ex.colno}: {ex.msg})"
        ) from ex
    if not isinstance(definition, dict) or "States" not in definition or "StartAt" not in definition:
        raise DefinitionError(f"{path.name} needs top-level 'StartAt' and 'States'")
    return definition


def iter_states(states: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every state, nested Map and Parallel branches included."""
    for name, state in states.items():
        yield name, state
        for branch in state.get("Branches", []):
            yield from iter_states(branch.get("States", {}))
        for key in ("Iterator", "ItemProcessor"):
            if key in state:
                yield from iter_states(state[key].get("States", {}))


def notebook_paths(definition: Mapping[str, Any]) -> list[str]:
    """The ``notebook_path`` of every Task that invokes the model's Lambda, in order."""
    paths = []
    for _, state in iter_states(definition["States"]):
        payload = state.get("Parameters", {}).get("Payload", {})
        if state.get("Type") == "Task" and isinstance(payload, dict) and "notebook_path" in payload:
            paths.append(payload["notebook_path"])
    return paths


def placeholders(definition: Mapping[str, Any]) -> set[str]:
    """The placeholder names the definition uses."""
    return set(PLACEHOLDER.findall(json.dumps(definition)))


def render(definition: Mapping[str, Any], values: Mapping[str, str]) -> dict[str, Any]:
    """Fill every placeholder; an unknown one is an error naming it and the known ones."""
    unknown = placeholders(definition) - set(values)
    if unknown:
        raise DefinitionError(
            f"step-functions.json uses unknown placeholder(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join('${' + k + '}' for k in sorted(values))}"
        )
    # Each value is JSON-escaped, so a quote in a value cannot break the document.
    text = PLACEHOLDER.sub(lambda m: json.dumps(values[m.group(1)])[1:-1], json.dumps(definition))
    return json.loads(text)


def placeholder_values(settings, account_id: str) -> dict[str, str]:
    """The values ``${...}`` placeholders take for this model."""
    return {
        "account_id": account_id,
        "region": settings.region,
        "model_name": settings.model_name,
        "function_name": settings.function_name,
        "bucket": settings.bucket,
        "auth_function_name": settings.auth_function,
        "state_machine": settings.state_machine,
    }
