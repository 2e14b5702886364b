"""``step-functions.json``: load it, walk its states, list its notebooks, fill its ``${...}`` placeholders.

``machine_states`` is the one walk of a definition's states, nested branches and processors
included: porting, the Fargate steps, update-steps and a local run's checks all read it, so a
definition is walked once where nothing replaces it (``ported`` walks its copy, which the
Fargate rendering then edits in place; the interpreter walks the filled definition).

Placeholders are ``${name}`` with a lowercase name; ``$.path`` and ``$$.Map...`` JSONPaths
are left alone (which rules out ``string.Template``, where ``$$`` is an escape).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quetzal_deploy.contract.fargate import FIELD_PREFIX, FIELD_SEPARATOR, LIMIT_VARIABLE, TOKEN_VARIABLE
from quetzal_deploy.errors import QuetzalError

PLACEHOLDER = re.compile(r"\$\{([a-z_][a-z0-9_]*)\}")
LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
ECS_RUN_TASK = "arn:aws:states:::ecs:runTask.waitForTaskToken"
# The Fargate part of the Terraform module: task definition family "<model>-step" (never
# "<model>-task...", which switches the front end's backend to its whole-model ECS mode),
# container "step", cluster "<model>-steps" unless an existing one is named.
FARGATE_CONTAINER = "step"
FARGATE_FAMILY_SUFFIX = "-step"
FARGATE_CLUSTER_SUFFIX = "-steps"
FARGATE_DEFAULT_LIMIT_S = 4 * 3600
FARGATE_START_ALLOWANCE_S = 900  # provisioning and image pull, before the step's own clock starts
FARGATE_HEARTBEAT_S = 900  # the container beats every minute: a dead one fails the state after this
ECS_RETRY = [{"ErrorEquals": ["ECS.AmazonECSException"], "IntervalSeconds": 10, "MaxAttempts": 3,
              "BackoffRate": 2.0}]


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


@dataclass(frozen=True)
class Machine:
    """A machine the walk met, as written (malformed ones too): the definition itself, a
    Parallel state's branch or a Map state's processor."""

    body: Any
    parent: str | None = None  # the ``where`` of the states holding its state; None at the top
    name: str = ""  # its state's name
    state: Mapping[str, Any] | None = None
    key: str = ""  # Branches, ItemProcessor or Iterator
    index: int | None = None  # its place in Branches


def sub_machines(state: Mapping[str, Any]) -> Iterator[tuple[str, int | None, Any]]:
    """``(key, index, machine)`` of a state's branches (each, whatever its type) and processors
    (objects only: a processor of the wrong type is a field problem of its state)."""
    branches = state.get("Branches")
    for index, branch in enumerate(branches if isinstance(branches, list) else []):
        yield "Branches", index, branch
    for key in ("Iterator", "ItemProcessor"):
        if isinstance(state.get(key), Mapping):
            yield key, None, state[key]


def walk_states(states: Any, where: str = "States",
                machines: dict[str, Machine] | None = None) -> Iterator[tuple[str, Any, str]]:
    """``(name, state, where)`` for every state, nested Map and Parallel branches included;
    parts of the wrong type are skipped (the validation reports them). Each nested machine met
    is recorded in ``machines``, when given, by the ``where`` of its states."""
    if not isinstance(states, Mapping):
        return
    for name, state in states.items():
        yield name, state, where
        if not isinstance(state, Mapping):
            continue
        for key, index, machine in sub_machines(state):
            inner = f"{where}.{name}.{key}{'' if index is None else f'[{index}]'}.States"
            if machines is not None:
                machines[inner] = Machine(machine, where, name, state, key, index)
            if isinstance(machine, Mapping):
                yield from walk_states(machine.get("States"), inner, machines)


class Walk(list[tuple[str, Any, str]]):
    """``(name, state, where)`` of every state, as ``walk_states`` yields them, and ``machines``:
    every machine met, by the ``where`` of its states (``"States"``: the definition)."""

    def __init__(self, states: Iterable[tuple[str, Any, str]], machines: dict[str, Machine]):
        super().__init__(states)
        self.machines = machines

    @property
    def definition(self) -> Any:
        """The definition walked."""
        return self.machines["States"].body


def machine_states(definition: Any) -> Walk:
    """Every state of ``definition`` with its path, walked once: whatever looks at every state
    (porting, the Fargate steps, the checks, the front end's warnings) reads this list."""
    machines = {"States": Machine(definition)}
    states = definition.get("States") if isinstance(definition, Mapping) else None
    return Walk(walk_states(states, machines=machines), machines)


def state_objects(walk: Iterable[tuple[str, Any, str]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The walked states that are objects (the others are the validation's to report)."""
    return ((name, state) for name, state, _ in walk if isinstance(state, dict))


def not_json(word: str):
    raise ValueError(f"{word} is not a JSON number")


def finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"the number {text[:30]} is out of range")
    return value


def duplicate_state_names(walk: Walk) -> list[str]:
    """A problem per state name used twice anywhere in the machine (the front end follows a run
    by the names of the states it enters, as Step Functions requires them unique)."""
    places: dict[str, list[str]] = {}
    for name, _, where in walk:
        places.setdefault(name, []).append(where)
    return [f"state name '{name}' is used {len(found)} times ({', '.join(found)}): state names must "
            "be unique across the whole machine, Parallel branches and Map iterators included; rename "
            "all but one"
            for name, found in places.items() if len(found) > 1]


def front_end_warnings(walk: Walk) -> list[str]:
    """What works on Step Functions but hides steps from the front end."""
    return [f"Map state '{name}' uses ItemProcessor: the front end's backend reads only Iterator to list "
            f"a run's steps, so the steps inside '{name}' will not show there. Rename ItemProcessor to "
            "Iterator (Step Functions accepts both)."
            for name, state in state_objects(walk)
            if state.get("Type") == "Map" and "ItemProcessor" in state]


def notebook_paths(machine: Mapping[str, Any] | Walk) -> list[str]:
    """The ``notebook_path`` of every Task that runs a notebook (Lambda or Fargate), in order, from
    a definition (as a model repo's tests/test_model.py calls it) or its ``machine_states``."""
    paths = []
    for name, state in state_objects(machine_states(machine) if isinstance(machine, Mapping) else machine):
        payload = step_payload(state)
        if state.get("Type") != "Task" or not isinstance(payload, dict) or "notebook_path" not in payload:
            continue
        if not isinstance(payload["notebook_path"], str):
            raise DefinitionError(f"Task '{name}': Parameters.Payload.notebook_path must be a string "
                                  f"(like notebooks/prep.ipynb), not {payload['notebook_path']!r}")
        paths.append(payload["notebook_path"])
    return paths


def step_payload(state: Mapping[str, Any]) -> Any:
    """The event a Task sends: its ``Payload``, or for a rendered Fargate step the event fields
    of its container's environment (static values only)."""
    parameters = state.get("Parameters", {})
    if not isinstance(parameters, dict):
        return {}
    if "Payload" in parameters or state.get("Resource") != ECS_RUN_TASK:
        return parameters.get("Payload", {})
    try:
        environment = parameters["Overrides"]["ContainerOverrides"][0]["Environment"]
        return {item["Name"][len(FIELD_PREFIX):]: json.loads(item["Value"]) for item in environment
                if item["Name"].startswith(FIELD_PREFIX) and "Value" in item
                and FIELD_SEPARATOR not in item["Name"][len(FIELD_PREFIX):]}
    except (KeyError, IndexError, TypeError, AttributeError, ValueError):
        return {}  # not one of ours: an ECS task the definition's author wrote


def is_fargate_step(state: Mapping[str, Any]) -> bool:
    """A Task marked for Fargate: the ECS ``.waitForTaskToken`` resource with a Lambda-style
    ``Payload`` (rendered states have ``Overrides`` instead)."""
    return (state.get("Type") == "Task" and state.get("Resource") == ECS_RUN_TASK
            and isinstance(state.get("Parameters"), dict) and "Payload" in state["Parameters"])


def has_paths(value: Any) -> bool:
    return isinstance(value, dict) and any(key.endswith(".$") or has_paths(item)
                                           for key, item in value.items())


def container_variables(payload: Mapping[str, Any], where: str, prefix: str = FIELD_PREFIX) -> list[dict]:
    """The event's fields as container environment variables, each holding its JSON text.

    A ``.$`` path becomes ``States.JsonToString(path)``; an object holding paths is split into one
    variable per field, ``__`` joining the names (``QUETZAL_EVENT__launcher_arg__demand``).
    """
    variables = []
    for key, value in payload.items():
        field = key.removesuffix(".$")
        if FIELD_SEPARATOR in field or not field:
            raise DefinitionError(f"{where}: Payload field {field!r} must be a non-empty name without "
                                  f"{FIELD_SEPARATOR!r} (it joins nested names on Fargate).")
        name = prefix + field
        if key.endswith(".$"):
            variables.append({"Name": name, "Value.$": f"States.JsonToString({value})"})
        elif has_paths(value):
            variables.extend(container_variables(value, where, name + FIELD_SEPARATOR))
        else:
            variables.append({"Name": name, "Value": json.dumps(value, ensure_ascii=False)})
    return variables


def fargate_state(state: Mapping[str, Any], name: str, network: Mapping[str, Any]) -> dict[str, Any]:
    """The ECS ``runTask.waitForTaskToken`` state that runs a Fargate step's event in the image."""
    payload = state["Parameters"]["Payload"]
    if not isinstance(payload, dict):
        raise DefinitionError(f"Fargate step {name!r}: Payload must be an object of event fields.")
    limit = state.get("TimeoutSeconds", FARGATE_DEFAULT_LIMIT_S)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise DefinitionError(f"Fargate step {name!r}: TimeoutSeconds, its time limit, must be a whole "
                              f"number of seconds, not {limit!r}.")
    environment = [
        {"Name": TOKEN_VARIABLE, "Value.$": "$$.Task.Token"},
        {"Name": LIMIT_VARIABLE, "Value": str(limit)},
        *container_variables(payload, f"Fargate step {name!r}"),
    ]
    rendered = {key: value for key, value in state.items()
                if key not in {"Parameters", "TimeoutSeconds", "HeartbeatSeconds", "Retry"}}
    rendered.update({
        "Parameters": {
            "LaunchType": "FARGATE",
            "Cluster": "arn:aws:ecs:${region}:${account_id}:cluster/${fargate_cluster}",
            "TaskDefinition": "${fargate_task_definition}",
            "NetworkConfiguration": {"AwsvpcConfiguration": {
                "Subnets": list(network["subnets"]),
                "SecurityGroups": list(network["security_groups"]),
                "AssignPublicIp": "ENABLED" if network["assign_public_ip"] else "DISABLED",
            }},
            "Overrides": {"ContainerOverrides": [{"Name": FARGATE_CONTAINER, "Environment": environment}]},
        },
        "TimeoutSeconds": limit + FARGATE_START_ALLOWANCE_S,
        "HeartbeatSeconds": FARGATE_HEARTBEAT_S,
        "Retry": state.get("Retry", ECS_RETRY),
    })
    return rendered


def expand_fargate(walk: Walk, network: Mapping[str, Any]) -> None:
    """Render every Fargate step of the walked definition in place, nested Map and Parallel states
    included (anything malformed is left as it is, for validation to report): the walk still
    holds the same state objects, so it stays the walk of the result."""
    for name, state in state_objects(walk):
        if is_fargate_step(state):
            rendered = fargate_state(state, name, network)
            state.clear()
            state.update(rendered)


def fargate_steps(walk: Walk) -> list[str]:
    """The names of the states marked for Fargate."""
    return [name for name, state in state_objects(walk) if is_fargate_step(state)]


def render(definition: Mapping[str, Any], values: Mapping[str, str]) -> dict[str, Any]:
    """A new definition with every placeholder filled; an unknown one is an error naming it and
    the known ones."""
    text = json.dumps(definition)
    unknown = set(PLACEHOLDER.findall(text)) - set(values)
    if unknown:
        raise DefinitionError(
            f"step-functions.json uses unknown placeholder(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join('${' + k + '}' for k in sorted(values))}"
        )
    # Each value is JSON-escaped, so a quote in a value cannot break the document.
    return json.loads(PLACEHOLDER.sub(lambda m: json.dumps(values[m.group(1)])[1:-1], text))


def family_of(model_name: str) -> str:
    """The Fargate steps' task definition family (the Terraform module's ``<name>-step``)."""
    return model_name + FARGATE_FAMILY_SUFFIX


def deployable(walk: Walk, settings, account_id: str) -> dict[str, Any]:
    """The walked definition as deployed, a new definition: its Fargate steps rendered (in place:
    the walk is of the caller's own copy, as ``ported`` makes), then every placeholder filled."""
    family = family_of(settings.model_name)
    if not fargate_steps(walk):
        return render(walk.definition, placeholder_values(settings, account_id))
    if "-task" in family:
        raise DefinitionError(
            f"Fargate steps run the task definition {family}, and a family holding '-task' switches "
            "the front end's backend to its whole-model ECS mode (for this model or one named like "
            "its start): Fargate steps need a model name without '-task'.")
    network = {"subnets": settings.fargate_subnets, "security_groups": settings.fargate_security_groups,
               "assign_public_ip": settings.fargate_assign_public_ip}
    expand_fargate(walk, network)
    return render(walk.definition, placeholder_values(settings, account_id))


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
        "fargate_cluster": settings.fargate_cluster or settings.model_name + FARGATE_CLUSTER_SUFFIX,
        "fargate_task_definition": family_of(settings.model_name),
    }


LAMBDA_RETRY = [{"ErrorEquals": ["Lambda.ServiceException", "Lambda.AWSLambdaException",
                                 "Lambda.SdkClientException", "Lambda.TooManyRequestsException"],
                 "IntervalSeconds": 2, "MaxAttempts": 6, "BackoffRate": 2.0}]
RUN_FIELDS = {"scenario_path_S3.$": "$.scenario_path_S3", "launcher_arg.$": "$.launcher_arg",
              "metadata.$": "$.metadata"}


def lambda_state(function: str, payload: dict[str, Any], following: str | None) -> dict[str, Any]:
    """A Task invoking the ``${function}`` Lambda function with ``payload``, with the retries
    of Lambda's transient errors."""
    arn = "arn:aws:lambda:${region}:${account_id}:function:${" + function + "}"
    state = {"Type": "Task", "Resource": LAMBDA_INVOKE,
             "Parameters": {"FunctionName": arn, "Payload": payload}, "Retry": LAMBDA_RETRY}
    state.update({"Next": following} if following else {"End": True})
    return state


def default_definition(model_name: str, steps: list[str], auth_function: str = "") -> dict[str, Any]:
    """A bake's state machine: an Authorization state when there is an auth function, then one
    notebook Task per step in order, each passing its return on."""
    states: dict[str, Any] = {}
    for step, following in zip(steps, [*steps[1:], None], strict=True):
        states[step] = lambda_state("function_name", {"notebook_path": f"notebooks/{step}.ipynb",
                                                      **RUN_FIELDS}, following)
        states[step]["OutputPath"] = "$.Payload"
    start = steps[0]
    if auth_function:
        auth = lambda_state("auth_function_name", {"authorization.$": "$.authorization",
                                                   "model": "${model_name}", **RUN_FIELDS}, start)
        states, start = {"Authorization": {**auth, "ResultPath": None}, **states}, "Authorization"
    return {"Comment": f"{model_name} pipeline: one notebook per step. "
            "${...} placeholders are filled by `invoke update-steps`.",
            "StartAt": start, "States": states}
