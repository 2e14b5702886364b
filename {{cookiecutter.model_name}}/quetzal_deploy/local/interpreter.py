"""An Amazon States Language interpreter for JSONPath definitions.

It runs Pass, Task, Choice, Wait, Succeed, Fail, Parallel and Map states with Step Functions'
input/output processing, Retry and Catch. Waits and retry intervals are not slept (they are
reported instead): a local run should not idle. Tasks are delegated to ``invoke_task``.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from quetzal_deploy.definition import LAMBDA_INVOKE
from quetzal_deploy.local.choice import matches
from quetzal_deploy.local.errors import UNCATCHABLE, StatesError, runtime_error
from quetzal_deploy.local.jsonpaths import assign, select
from quetzal_deploy.local.templates import fill
from quetzal_deploy.local.validation import check_supported

STATE_LIMIT_BYTES = 256 * 1024


@dataclass(frozen=True)
class TaskCall:
    """One Task to run: the state, the Lambda function, its payload and time limit."""

    state: str
    label: str
    function: str
    payload: Any
    timeout_s: float | None


@dataclass
class Scope:
    """Where a state runs (for progress lines) and whether its Map/Parallel was cancelled."""

    label: str = ""
    parent: Scope | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def cancelled(self) -> bool:
        return self.stop.is_set() or (self.parent is not None and self.parent.cancelled)

    def child(self, label: str) -> Scope:
        return Scope(f"{self.label}{label}", self)


class Cancelled(Exception):
    """A sibling Map iteration or Parallel branch failed: stop this one."""


def function_name(function: str) -> str:
    """``my-fn`` from a name, a partial or a full ARN (qualifier dropped)."""
    parts = function.split(":")
    if "function" in parts:
        return parts[parts.index("function") + 1]
    return function


def state_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode())


class Interpreter:
    """Runs one definition; ``invoke_task(TaskCall)`` returns what the Lambda function returned."""

    def __init__(
        self,
        definition: Mapping[str, Any],
        invoke_task: Callable[[TaskCall], Any] | None = None,
        *,
        log: Callable[[str], None] = lambda line: None,
        max_workers: int | None = None,
        execution_name: str = "local",
        state_machine_arn: str = "arn:aws:states:local:000000000000:stateMachine:local",
    ):
        check_supported(definition)
        self.definition = definition
        self.invoke_task = invoke_task
        self.log = log
        self.max_workers = max_workers or os.cpu_count() or 2
        self.context_base = {
            "Execution": {
                "Id": state_machine_arn.replace(":stateMachine:", ":execution:") + f":{execution_name}",
                "Name": execution_name,
                "StartTime": now(),
            },
            "StateMachine": {"Id": state_machine_arn, "Name": state_machine_arn.rsplit(":", 1)[-1]},
        }

    def execute(self, data: Any) -> Any:
        """The execution's output; StatesError when it fails."""
        self.context_base["Execution"]["Input"] = data
        return self.run_machine(self.definition, data, Scope())

    def run_machine(self, machine: Mapping[str, Any], data: Any, scope: Scope) -> Any:
        name = machine["StartAt"]
        while name is not None:
            if scope.cancelled:
                raise Cancelled()
            state = machine["States"][name]
            context = {**self.context_base, "State": {"Name": name, "EnteredTime": now(), "RetryCount": 0}}
            self.log(f"{scope.label}{name} ({state['Type']})")
            try:
                data, following = self.run_state(name, state, data, context, scope)
                if state_size(data) > STATE_LIMIT_BYTES:
                    raise StatesError(
                        "States.DataLimitExceeded",
                        f"The state/task '{name}' returned a result with a size exceeding the "
                        f"maximum number of bytes service limit ({STATE_LIMIT_BYTES}).",
                    )
            except StatesError as ex:
                ex.state = ex.state or f"{scope.label}{name}"
                raise
            name = following
        return data

    def run_state(self, name, state, data, context, scope) -> tuple[Any, str | None]:
        kind = state["Type"]
        following = None if state.get("End") else state.get("Next")
        if kind == "Choice":
            effective = select(data, state.get("InputPath", "$"), context)
            following = self.choose(name, state, effective, context)
            return select(effective, state.get("OutputPath", "$"), context), following
        if kind in ("Succeed", "Wait"):
            if kind == "Wait":
                self.log(f"  {scope.label}{name}: {wait_text(state)} not waited for locally")
            effective = select(data, state.get("InputPath", "$"), context)
            return select(effective, state.get("OutputPath", "$"), context), following
        if kind == "Fail":
            raise StatesError(
                select(data, state["ErrorPath"], context) if "ErrorPath" in state else state.get("Error", ""),
                select(data, state["CausePath"], context) if "CausePath" in state else state.get("Cause", ""),
            )
        return self.with_handlers(name, state, data, context, scope, following)

    def with_handlers(self, name, state, data, context, scope, following):
        """Run a Pass/Task/Parallel/Map state with its Retry and Catch."""
        attempts = [0] * len(state.get("Retry", []))
        while True:
            try:
                return self.produce(name, state, data, context, scope), following
            except StatesError as ex:
                retry = first_match(state.get("Retry", []), ex.error)
                if retry is not None and attempts[retry] < state["Retry"][retry].get("MaxAttempts", 3):
                    rule = state["Retry"][retry]
                    delay = rule.get("IntervalSeconds", 1) * rule.get("BackoffRate", 2.0) ** attempts[retry]
                    delay = min(delay, rule.get("MaxDelaySeconds", delay))
                    attempts[retry] += 1
                    context["State"]["RetryCount"] += 1
                    self.log(f"  {scope.label}{name}: {ex.error}; retry {attempts[retry]} of "
                             f"{rule.get('MaxAttempts', 3)} (its {delay:g} s interval is not waited locally)")
                    continue
                catch = first_match(state.get("Catch", []), ex.error)
                if catch is None:
                    raise
                catcher = state["Catch"][catch]
                self.log(f"  {scope.label}{name}: {ex.error} caught, going to {catcher['Next']}")
                return assign(data, catcher.get("ResultPath", "$"), {"Error": ex.error, "Cause": ex.cause}), \
                    catcher["Next"]

    def produce(self, name, state, data, context, scope) -> Any:
        """Input processing, the state's own work, then result processing."""
        kind = state["Type"]
        effective = select(data, state.get("InputPath", "$"), context)
        if kind == "Map":
            result = self.run_map(name, state, effective, context, scope)
        else:
            if "Parameters" in state:
                effective = fill(state["Parameters"], effective, context)
            if kind == "Pass":
                result = state.get("Result", effective)
            elif kind == "Task":
                result = self.run_task(name, state, effective, scope)
            else:
                result = self.run_parallel(name, state, effective, scope)
        if "ResultSelector" in state:
            result = fill(state["ResultSelector"], result, context)
        combined = assign(data, state.get("ResultPath", "$"), result)
        return select(combined, state.get("OutputPath", "$"), context)

    def choose(self, name, state, data, context) -> str:
        for rule in state.get("Choices", []):
            if matches(rule, data, context):
                return rule["Next"]
        if "Default" in state:
            return state["Default"]
        raise StatesError("States.NoChoiceMatched",
                          f"No rule of Choice state '{name}' matched and it has no Default")

    def run_task(self, name, state, payload, scope) -> Any:
        if self.invoke_task is None:
            raise runtime_error(f"Task '{name}' cannot run: this interpreter has no task runner")
        integrated = state["Resource"] == LAMBDA_INVOKE
        if integrated and not (isinstance(payload, dict) and "FunctionName" in payload):
            raise runtime_error(f"Task '{name}': Parameters need FunctionName for {LAMBDA_INVOKE}")
        call = TaskCall(
            state=name,
            label=f"{scope.label}{name}",
            function=function_name(payload["FunctionName"] if integrated else state["Resource"]),
            payload=payload.get("Payload", {}) if integrated else payload,
            timeout_s=state.get("TimeoutSeconds"),
        )
        returned = self.invoke_task(call)
        if not integrated:
            return returned
        return {"ExecutedVersion": "$LATEST", "Payload": returned, "StatusCode": 200}

    def run_parallel(self, name, state, data, scope) -> list:
        branches = state["Branches"]
        return self.fan_out(
            [(branch, data, scope.child(f"{name}[{i}] > ")) for i, branch in enumerate(branches)],
            len(branches),
        )

    def run_map(self, name, state, data, context, scope) -> list:
        items = select(data, state.get("ItemsPath", "$"), context)
        if not isinstance(items, list):
            raise runtime_error(f"Map '{name}': ItemsPath {state.get('ItemsPath', '$')!r} is not an array")
        processor = state.get("ItemProcessor", state.get("Iterator"))
        selector = state.get("ItemSelector", state.get("Parameters"))
        jobs = []
        for index, value in enumerate(items):
            # $$.Map.Item exists only while the ItemSelector is filled, as on Step Functions.
            item_context = {**context, "Map": {"Item": {"Index": index, "Value": value}}}
            item_input = value if selector is None else fill(selector, data, item_context)
            jobs.append((processor, item_input, scope.child(f"{name}[{index}] > ")))
        return self.fan_out(jobs, state.get("MaxConcurrency", 0) or len(jobs))

    def fan_out(self, jobs, concurrency) -> list:
        """Run sub-machines concurrently; the first failure cancels the others and is raised."""
        if not jobs:
            return []
        stop = threading.Event()
        for job in jobs:
            job[2].stop = stop
        workers = max(1, min(concurrency, len(jobs), self.max_workers))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(self.run_machine, *job) for job in jobs]
            wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in futures if f.done() and isinstance(f.exception(), StatesError)]
            if failed:
                stop.set()
                for future in futures:
                    future.cancel()
                raise failed[0].exception()
        return [future.result() for future in futures]


def first_match(handlers: list, error: str) -> int | None:
    """The index of the first Retry/Catch whose ErrorEquals covers ``error``."""
    for index, handler in enumerate(handlers):
        names = handler["ErrorEquals"]
        if error in names:
            return index
        if error in UNCATCHABLE:
            continue
        if "States.ALL" in names or ("States.TaskFailed" in names and error != "States.Timeout"):
            return index
    return None


def wait_text(state: Mapping[str, Any]) -> str:
    for key in ("Seconds", "SecondsPath", "Timestamp", "TimestampPath"):
        if key in state:
            return f"Wait {key}={state[key]}"
    return "Wait"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
