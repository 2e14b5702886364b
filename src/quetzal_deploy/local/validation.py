"""Check a definition up front: every state type, field, path, rule and intrinsic function
must be one the local interpreter runs, and every field must have the type and range Step
Functions requires, so nothing fails halfway through a long run."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from quetzal_deploy.local.choice import rule_problems
from quetzal_deploy.local.intrinsics import parse_call
from quetzal_deploy.local.jsonpaths import check_path, check_reference_path
from quetzal_deploy.local.templates import template_problems
from quetzal_deploy.pipeline.definition import (
    ECS_RUN_TASK,
    LAMBDA_INVOKE,
    DefinitionError,
    Machine,
    Walk,
    duplicate_state_names,
)

FLOW = {"Type", "Comment", "Next", "End"}
IO = {"InputPath", "OutputPath"}
RESULT = IO | {"Parameters", "ResultSelector", "ResultPath", "Retry", "Catch"}
FIELDS = {
    "Pass": FLOW | IO | {"Parameters", "Result", "ResultPath"},
    "Task": FLOW | RESULT | {"Resource", "TimeoutSeconds", "HeartbeatSeconds"},
    "Choice": {"Type", "Comment", "Choices", "Default"} | IO,
    "Wait": FLOW | IO | {"Seconds", "SecondsPath", "Timestamp", "TimestampPath"},
    "Succeed": {"Type", "Comment"} | IO,
    "Fail": {"Type", "Comment", "Error", "Cause", "ErrorPath", "CausePath"},
    "Parallel": FLOW | RESULT | {"Branches"},
    "Map": FLOW | RESULT | {"ItemsPath", "ItemSelector", "Iterator", "ItemProcessor", "MaxConcurrency"},
}
TYPES = {
    "Type": str, "Comment": str, "Next": str, "End": bool, "Default": str, "Resource": str,
    "Retry": list, "Catch": list, "Branches": list, "Choices": list, "Iterator": dict,
    "ItemProcessor": dict, "ResultSelector": dict, "ItemSelector": dict, "Timestamp": str,
    "Error": str, "Cause": str, "StartAt": str, "States": dict, "Version": str,
    "ProcessorConfig": dict, "ErrorEquals": list, "JitterStrategy": str,
}
TYPE_NAMES = {str: "a string", bool: "true or false", list: "an array", dict: "an object"}


def intrinsic_or_reference(path: str) -> None:
    """ErrorPath and CausePath: a reference path or an intrinsic function."""
    parse_call(path) if path.startswith("States.") else check_reference_path(path)


PATHS = {
    "InputPath": check_path, "OutputPath": check_path, "ItemsPath": check_path,
    "ResultPath": lambda path: check_reference_path(path, context=False),
    "SecondsPath": check_reference_path, "TimestampPath": check_reference_path,
    "ErrorPath": intrinsic_or_reference, "CausePath": intrinsic_or_reference,
}
NULLABLE_PATHS = {"InputPath", "OutputPath", "ResultPath"}
TEMPLATE_FIELDS = ("Parameters", "ResultSelector", "ItemSelector")
RETRY_FIELDS = {"ErrorEquals", "IntervalSeconds", "MaxAttempts", "BackoffRate", "MaxDelaySeconds",
                "JitterStrategy", "Comment"}
CATCH_FIELDS = {"ErrorEquals", "Next", "ResultPath", "Comment"}
MACHINE_FIELDS = {"StartAt", "States", "Comment", "Version", "QueryLanguage", "TimeoutSeconds"}
LAMBDA_ARN_PREFIX = "arn:aws:lambda:"
MAX_SECONDS = 99_999_999  # Step Functions' ceiling for TimeoutSeconds, Seconds, retry figures
WHOLE_NUMBERS = {  # field: (lowest, highest), as Step Functions accepts them
    "MaxConcurrency": (0, MAX_SECONDS), "TimeoutSeconds": (1, MAX_SECONDS), "Seconds": (0, MAX_SECONDS),
    "IntervalSeconds": (1, MAX_SECONDS), "MaxAttempts": (0, MAX_SECONDS), "MaxDelaySeconds": (1, 31_622_401),
    "HeartbeatSeconds": (1, MAX_SECONDS),
}


def field_problem(key: str, value: Any) -> str | None:
    """What is wrong with a field's JSON type, or its number's range (Step Functions' ranges)."""
    expected = TYPES.get(key)
    if expected is not None:
        return None if isinstance(value, expected) else f"must be {TYPE_NAMES[expected]}"
    if key in PATHS:
        if isinstance(value, str) or (value is None and key in NULLABLE_PATHS):
            return None
        return "must be a string (a JSONPath)" + (" or null" if key in NULLABLE_PATHS else "")
    if key in WHOLE_NUMBERS:
        low, high = WHOLE_NUMBERS[key]
        whole = isinstance(value, int) and not isinstance(value, bool)
        return None if whole and low <= value <= high else f"must be a whole number from {low} to {high}"
    if key == "BackoffRate":
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if number and 1 <= value < math.inf else "must be a finite number of at least 1.0"
    return None


def type_problems(fields: Mapping[str, Any], where: str) -> Iterator[str]:
    for key, value in fields.items():
        problem = field_problem(key, value)
        if problem:
            yield f"{where}: {key} {problem}, not {short(value)}"


def short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def is_lambda_resource(resource: Any) -> bool:
    """A Task resource the runner can run: lambda:invoke, a function ARN, or a Fargate step."""
    return isinstance(resource, str) and (resource in (LAMBDA_INVOKE, ECS_RUN_TASK)
                                          or resource.startswith(LAMBDA_ARN_PREFIX))


def label(machine: Machine) -> str:
    """How a problem names a machine: the file, or its state's branch or processor."""
    if machine.parent is None:
        return "step-functions.json"
    return f"state '{machine.name}' {machine.key}" + ("" if machine.index is None else f"[{machine.index}]")


def runs(machine: Machine) -> bool:
    """Whether the interpreter runs a nested machine: a Parallel state's branch, or the processor
    a Map state uses (its ItemProcessor when that is an object, else its Iterator)."""
    kind = machine.state.get("Type") if machine.state is not None else None
    if machine.key == "Branches":
        return kind == "Parallel"
    used = "ItemProcessor" if isinstance(machine.state.get("ItemProcessor"), dict) else "Iterator"
    return kind == "Map" and machine.key == used


def machine_problems(machine: Machine) -> Iterator[str]:
    """What is wrong with a machine's own fields, StartAt and States (its states come apart)."""
    body, where, top = machine.body, label(machine), machine.parent is None
    if not isinstance(body, dict):
        yield f"{where} must be an object with StartAt and States, not {short(body)}"
        return
    allowed = MACHINE_FIELDS if top else {"StartAt", "States", "Comment", "ProcessorConfig"}
    for key in body:
        if key not in allowed:
            yield f"{where}: field '{key}' is not supported by the local runner"
    problems = list(type_problems(body, where))
    yield from problems
    if body.get("QueryLanguage", "JSONPath") != "JSONPath":
        yield f"{where}: QueryLanguage {short(body['QueryLanguage'])} is not supported (only JSONPath)"
    mode = body.get("ProcessorConfig", {}).get("Mode", "INLINE") if not problems else "INLINE"
    if mode != "INLINE":
        yield f"{where}: ProcessorConfig.Mode {short(mode)} is not supported (only INLINE Map)"
    states = body.get("States")
    if not isinstance(states, dict) or not states:
        yield f"{where} needs a non-empty 'States' object"
        return
    if body.get("StartAt") not in states:
        yield f"{where}: StartAt {short(body.get('StartAt'))} is not one of its states"


def walk_problems(walk: Walk) -> Iterator[str]:
    """The problems of every machine the interpreter would run and of their states, read from
    the one walk of the definition (``machine_states``)."""
    entered = set()
    for where, machine in walk.machines.items():  # a machine comes after the one holding it
        if machine.parent is None or (machine.parent in entered and runs(machine)):
            entered.add(where)
            yield from machine_problems(machine)
    for name, state, where in walk:
        if where in entered:
            yield from state_problems(name, state, walk.machines[where].body["States"])


def state_problems(name: str, state: Any, siblings: Mapping[str, Any]) -> Iterator[str]:
    where = f"state '{name}'"
    if not isinstance(state, dict):
        yield f"{where} must be an object"
        return
    kind = state.get("Type")
    if not isinstance(kind, str) or kind not in FIELDS:
        yield f"{where}: Type {short(kind)} is not supported by the local runner"
        return
    for key in state:
        if key not in FIELDS[kind]:
            yield f"{where}: field '{key}' is not supported by the local runner"
    yield from type_problems(state, where)
    state = {key: value for key, value in state.items() if not field_problem(key, value)}  # checked below
    for key in ("Next", "Default"):
        if key in state and state[key] not in siblings:
            yield f"{where}: {key} {state[key]!r} is not a state of the same level"
    if kind in {"Pass", "Task", "Wait", "Parallel", "Map"} and ("Next" in state) == bool(state.get("End")):
        yield f"{where} needs either 'Next' or \"End\": true"
    for key, check in PATHS.items():
        if isinstance(state.get(key), str):
            try:
                check(state[key])
            except ValueError as ex:
                yield f"{where}: {key}: {ex}"
    for key in TEMPLATE_FIELDS:
        yield from (f"{where}: {p}" for p in template_problems(state.get(key), key))
    for index, retrier in enumerate(state.get("Retry", [])):
        yield from handler_problems(where, f"Retry[{index}]", retrier, RETRY_FIELDS, siblings)
    for index, catcher in enumerate(state.get("Catch", [])):
        yield from handler_problems(where, f"Catch[{index}]", catcher, CATCH_FIELDS, siblings)
    yield from kind_problems(where, kind, state, siblings)


def kind_problems(where: str, kind: str, state: dict, siblings: Mapping[str, Any]) -> Iterator[str]:
    """What a Task's resource, a Choice's rules or a Map's processor lacks (the machines a
    Parallel or Map state holds are checked as the walk meets them)."""
    if kind == "Task" and not is_lambda_resource(state.get("Resource")):
        yield (f"{where}: Resource {short(state.get('Resource'))} is not supported locally "
               f"(only {LAMBDA_INVOKE}, Lambda function ARNs and Fargate steps)")
    if kind == "Choice":
        if not state.get("Choices"):
            yield f"{where} needs at least one rule in Choices"
        for index, rule in enumerate(state.get("Choices", [])):
            yield from (f"{where}: {p}" for p in rule_problems(rule, f"Choices[{index}]"))
            following = rule.get("Next") if isinstance(rule, dict) else None
            if following is not None and (not isinstance(following, str) or following not in siblings):
                yield f"{where}: Choices[{index}].Next {short(following)} is not a state"
    if kind == "Map" and state.get("ItemProcessor", state.get("Iterator")) is None:
        yield f"{where} needs an ItemProcessor (or Iterator)"


def handler_problems(where, handler_where, handler, fields, siblings) -> Iterator[str]:
    where = f"{where}: {handler_where}"
    if not isinstance(handler, dict):
        yield f"{where} must be an object, not {short(handler)}"
        return
    yield from type_problems(handler, where)
    wrong = any(field_problem(key, value) for key, value in handler.items())
    for key in handler:
        if key not in fields:
            yield f"{where}: field '{key}' is not supported by the local runner"
    errors = handler.get("ErrorEquals")
    if not isinstance(errors, list) or not errors or not all(isinstance(e, str) for e in errors):
        yield f"{where} needs a non-empty ErrorEquals list of error names"
    if "Next" in fields and not wrong and handler.get("Next") not in siblings:
        yield f"{where}.Next {short(handler.get('Next'))} is not a state of the same level"
    if isinstance(handler.get("ResultPath"), str):
        try:
            check_reference_path(handler["ResultPath"], context=False)
        except ValueError as ex:
            yield f"{where}: ResultPath: {ex}"


def check_supported(walk: Walk) -> None:
    """Raise DefinitionError listing everything the local runner cannot run (``walk``: the
    definition's ``machine_states``)."""
    try:
        problems = list(walk_problems(walk))
    except RecursionError as ex:
        raise DefinitionError("step-functions.json is nested too deeply to run") from ex
    problems += duplicate_state_names(walk)
    if problems:
        raise DefinitionError(
            "step-functions.json cannot run locally:\n  - " + "\n  - ".join(problems)
            + "\nChange these states, or run the pipeline on AWS (`invoke run <scenario>`)."
        )
