"""``_common/steps.json``: the pipeline's notebooks per variant, in the front end's format.

``[{"name": <variant>, "steps": [{"name": <state>, "path": <notebook>}]}]``, one entry for
``default`` and one per ``StringEquals`` of a top-level Choice state: the keys the front end's
backend lists as the Run page's tabs. The front end sends the chosen entry's steps with a run.
Each variant's steps are found as the backend walks the definition: from ``StartAt`` along
``Next``, a Choice to its ``Default`` (``default``) or to its rule for the variant, a Parallel's
branches row by row (its ``a | b`` steps), a Map's ``Iterator`` (or ``ItemProcessor``) from its
``StartAt``; each Task with a ``notebook_path`` is a step.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from itertools import zip_longest
from typing import Any

from quetzal_deploy.pipeline.definition import DefinitionError, Walk, state_objects, step_payload

DEFAULT = "default"
STEPS_KEY = "_common/steps.json"


def variants(definition: Mapping[str, Any]) -> list[str]:
    """``default``, then every ``StringEquals`` of the top-level Choice states, in order."""
    names = [DEFAULT]
    for state in definition["States"].values():
        if state.get("Type") == "Choice":
            names += [rule["StringEquals"] for rule in state.get("Choices", [])
                      if isinstance(rule.get("StringEquals"), str) and rule["StringEquals"] not in names]
    return names


def choice_next(state: Mapping[str, Any], variant: str) -> str | None:
    """Where a Choice goes for the variant; its Default for ``default`` or an unknown variant."""
    if variant != DEFAULT:
        for rule in state.get("Choices", []):
            if rule.get("StringEquals") == variant:
                return rule.get("Next")
    return state.get("Default")


def notebook_step(name: str, state: Mapping[str, Any]) -> dict[str, str] | None:
    """A Lambda step, or a Fargate step rendered as an ECS state, as the front end lists it."""
    payload = step_payload(state)
    path = payload.get("notebook_path") if isinstance(payload, dict) else None
    return {"name": name, "path": path} if isinstance(path, str) else None


def walk(states: Mapping[str, Any], start: str | None, variant: str) -> list[dict[str, str]]:
    """The notebook steps met from ``start`` for ``variant``."""
    steps: list[dict[str, str]] = []
    seen: set[str] = set()
    current = start
    while current is not None and current not in seen:
        seen.add(current)
        state = states.get(current)
        if not isinstance(state, dict):
            raise DefinitionError(f"step-functions.json goes to state {current!r}, which does not exist")
        kind = state.get("Type")
        if kind == "Choice":
            current = choice_next(state, variant)
            continue
        if kind == "Parallel":
            rows = [walk(b.get("States", {}), b.get("StartAt"), variant) for b in state.get("Branches", [])]
            steps += [step for row in zip_longest(*rows) for step in row if step]
        elif kind == "Map":
            inner = state.get("Iterator") or state.get("ItemProcessor") or {}
            steps += walk(inner.get("States", {}), inner.get("StartAt"), variant)
        elif kind == "Task" and (step := notebook_step(current, state)):
            steps.append(step)
        current = None if state.get("End") else state.get("Next")
    return steps


def front_end_steps(definition: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``steps.json``'s content for this definition."""
    return [{"name": name, "steps": walk(definition["States"], definition["StartAt"], name)}
            for name in variants(definition)]


def display_warnings(walk: Walk) -> list[str]:
    """What the front end's backend would show wrongly or fail on in the walked definition (it
    reads the definition too)."""
    warnings = []
    for name, state, where in walk:
        rules = state.get("Choices", []) if where == "States" and state.get("Type") == "Choice" else []
        if any("StringEquals" not in rule for rule in rules):
            warnings.append(f"Choice state {name!r} has a rule without StringEquals: the front end's "
                            "backend lists variants from StringEquals only and fails on it.")
    for name, state in state_objects(walk):
        sizes = [len(b.get("States", {})) for b in state.get("Branches", [])]
        if len(set(sizes)) > 1:
            warnings.append(f"Parallel state {name!r} has branches of {sorted(sizes)} states: the front "
                            f"end shows its steps row by row, only the first {min(sizes)}.")
    return warnings


def steps_json(definition: Mapping[str, Any]) -> bytes:
    return (json.dumps(front_end_steps(definition), indent=2, ensure_ascii=False) + "\n").encode()
