"""Definitions copied from the backend's services, taken as they are.

Real ``step-functions.json`` files name the model's function by a full ARN of another account,
a ``-dev`` name or a ``:$LATEST`` qualifier, and some run notebooks as ECS ``runTask.sync``
steps (the backend's ECS mode). ``ported`` recognises those Tasks as the model's own and
rewrites them into this template's forms: the function as
``arn:aws:lambda:${region}:${account_id}:function:${function_name}``, an ECS notebook step as a
Fargate step (``runTask.waitForTaskToken`` with a Lambda-style ``Payload``). A Task invoking
another function (not the model's, not the shared authorization function) is left alone.
"""

from __future__ import annotations

import ast
import copy
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quetzal_deploy.output import Out
from quetzal_deploy.pipeline.definition import (
    ECS_RUN_TASK,
    LAMBDA_INVOKE,
    DefinitionError,
    Walk,
    load_definition,
    machine_states,
    state_objects,
)

FUNCTION_ARN = "arn:aws:lambda:${region}:${account_id}:function:${%s}"
HANDLER_NAMES = {"handler", "lambda_handler"}
STAGE_SUFFIXES = ("-dev", "-prod", "-staging", "-test")
ECS_SYNC = ("arn:aws:states:::ecs:runTask.sync", "arn:aws:states:::ecs:runTask")
JSON_TO_STRING = re.compile(r"States\.JsonToString\((\$[^)]*)\)")
# The backend's per-step ECS container read these variables (METADATA upper-case).
ECS_FIELDS = {"notebook_path": "notebook_path", "scenario_path_s3": "scenario_path_S3",
              "launcher_arg": "launcher_arg", "metadata": "metadata"}
STANDARD_PAYLOAD = {"notebook_path": "notebooks/<step>.ipynb", "scenario_path_S3.$": "$.scenario_path_S3",
                    "launcher_arg.$": "$.launcher_arg", "metadata.$": "$.metadata"}


@dataclass
class Ported:
    """The definition with the model's Tasks in this template's forms (a copy, and its walk), and
    what was rewritten."""

    walk: Walk
    rewrites: dict[str, list[str]] = field(default_factory=dict)  # what -> the states it was in

    @property
    def definition(self) -> dict[str, Any]:
        return self.walk.definition

    def notes(self) -> list[str]:
        """One line per kind of rewrite, naming the states."""
        return [f"step-functions.json: {what} in {', '.join(states)}; run `invoke update-steps --fix` "
                "to write this into the file." for what, states in self.rewrites.items()]


def function_of(target: str) -> str:
    """``name`` of ``arn:aws:lambda:r:a:function:name[:qualifier]``, ``a:function:name``, ``name[:q]``."""
    parts = target.split(":")
    if "function" in parts[:-1]:
        return parts[parts.index("function") + 1]
    return parts[0]


def is_model_function(name: str, parameters: Mapping[str, Any], settings, sole: str | None) -> bool:
    """The model's own function: its name (a stage suffix aside), a Task sending a notebook, or the
    one function the definition invokes besides the auth function, sent the whole state."""
    payload = parameters.get("Payload")
    if name == settings.function_name or (isinstance(payload, Mapping) and "notebook_path" in payload):
        return True
    if name == sole and "Payload.$" in parameters:
        return True
    return any(name == settings.function_name + suffix for suffix in STAGE_SUFFIXES)


def sole_function(walk: Walk, settings) -> str | None:
    """The one function the definition's Tasks invoke besides the auth function, if only one."""
    names = {function_of(target[1]) for _, state in state_objects(walk)
             if state.get("Type") == "Task" and (target := lambda_target(state)) is not None}
    names -= {settings.auth_function, ""}
    return names.pop() if len(names) == 1 else None


def lambda_target(state: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(key, function)``: where a Lambda Task names its function; None for other Tasks or a
    name chosen at run time (``FunctionName.$``)."""
    parameters = state.get("Parameters")
    if state.get("Resource") == LAMBDA_INVOKE:
        if isinstance(parameters, dict) and isinstance(parameters.get("FunctionName"), str):
            return "FunctionName", parameters["FunctionName"]
        return None
    resource = state.get("Resource")
    if isinstance(resource, str) and resource.startswith("arn:aws:lambda:"):
        return "Resource", resource
    return None


def ecs_payload(state: Mapping[str, Any]) -> dict[str, Any] | None:
    """The Lambda-style Payload of a backend ECS notebook step, or None when it is not one."""
    if state.get("Resource") not in ECS_SYNC:
        return None
    try:
        environment = state["Parameters"]["Overrides"]["ContainerOverrides"][0]["Environment"]
        names = {item["Name"].lower(): item for item in environment}
    except (KeyError, IndexError, TypeError, AttributeError):
        return None
    if "notebook_path" not in names:
        return None
    payload = {}
    for name, field_name in ECS_FIELDS.items():
        item = names.get(name)
        if item is None:
            continue
        if "Value.$" in item:
            path = item["Value.$"]
            unwrapped = JSON_TO_STRING.fullmatch(path)
            payload[field_name + ".$"] = unwrapped.group(1) if unwrapped else path
        else:
            payload[field_name] = item.get("Value")
    return payload


def fargate_form(state: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """A backend ECS step as this template's Fargate step: same notebook, same event fields; its
    output is the step's event (``$.Payload``), as every step of ours passes on."""
    kept = {key: value for key, value in state.items()
            if key not in {"Type", "Resource", "Parameters", "ResultPath", "OutputPath", "ResultSelector"}}
    return {"Type": "Task", "Resource": ECS_RUN_TASK, "Parameters": {"Payload": payload},
            "OutputPath": "$.Payload", **kept}


def ported(definition: Mapping[str, Any], settings) -> Ported:
    """The definition with every Task of the model in this template's forms (see the module)."""
    result = Ported(machine_states(copy.deepcopy(dict(definition))))
    sole, problems = sole_function(result.walk, settings), []
    for name, state in state_objects(result.walk):
        if state.get("Type") != "Task":
            continue
        payload = ecs_payload(state)
        if payload is not None:
            rewritten = fargate_form(state, payload)
            state.clear()
            state.update(rewritten)
            result.rewrites.setdefault("the backend's ECS runTask.sync notebook steps became Fargate steps "
                                       "(arn:aws:states:::ecs:runTask.waitForTaskToken with a Payload)",
                                       []).append(name)
            continue
        target = lambda_target(state)
        if target is None:
            continue
        key, function = target
        parameters = state.get("Parameters") if isinstance(state.get("Parameters"), dict) else {}
        own = function_of(function)
        if settings.auth_function and own == settings.auth_function:
            placeholder = "auth_function_name"
        elif is_model_function(own, parameters if key == "FunctionName" else {"Payload": parameters},
                               settings, sole):
            placeholder = "function_name"
            if key == "FunctionName" and "Payload.$" in parameters:
                problems.append(whole_state_problem(name, parameters["Payload.$"]))
        else:
            continue
        wanted = FUNCTION_ARN % placeholder
        if function == wanted:
            continue
        (parameters if key == "FunctionName" else state)[key] = wanted
        result.rewrites.setdefault(f"{function!r} taken as ${{{placeholder}}}", []).append(name)
    if problems:
        raise DefinitionError("\n".join(problems))
    return result


def whole_state_problem(name: str, path: Any) -> str:
    """A model Task sending the whole state (``"Payload.$": "$"``), refused before any run."""
    return (f"Task {name!r} sends {json.dumps({'Payload.$': path})} to the model's function: its handler "
            "runs one notebook and needs an event naming it. Replace it with "
            f"\"Payload\": {json.dumps(STANDARD_PAYLOAD)} (a plain Python handler module becomes a "
            "script step: see the README's porting section).")


def uncalled_handler(source: str) -> str | None:
    """The name of a ``handler(event, context)``-style function a script defines and never calls
    (a Lambda handler module: run as a step's script, it would do nothing), else None."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None  # the run reports it with its line
    defined = [node.name for node in tree.body if isinstance(node, ast.FunctionDef)
               and node.name in HANDLER_NAMES and len(node.args.args) == 2]
    called = {node.func.id for node in ast.walk(tree)
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    return next((name for name in defined if name not in called), None)


def handler_module_problem(path: str, source: str) -> str | None:
    """Why a step cannot run ``path``: a Lambda handler module, which a step never calls."""
    name = uncalled_handler(source)
    if name is None:
        return None
    return (f"{path} is a Lambda handler module: it defines {name}(event, context) and never calls it, "
            "and a step runs its script from top to bottom (launcher_arg as sys.argv[1], the scenario "
            "in launcher_arg['training_folder']), so it would succeed having done nothing. Make it a "
            "step script: read the parameters from json.loads(sys.argv[1])['params'], write results "
            "under training_folder/outputs/ instead of to S3, and call your code at the end of the "
            "script (see the README's porting section: a plain Python handler).")


def fix_file(settings, out: Out = print) -> bool:
    """Write the rewrites ``ported`` makes into ``step-functions.json`` (whole or not at all);
    False when there is nothing to rewrite."""
    path: Path = settings.definition_path
    own = ported(load_definition(path), settings)
    if not own.rewrites:
        out(f"{path.name} already names the model's function with placeholders: nothing to fix.")
        return False
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(json.dumps(own.definition, indent=2, ensure_ascii=False) + "\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    for what, states in own.rewrites.items():
        out(f"Rewrote {path.name}: {what} in {', '.join(states)}")
    return True
