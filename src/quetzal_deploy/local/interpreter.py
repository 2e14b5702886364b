"""An Amazon States Language interpreter for JSONPath definitions.

It runs Pass, Task, Choice, Wait, Succeed, Fail, Parallel and Map states with Step Functions'
input/output processing, Retry and Catch. Waits and retry intervals are not slept (they are
reported instead): a local run should not idle. Tasks are delegated to ``invoke_task``.

Runs are bounded as on Step Functions: an execution's history holds at most 25,000 events
(counted as Step Functions writes them, so a Pass/Choice loop ends with States.Runtime), and
each state's data is JSON of at most 256 KB. One bound is local: as retries are not waited for
(and a Task's retry runs its notebook again), a retrier retries at most LOCAL_RETRIES times.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from quetzal_deploy.contract.limits import STATE_LIMIT_BYTES, state_bytes
from quetzal_deploy.local.choice import matches
from quetzal_deploy.local.errors import UNCATCHABLE, StatesError, runtime_error
from quetzal_deploy.local.intrinsics import evaluate
from quetzal_deploy.local.jsonpaths import assign, select
from quetzal_deploy.local.templates import fill
from quetzal_deploy.local.validation import check_supported
from quetzal_deploy.output import Out
from quetzal_deploy.pipeline.definition import ECS_RUN_TASK, LAMBDA_INVOKE, machine_states

HISTORY_LIMIT = 25_000  # events in one execution's history, a Step Functions quota
ECS_OVERRIDES_LIMIT = 8192  # characters of a RunTask's overrides JSON, an ECS quota
LOCAL_RETRIES = 10
YEAR_S = 365 * 24 * 3600
# How often a Map's or Parallel's wait wakes up: Python runs a signal handler in the main thread only,
# and a signal the kernel hands to a step's thread does not end the main thread's untimed wait.
SIGNAL_CHECK_S = 0.25
# History events per state entered (StateEntered/Exited), per Task attempt (TaskScheduled,
# TaskStarted, TaskSucceeded/Failed), per Map or Parallel (Started/Succeeded), per Map item.
STATE_EVENTS, TASK_EVENTS, FAN_OUT_EVENTS, ITEM_EVENTS = 2, 3, 2, 2


@dataclass(frozen=True)
class TaskCall:
    """One Task to run: the state, the Lambda function, its payload and time limit.

    A Fargate step (``platform`` "Fargate") names its task definition as ``function`` and
    carries its container's environment (``{name: value}``) as ``payload``.
    """

    state: str
    label: str
    function: str
    payload: Any
    timeout_s: float | None
    platform: str = "Lambda"


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


class SiblingFailed(Exception):
    """A sibling Map iteration or Parallel branch failed: stop this one."""


class History:
    """Counts the events Step Functions would write; States.Runtime past HISTORY_LIMIT."""

    def __init__(self, limit: int = HISTORY_LIMIT):
        self.limit, self.events, self.lock = limit, 2, threading.Lock()  # ExecutionStarted and its end
        self.entered: dict[str, int] = {}

    def check_map(self, label: str, items: int, per_iteration: int) -> None:
        """States.Runtime naming the Map, before any item runs, when its items alone would take
        the history past the limit (each iteration writes at least ``per_iteration`` events)."""
        needed = FAN_OUT_EVENTS + items * (ITEM_EVENTS + per_iteration)
        with self.lock:
            room = self.limit - self.events
        if items and needed > room:
            raise runtime_error(
                f"Map '{label}' has {items:,} items; each iteration writes at least "
                f"{ITEM_EVENTS + per_iteration} events to the execution's history, {needed:,} in all, "
                f"and the history has room for {room:,} of Step Functions' {self.limit:,} events per "
                f"execution: it would fail after about {room // (ITEM_EVENTS + per_iteration):,} items. "
                "Split the items across several executions (or batch several per iteration).")

    def add(self, events: int, label: str, entered: bool = False) -> None:
        with self.lock:
            self.events += events
            if entered:
                self.entered[label] = self.entered.get(label, 0) + 1
            if self.events <= self.limit:
                return
            busiest = max(self.entered, key=self.entered.get, default=label)
        raise runtime_error(
            f"The execution's history reached {self.limit:,} events, Step Functions' limit for one "
            f"execution (it fails there on AWS too); state '{busiest}' was entered "
            f"{self.entered.get(busiest, 0):,} times. A loop that never ends? Check the Choice rules "
            "that lead back to it; a long loop or a large Map should start child executions instead.")


def iteration_events(machine: Mapping[str, Any]) -> int:
    """The fewest history events one run of ``machine`` writes: its states from ``StartAt`` along
    ``Next`` (a Choice, or a state met again, ends the count: later paths may be shorter)."""
    events, name, seen = 0, machine.get("StartAt"), set()
    while name in machine.get("States", {}) and name not in seen:
        seen.add(name)
        state = machine["States"][name]
        events += STATE_EVENTS + (TASK_EVENTS if state.get("Type") == "Task" else 0)
        if state.get("Type") == "Choice":
            break
        name = state.get("Next")
    return events


def function_name(function: str) -> str:
    """``my-fn`` from a name, a partial or a full ARN (qualifier dropped)."""
    parts = function.split(":")
    if "function" in parts:
        return parts[parts.index("function") + 1]
    return function


def state_size(value: Any) -> int:
    """Bytes of ``value`` as Step Functions counts them; States.Runtime when it is not JSON it could carry."""
    try:
        return state_bytes(value)
    except (ValueError, TypeError, RecursionError) as ex:
        raise runtime_error(f"The state's data is not JSON that Step Functions can carry ({ex}): a number "
                            "like 1e999 or NaN, a value nested too deeply, or one too large.") from ex


class Interpreter:
    """Runs one definition; ``invoke_task(TaskCall)`` returns what the Lambda function returned."""

    def __init__(
        self,
        definition: Mapping[str, Any],
        invoke_task: Callable[[TaskCall], Any] | None = None,
        *,
        out: Out = lambda line: None,
        max_workers: int | None = None,
        execution_name: str = "local",
        state_machine_arn: str = "arn:aws:states:local:000000000000:stateMachine:local",
    ):
        self.states = machine_states(definition)  # walked once: the pre-run checks share it
        check_supported(self.states)
        self.definition = definition
        self.invoke_task = invoke_task
        self.out = out
        self.max_workers = max_workers or os.cpu_count() or 2
        self.history = History()
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
                raise SiblingFailed()
            state = machine["States"][name]
            self.out(f"{scope.label}{name} ({state['Type']})")
            try:
                data, following = self.enter(name, state, data, scope)
            except StatesError as ex:
                ex.state = ex.state or f"{scope.label}{name}"
                raise
            name = following
        return data

    def enter(self, name, state, data, scope) -> tuple[Any, str | None]:
        """Run one state and check its output: the output and the next state's name."""
        self.history.add(STATE_EVENTS, f"{scope.label}{name}", entered=True)
        context = {**self.context_base, "State": {"Name": name, "EnteredTime": now(), "RetryCount": 0}}
        try:
            data, following = self.run_state(name, state, data, context, scope)
            size = state_size(data)
        except RecursionError as ex:
            raise runtime_error(f"The data of state '{name}' is nested too deeply to process") from ex
        if size > STATE_LIMIT_BYTES:
            raise StatesError(
                "States.DataLimitExceeded",
                f"The state/task '{name}' returned a result with a size exceeding the "
                f"maximum number of bytes service limit ({STATE_LIMIT_BYTES}).",
            )
        return data, following

    def run_state(self, name, state, data, context, scope) -> tuple[Any, str | None]:
        kind = state["Type"]
        following = None if state.get("End") else state.get("Next")
        if kind == "Choice":
            effective = select(data, state.get("InputPath", "$"), context)
            following = self.choose(name, state, effective, context)
            return select(effective, state.get("OutputPath", "$"), context), following
        if kind in ("Succeed", "Wait"):
            if kind == "Wait":
                self.out(f"  {scope.label}{name}: {wait_text(state)} not waited for locally")
            effective = select(data, state.get("InputPath", "$"), context)
            return select(effective, state.get("OutputPath", "$"), context), following
        if kind == "Fail":
            raise StatesError(*(fail_text(state, key, data, context) for key in ("Error", "Cause")))
        return self.with_handlers(name, state, data, context, scope, following)

    def with_handlers(self, name, state, data, context, scope, following):
        """Run a Pass/Task/Parallel/Map state with its Retry and Catch."""
        attempts = [0] * len(state.get("Retry", []))
        while True:
            try:
                return self.produce(name, state, data, context, scope), following
            except StatesError as ex:
                retry = first_match(state.get("Retry", []), ex.error)
                rule = state["Retry"][retry] if retry is not None else {}
                allowed = min(rule.get("MaxAttempts", 3), LOCAL_RETRIES)
                if retry is not None and attempts[retry] < allowed:
                    attempts[retry] += 1
                    context["State"]["RetryCount"] += 1
                    self.out(f"  {scope.label}{name}: {ex.error}; retry {attempts[retry]} of {allowed} "
                             f"(its {seconds_text(retry_delay(rule, attempts[retry] - 1))} interval is "
                             "not waited locally)")
                    continue
                if retry is not None and allowed < rule.get("MaxAttempts", 3):
                    self.out(f"  {scope.label}{name}: Retry[{retry}] allows {rule['MaxAttempts']:,} "
                             f"attempts; a local run stops after {LOCAL_RETRIES} (retries are not waited "
                             "for, so more would only repeat the failure)")
                catch = first_match(state.get("Catch", []), ex.error)
                if catch is None:
                    raise
                catcher = state["Catch"][catch]
                self.out(f"  {scope.label}{name}: {ex.error} caught, going to {catcher['Next']}")
                return assign(data, catcher.get("ResultPath", "$"), {"Error": ex.error, "Cause": ex.cause}), \
                    catcher["Next"]

    def produce(self, name, state, data, context, scope) -> Any:
        """Input processing, the state's own work, then result processing."""
        kind = state["Type"]
        effective = select(data, state.get("InputPath", "$"), context)
        if kind == "Map":
            result = self.run_map(name, state, effective, context, scope)
        else:
            if kind == "Task" and state.get("Resource") == ECS_RUN_TASK:
                context = {**context, "Task": {"Token": f"local-token-{secrets.token_hex(8)}"}}
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
        if state["Resource"] == ECS_RUN_TASK:
            return self.invoke_task(fargate_call(name, f"{scope.label}{name}", payload, state))
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
        self.history.add(TASK_EVENTS, call.label)
        returned = self.invoke_task(call)
        if not integrated:
            return returned
        return {"ExecutedVersion": "$LATEST", "Payload": returned, "StatusCode": 200}

    def run_parallel(self, name, state, data, scope) -> list:
        branches = state["Branches"]
        self.history.add(FAN_OUT_EVENTS, f"{scope.label}{name}")
        return self.fan_out(
            [(branch, data, scope.child(f"{name}[{i}] > ")) for i, branch in enumerate(branches)],
            len(branches),
        )

    def run_map(self, name, state, data, context, scope) -> list:
        items = select(data, state.get("ItemsPath", "$"), context)
        if not isinstance(items, list):
            raise runtime_error(f"Map '{name}': ItemsPath {state.get('ItemsPath', '$')!r} is not an array")
        processor = state.get("ItemProcessor", state.get("Iterator"))
        self.history.check_map(f"{scope.label}{name}", len(items), iteration_events(processor))
        self.history.add(FAN_OUT_EVENTS + ITEM_EVENTS * len(items), f"{scope.label}{name}")
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
            try:
                while wait(futures, timeout=SIGNAL_CHECK_S, return_when=FIRST_EXCEPTION).not_done:
                    if any(f.done() and f.exception() is not None for f in futures):
                        break
                failed = [f for f in futures if f.done() and isinstance(f.exception(), StatesError)]
                if failed:
                    raise failed[0].exception()
            finally:  # a failure or an interruption (Ctrl-C, SIGTERM): the others stop at their next state
                if not all(future.done() for future in futures):
                    stop.set()
                    for future in futures:
                        future.cancel()
        return [future.result() for future in futures]


def fargate_call(name: str, label: str, parameters: Any, state: Mapping[str, Any]) -> TaskCall:
    """A rendered Fargate step: its task definition and its container's environment."""
    try:
        overrides = parameters["Overrides"]["ContainerOverrides"][0]
        environment = {item["Name"]: item["Value"] for item in overrides.get("Environment", [])}
        call = TaskCall(state=name, label=label, function=parameters["TaskDefinition"],
                        payload=environment, timeout_s=state.get("TimeoutSeconds"), platform="Fargate")
    except (KeyError, IndexError, TypeError) as ex:
        raise runtime_error(f"Task '{name}': {ECS_RUN_TASK} needs TaskDefinition and "
                            f"Overrides.ContainerOverrides[0].Environment ({ex!r} missing)") from ex
    check_overrides_size(name, parameters["Overrides"])
    return call


def check_overrides_size(name: str, overrides: Any) -> None:
    """ECS refuses a RunTask whose overrides exceed 8,192 characters of JSON, so a Fargate step
    whose event grew too big fails there: fail the same way here, with the fix."""
    size = len(json.dumps(ecs_form(overrides), separators=(",", ":")))
    if size > ECS_OVERRIDES_LIMIT:
        raise StatesError("ECS.InvalidParameterException", (
            f"Task '{name}': the container overrides are {size:,} characters of JSON; ECS RunTask "
            f"accepts at most {ECS_OVERRIDES_LIMIT:,}. The step's event goes to the container in "
            "them: keep it small (pass big values as files in the scenario, which the step reads "
            "from S3, and keep only their names in the state)."))


def ecs_form(value: Any) -> Any:
    """Step Functions' ``Overrides`` as ECS receives them (camelCase keys: ``containerOverrides``)."""
    if isinstance(value, dict):
        return {key[:1].lower() + key[1:]: ecs_form(item) for key, item in value.items()}
    if isinstance(value, list):
        return [ecs_form(item) for item in value]
    return value


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


def retry_delay(rule: Mapping[str, Any], retries_before: int) -> float:
    """The interval Step Functions would wait before the next retry (inf past a float's range)."""
    try:
        delay = rule.get("IntervalSeconds", 1) * float(rule.get("BackoffRate", 2.0)) ** retries_before
    except OverflowError:
        delay = math.inf
    return min(delay, rule.get("MaxDelaySeconds", math.inf))


def seconds_text(seconds: float) -> str:
    return f"{seconds:g} s" if seconds <= YEAR_S else "over a year's"


def fail_text(state: Mapping[str, Any], key: str, data: Any, context: dict) -> str:
    """A Fail state's Error or Cause: the field, or what its ...Path (path or intrinsic) gives."""
    path = state.get(f"{key}Path")
    if path is None:
        return state.get(key, "")
    value = evaluate(path, data, context) if path.startswith("States.") else select(data, path, context)
    if not isinstance(value, str):
        raise runtime_error(f"{key}Path {path!r} gave {json.dumps(value)[:100]}; the {key.lower()} "
                            "must be a string")
    return value


def wait_text(state: Mapping[str, Any]) -> str:
    for key in ("Seconds", "SecondsPath", "Timestamp", "TimestampPath"):
        if key in state:
            return f"Wait {key}={state[key]}"
    return "Wait"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
