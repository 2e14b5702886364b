"""The model's state machine: validate ``step-functions.json``, deploy it, start and read executions."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from itertools import islice
from typing import Any

from quetzal_deploy.aws import Aws, translated
from quetzal_deploy.errors import AwsError, ConfigError
from quetzal_deploy.output import Out
from quetzal_deploy.pipeline.definition import (
    DefinitionError,
    Walk,
    deployable,
    duplicate_state_names,
    fargate_steps,
    front_end_warnings,
    load_definition,
    machine_states,
    notebook_paths,
)
from quetzal_deploy.pipeline.front_steps import STEPS_KEY, display_warnings, front_end_steps, steps_json
from quetzal_deploy.pipeline.porting import ported
from quetzal_deploy.settings import Settings
from quetzal_deploy.sync.scenarios import ScenarioStore, user_email


class StateMachine:
    """One state machine, found by name, behind an injected Step Functions client."""

    def __init__(self, client, name: str, profile: str | None = None):
        self.client = client
        self.name = name
        self.profile = profile

    def call(self, method: str, **kwargs) -> dict[str, Any]:
        """Call the client; botocore errors become AwsError with a fix hint."""
        with translated(self.profile):
            return getattr(self.client, method)(**kwargs)

    def pages(self, method: str, key: str, **kwargs) -> Iterator[dict[str, Any]]:
        """Every item of a paginated call."""
        with translated(self.profile):
            for page in self.client.get_paginator(method).paginate(**kwargs):
                yield from page[key]

    @property
    def arn(self) -> str:
        """The state machine's ARN; a missing one is an error that says to run ``invoke infra``."""
        if not hasattr(self, "_arn"):
            found = [m["stateMachineArn"] for m in self.pages("list_state_machines", "stateMachines")
                     if m["name"] == self.name]
            if not found:
                raise AwsError(
                    f"State machine {self.name!r} does not exist in this account and region: "
                    "run `invoke infra` first (or check MODEL_NAME and AWS_REGION in .env)."
                )
            self._arn = found[0]
        return self._arn

    def definition(self) -> dict[str, Any]:
        return json.loads(self.call("describe_state_machine", stateMachineArn=self.arn)["definition"])

    def update(self, definition: dict[str, Any]) -> None:
        self.call("update_state_machine", stateMachineArn=self.arn, definition=json.dumps(definition))

    def start(self, name: str, execution_input: dict[str, Any]) -> str:
        """Start an execution; returns its ARN."""
        started = self.call("start_execution", stateMachineArn=self.arn, name=name,
                            input=json.dumps(execution_input))
        return started["executionArn"]

    def describe(self, execution_arn: str) -> dict[str, Any]:
        return self.call("describe_execution", executionArn=execution_arn)

    def history(self, execution_arn: str) -> Iterator[dict[str, Any]]:
        """The execution's events, oldest first, every page."""
        return self.pages("get_execution_history", "events", executionArn=execution_arn)

    def running(self) -> Iterator[dict[str, Any]]:
        """The RUNNING executions (listed: no input), every page, newest first."""
        return self.pages("list_executions", "executions", stateMachineArn=self.arn, statusFilter="RUNNING")

    def executions(self, last: int) -> list[dict[str, Any]]:
        """The ``last`` most recent executions, newest first."""
        return list(islice(self.pages("list_executions", "executions", stateMachineArn=self.arn), last))


def state_machine(settings: Settings, aws: Aws) -> StateMachine:
    return StateMachine(aws.client("stepfunctions"), settings.state_machine, settings.profile)


# statelint refuses MaxAttempts 99999999, the largest value Step Functions accepts.
STATELINT_OFF_BY_ONE = re.compile(r".*\.MaxAttempts is 99999999 but allowed ceiling is 99999999")


def asl_problems(walk: Walk) -> list[str]:
    """What the Amazon States Language linter (statelint) finds wrong in the walked definition,
    and duplicate state names."""
    from statelint.linter import Linter  # loaded by the flows that check a definition only

    return duplicate_state_names(walk) or [p for p in Linter.validate(walk.definition)
                                           if not STATELINT_OFF_BY_ONE.fullmatch(p)]


def validated_definition(settings: Settings, account_id: str, note: Out = lambda line: None) -> Walk:
    """``step-functions.json`` checked (JSON, notebooks, ASL), the model's Tasks in our forms (each
    kind of rewrite told to ``note``) and its placeholders filled: the walk of the result."""
    own = ported(load_definition(settings.definition_path), settings)
    for line in own.notes():
        note(f"Note: {line}")
    missing = [path for path in notebook_paths(own.walk) if not (settings.root / path).is_file()]
    if missing:
        raise DefinitionError(
            f"step-functions.json runs notebook(s) that do not exist: {', '.join(missing)}; "
            f"add them under {settings.notebooks_dir.name}/ or fix their notebook_path."
        )
    fargate = fargate_steps(own.walk)
    if fargate and not (settings.fargate_subnets and settings.fargate_security_groups):
        raise DefinitionError(
            f"step-functions.json runs {', '.join(fargate)} on Fargate, but FARGATE_SUBNETS and "
            "FARGATE_SECURITY_GROUPS in .env are not both set: name the existing subnets and "
            "security groups the tasks run in (the same as the module's fargate_* variables)."
        )
    rendered = machine_states(deployable(own.walk, settings, account_id))
    problems = asl_problems(rendered)
    if problems:
        raise DefinitionError(
            "step-functions.json is not valid Amazon States Language: " + "; ".join(problems)
        )
    return rendered


def warn_line(line: str) -> None:
    print(line, file=sys.stderr)


def update_steps(settings: Settings, aws: Aws, dry_run: bool = False,
                 out: Out = print, warn: Out = warn_line) -> None:
    """Deploy ``step-functions.json`` to the model's state machine (``dry_run``: print it only)."""
    states = validated_definition(settings, aws.account_id, warn)
    rendered = states.definition
    for warning in front_end_warnings(states) + display_warnings(states):
        warn(f"Warning: {warning}")
    if dry_run:
        out(json.dumps(rendered, indent=2))
        return
    state_machine(settings, aws).update(rendered)
    steps = ", ".join(notebook_paths(states)) or "no notebook"
    out(f"Updated state machine {settings.state_machine}: {steps}")
    publish_steps(settings, aws, rendered, out)


def publish_steps(settings: Settings, aws: Aws, definition: dict[str, Any],
                  out: Out) -> None:
    """Write ``_common/steps.json``, the steps the front end lists per pipeline variant."""
    try:
        email = user_email(settings)
    except ConfigError:
        email = None
    ScenarioStore(settings, aws).put_json(STEPS_KEY, steps_json(definition), email)
    counts = ", ".join(f"{v['name']}: {len(v['steps'])} step(s)" for v in front_end_steps(definition))
    out(f"Published s3://{settings.bucket}/{STEPS_KEY} ({counts})")
