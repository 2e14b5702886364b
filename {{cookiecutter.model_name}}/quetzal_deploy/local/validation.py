"""Check a definition up front: every state type, field, path, rule and intrinsic function
must be one the local interpreter runs, so nothing fails halfway through a long run."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from quetzal_deploy.definition import LAMBDA_INVOKE, DefinitionError
from quetzal_deploy.local.choice import rule_problems
from quetzal_deploy.local.jsonpaths import check_path
from quetzal_deploy.local.templates import template_problems

FLOW = {"Type", "Comment", "Next", "End"}
IO = {"InputPath", "OutputPath"}
RESULT = IO | {"Parameters", "ResultSelector", "ResultPath", "Retry", "Catch"}
FIELDS = {
    "Pass": FLOW | IO | {"Parameters", "Result", "ResultPath"},
    "Task": FLOW | RESULT | {"Resource", "TimeoutSeconds"},
    "Choice": {"Type", "Comment", "Choices", "Default"} | IO,
    "Wait": FLOW | IO | {"Seconds", "SecondsPath", "Timestamp", "TimestampPath"},
    "Succeed": {"Type", "Comment"} | IO,
    "Fail": {"Type", "Comment", "Error", "Cause", "ErrorPath", "CausePath"},
    "Parallel": FLOW | RESULT | {"Branches"},
    "Map": FLOW | RESULT | {"ItemsPath", "ItemSelector", "Iterator", "ItemProcessor", "MaxConcurrency"},
}
PATH_FIELDS = ("InputPath", "OutputPath", "ResultPath", "ItemsPath", "SecondsPath", "TimestampPath",
               "ErrorPath", "CausePath")
TEMPLATE_FIELDS = ("Parameters", "ResultSelector", "ItemSelector")
RETRY_FIELDS = {"ErrorEquals", "IntervalSeconds", "MaxAttempts", "BackoffRate", "MaxDelaySeconds",
                "JitterStrategy", "Comment"}
CATCH_FIELDS = {"ErrorEquals", "Next", "ResultPath", "Comment"}
MACHINE_FIELDS = {"StartAt", "States", "Comment", "Version", "QueryLanguage", "TimeoutSeconds"}
LAMBDA_ARN_PREFIX = "arn:aws:lambda:"
NUMBERS = {"MaxConcurrency": int, "TimeoutSeconds": int, "Seconds": int, "IntervalSeconds": int,
           "MaxAttempts": int, "MaxDelaySeconds": int, "BackoffRate": (int, float)}


def number_problems(fields: Mapping[str, Any], where: str) -> Iterator[str]:
    """Numeric fields must be non-negative numbers of the right kind."""
    for key, kind in NUMBERS.items():
        value = fields.get(key)
        if key in fields and (isinstance(value, bool) or not isinstance(value, kind) or value < 0):
            whole = "whole " if kind is int else ""
            yield f"{where}: {key} must be a non-negative {whole}number, not {value!r}"


def is_lambda_resource(resource: Any) -> bool:
    """A Task resource the runner can run: the lambda:invoke integration or a function ARN."""
    return isinstance(resource, str) and (resource == LAMBDA_INVOKE or resource.startswith(LAMBDA_ARN_PREFIX))


def machine_problems(machine: Mapping[str, Any], where: str, top: bool = False) -> Iterator[str]:
    allowed = MACHINE_FIELDS if top else {"StartAt", "States", "Comment", "ProcessorConfig"}
    for key in machine:
        if key not in allowed:
            yield f"{where}: field '{key}' is not supported by the local runner"
    if machine.get("QueryLanguage", "JSONPath") != "JSONPath":
        yield f"{where}: QueryLanguage {machine['QueryLanguage']!r} is not supported (only JSONPath)"
    mode = machine.get("ProcessorConfig", {}).get("Mode", "INLINE")
    if mode != "INLINE":
        yield f"{where}: ProcessorConfig.Mode {mode!r} is not supported (only INLINE Map)"
    states = machine.get("States")
    if not isinstance(states, dict) or not states:
        yield f"{where} needs a non-empty 'States' object"
        return
    if machine.get("StartAt") not in states:
        yield f"{where}: StartAt {machine.get('StartAt')!r} is not one of its states"
    for name, state in states.items():
        yield from state_problems(name, state, states)


def state_problems(name: str, state: Any, siblings: Mapping[str, Any]) -> Iterator[str]:
    if not isinstance(state, dict):
        yield f"state '{name}' must be an object"
        return
    kind = state.get("Type")
    if kind not in FIELDS:
        yield f"state '{name}': Type {kind!r} is not supported by the local runner"
        return
    for key in state:
        if key not in FIELDS[kind]:
            yield f"state '{name}': field '{key}' is not supported by the local runner"
    for key in ("Next", "Default"):
        if key in state and state[key] not in siblings:
            yield f"state '{name}': {key} {state[key]!r} is not a state of the same level"
    if kind in {"Pass", "Task", "Wait", "Parallel", "Map"} and ("Next" in state) == bool(state.get("End")):
        yield f"state '{name}' needs either 'Next' or \"End\": true"
    yield from number_problems(state, f"state '{name}'")
    for key in PATH_FIELDS:
        if isinstance(state.get(key), str):
            try:
                check_path(state[key])
            except ValueError as ex:
                yield f"state '{name}': {key}: {ex}"
    for key in TEMPLATE_FIELDS:
        yield from (f"state '{name}': {p}" for p in template_problems(state.get(key), key))
    for index, retrier in enumerate(state.get("Retry", [])):
        yield from handler_problems(name, f"Retry[{index}]", retrier, RETRY_FIELDS, siblings)
    for index, catcher in enumerate(state.get("Catch", [])):
        yield from handler_problems(name, f"Catch[{index}]", catcher, CATCH_FIELDS, siblings)
    if kind == "Task" and not is_lambda_resource(state.get("Resource")):
        yield (f"state '{name}': Resource {state.get('Resource')!r} is not supported locally "
               f"(only {LAMBDA_INVOKE} and Lambda function ARNs)")
    if kind == "Choice":
        for index, rule in enumerate(state.get("Choices", [])):
            yield from (f"state '{name}': {p}" for p in rule_problems(rule, f"Choices[{index}]"))
            if isinstance(rule, dict) and rule.get("Next") not in siblings:
                yield f"state '{name}': Choices[{index}].Next {rule.get('Next')!r} is not a state"
    if kind == "Parallel":
        for index, branch in enumerate(state.get("Branches", [])):
            yield from machine_problems(branch, f"state '{name}' Branches[{index}]")
    if kind == "Map":
        processor = state.get("ItemProcessor", state.get("Iterator"))
        if not isinstance(processor, dict):
            yield f"state '{name}' needs an ItemProcessor (or Iterator)"
        else:
            yield from machine_problems(processor, f"state '{name}' ItemProcessor")


def handler_problems(name, where, handler, fields, siblings) -> Iterator[str]:
    yield from number_problems(handler, f"state '{name}': {where}")
    for key in handler:
        if key not in fields:
            yield f"state '{name}': {where}: field '{key}' is not supported by the local runner"
    errors = handler.get("ErrorEquals")
    if not isinstance(errors, list) or not errors or not all(isinstance(e, str) for e in errors):
        yield f"state '{name}': {where} needs a non-empty ErrorEquals list of error names"
    if "Next" in fields and handler.get("Next") not in siblings:
        yield f"state '{name}': {where}.Next {handler.get('Next')!r} is not a state of the same level"


def check_supported(definition: Mapping[str, Any]) -> None:
    """Raise DefinitionError listing everything the local runner cannot run."""
    problems = list(machine_problems(definition, "step-functions.json", top=True))
    if problems:
        raise DefinitionError(
            "step-functions.json cannot run locally:\n  - " + "\n  - ".join(problems)
            + "\nChange these states, or run the pipeline on AWS (`invoke run <scenario>`)."
        )
