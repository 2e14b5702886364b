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
        definition = json.loads(text, parse_constant=not_json, parse_float=finite_float)
    except json.JSONDecodeError as ex:
        raise DefinitionError(
            f"{path.name} is not valid JSON (line {ex.lineno}, column {ex.colno}: {ex.msg})"
        ) from ex
    except RecursionError as ex:
        raise DefinitionError(f"{path.name} is nested too deeply to be a state machine") from ex
    except ValueError as ex:  # from the hooks below, or an integer of more than 4300 digits
        raise DefinitionError(f"{path.name} is not valid JSON: {ex}") from ex
    if not isinstance(definition, dict) or "States" not in definition or "StartAt" not in definition:
        raise DefinitionError(f"{path.name} needs top-level 'StartAt' and 'States'")
    return definition


def walk_states(states: Any, where: str = "States") -> Iterator[tuple[str, Any, str]]:
    """``(name, state, where)`` for every state, nested Map and Parallel branches included;
    parts of the wrong type are skipped (the validation reports them)."""
    if not isinstance(states, Mapping):
        return
    for name, state in states.items():
        yield name, state, where
        if not isinstance(state, Mapping):
            continue
        branches = state.get("Branches")
        for index, branch in enumerate(branches if isinstance(branches, list) else []):
            if isinstance(branch, Mapping):
                yield from walk_states(branch.get("States"), f"{where}.{name}.Branches[{index}].States")
        for key in ("Iterator", "ItemProcessor"):
            if isinstance(state.get(key), Mapping):
                yield from walk_states(state[key].get("States"), f"{where}.{name}.{key}.States")


def not_json(word: str):
    raise ValueError(f"{word} is not a JSON number")


def finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"the number {text[:30]} is out of range")
    return value


def iter_states(states: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every state (an object), nested Map and Parallel branches included."""
    for name, state, _ in walk_states(states):
        if isinstance(state, dict):
            yield name, state


def duplicate_state_names(definition: Mapping[str, Any]) -> list[str]:
    """A problem per state name used twice anywhere in the machine (the front end follows a run
    by the names of the states it enters, as Step Functions requires them unique)."""
    places: dict[str, list[str]] = {}
    for name, _, where in walk_states(definition.get("States")):
        places.setdefault(name, []).append(where)
    return [f"state name '{name}' is used {len(found)} times ({', '.join(found)}): state names must "
            "be unique across the whole machine, Parallel branches and Map iterators included; rename "
            "all but one"
            for name, found in places.items() if len(found) > 1]


def front_end_warnings(definition: Mapping[str, Any]) -> list[str]:
    """What works on Step Functions but hides steps from the front end."""
    return [f"Map state '{name}' uses ItemProcessor: the front end's backend reads only Iterator to list "
            f"a run's steps, so the steps inside '{name}' will not show there. Rename ItemProcessor to "
            "Iterator (Step Functions accepts both)."
            for name, state in iter_states(definition.get("States", {}))
            if state.get("Type") == "Map" and "ItemProcessor" in state]


def notebook_paths(definition: Mapping[str, Any]) -> list[str]:
    """The ``notebook_path`` of every Task that invokes the model's Lambda, in order."""
    paths = []
    for name, state in iter_states(definition["States"]):
        parameters = state.get("Parameters")
        payload = parameters.get("Payload") if isinstance(parameters, dict) else None
        if state.get("Type") != "Task" or not isinstance(payload, dict) or "notebook_path" not in payload:
            continue
        if not isinstance(payload["notebook_path"], str):
            raise DefinitionError(f"Task '{name}': Parameters.Payload.notebook_path must be a string "
                                  f"(like notebooks/prep.ipynb), not {payload['notebook_path']!r}")
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
