"""Run the pipeline on AWS: start an execution as the front end does, follow it, explain failures."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from quetzal_deploy.aws import Aws, s3_object, translated
from quetzal_deploy.contract.execution import execution_input, name_slug, readable_cause
from quetzal_deploy.contract.layers import bucket_layers, crs_warnings
from quetzal_deploy.contract.params import (
    DEFAULT_CHOICE,
    PARAMS_FILE,
    ParamsError,
    checked_entries,
    front_end_params,
    load_overrides,
    merge_params,
    parse_json,
)
from quetzal_deploy.errors import RunError
from quetzal_deploy.output import Out
from quetzal_deploy.pipeline.definition import machine_states, state_objects
from quetzal_deploy.pipeline.stepfunctions import StateMachine, state_machine
from quetzal_deploy.runtime.notebook import log_name
from quetzal_deploy.settings import Settings
from quetzal_deploy.sync.scenarios import ScenarioStore, check_name, user_email

LOG_TAIL_LINES = 20
FIRST_POLL_S, MAX_POLL_S = 1.0, 5.0
DESCRIBE_WORKERS = 8  # DescribeExecution calls at once: well under Step Functions' request quota
# What a run holding the scenario's lease does, and what a run refused by the lease did not do.
CLEARING = ("cleared for a run", "no run was started")
STARTING = ("read to start a run", "no run was started")


class Scenario:
    """A scenario folder ``<name>/`` in the model's bucket."""

    def __init__(self, s3, bucket: str, name: str, profile: str | None = None):
        self.s3, self.bucket, self.profile = s3, bucket, profile
        self.name = check_name(name.removesuffix("/"))

    @property
    def prefix(self) -> str:
        return f"{self.name}/"

    def read(self, key: str) -> bytes | None:
        """An object's bytes, or None when it does not exist."""
        found = s3_object(self.s3, self.bucket, self.prefix + key, self.profile, self.known)
        return None if found is None else found[0]

    def check_exists(self) -> None:
        with translated(self.profile, self.known):
            listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)
        if not listed.get("KeyCount"):
            raise RunError(f"Scenario {self.name!r} is not in s3://{self.bucket}/: "
                           f"run `invoke upload-scenarios {self.name}` first.")

    @property
    def known(self) -> dict[str, str]:
        return {"NoSuchBucket": f"Bucket {self.bucket} does not exist: run `invoke infra` first "
                                "(or check MODEL_NAME in .env)."}

    def entries(self) -> list[Mapping[str, Any]]:
        """``inputs/params.json`` (checked entries), or no entry when the scenario has none."""
        raw = self.read(PARAMS_FILE)
        if raw is None:
            return []
        where = f"s3://{self.bucket}/{self.prefix}{PARAMS_FILE}"
        try:
            return checked_entries(parse_json(raw, where), where)
        except ParamsError as ex:
            raise RunError(f"{ex} Fix it in scenarios/{self.name}/ and upload the scenario again.") from ex

    def layer_warnings(self) -> list[str]:
        """A warning per output layer the front end would refuse (no CRS it reads)."""
        with translated(self.profile, self.known):
            return crs_warnings(bucket_layers(self.s3, self.bucket, f"{self.prefix}outputs/"))

    def log_tail(self, notebook_path: str, lines: int = LOG_TAIL_LINES) -> tuple[str, list[str] | None]:
        """Where the notebook's log is, and its last ``lines`` lines (None: no log)."""
        key = log_name(notebook_path)
        raw = self.read(key)
        text = None if raw is None else raw.decode("utf-8", errors="replace").splitlines()[-lines:]
        return f"s3://{self.bucket}/{self.prefix}{key}", text


def execution_name(scenario: str) -> str:
    """A unique, valid execution name that says which scenario ran and when."""
    return f"{name_slug(scenario)}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def event_details(event: Mapping[str, Any]) -> dict[str, Any]:
    return next((v for k, v in event.items() if k.endswith("EventDetails")), {})


class Follower:
    """Prints an execution's states as they start and end, and keeps what a failure report needs."""

    def __init__(self, machine: StateMachine, execution_arn: str, out: Out = print,
                 sleep: Callable[[float], None] = time.sleep):
        self.machine, self.arn, self.out, self.sleep = machine, execution_arn, out, sleep
        self.seen = 0
        self.open_states: dict[str, float] = {}
        self.last_failed_state = None
        self.last_error: dict[str, Any] = {}

    def read_new_events(self) -> None:
        for index, event in enumerate(self.machine.history(self.arn)):
            if index >= self.seen:
                self.on_event(event)
                self.seen = index + 1

    def on_event(self, event: Mapping[str, Any]) -> None:
        kind, details = event["type"], event_details(event)
        started = event["timestamp"].timestamp()
        if kind.endswith("StateEntered"):
            self.open_states[details["name"]] = started
            self.out(f"  → {details['name']}")
        elif kind.endswith("StateExited"):
            entered = self.open_states.pop(details["name"], started)
            self.out(f"  ✓ {details['name']} ({started - entered:.1f} s)")
        elif "error" in details or "cause" in details:
            state = next(reversed(self.open_states), self.last_failed_state)
            if state and state != self.last_failed_state:
                self.out(f"  ✗ {state} ({details.get('error', 'failed')})")
            self.last_error, self.last_failed_state = details, state

    def follow(self) -> dict[str, Any]:
        """Poll until the execution ends; returns its final description."""
        delay = FIRST_POLL_S
        while True:
            described = self.machine.describe(self.arn)
            self.read_new_events()
            if described["status"] != "RUNNING":
                return described
            self.sleep(delay)
            delay = min(delay * 1.5, MAX_POLL_S)

    def failed_state(self) -> str | None:
        return self.last_failed_state or next(reversed(self.open_states), None)


def notebook_of(definition: Mapping[str, Any], state_name: str) -> str | None:
    for name, state in state_objects(machine_states(definition)):
        payload = state.get("Parameters", {}).get("Payload", {})
        if name == state_name and isinstance(payload, dict) and "notebook_path" in payload:
            return payload["notebook_path"]
    return None


def report_failure(described: Mapping[str, Any], follower: Follower, machine: StateMachine,
                   scenario: Scenario, out: Out) -> None:
    """The failing state, its error and cause, and the tail of that notebook's log."""
    state = follower.failed_state()
    error = described.get("error") or follower.last_error.get("error", "")
    cause = described.get("cause") or follower.last_error.get("cause", "")
    out(f"Failed state: {state or 'unknown'}")
    out(f"Error: {error or 'none given'}")
    if cause:
        out(f"Cause: {readable_cause(cause)}")
    notebook = notebook_of(machine.definition(), state) if state else None
    if notebook is None:
        return
    where, tail = scenario.log_tail(notebook)
    if tail is None:
        out(f"No log at {where}: the notebook did not start or its log was not uploaded.")
        return
    out(f"Last {len(tail)} lines of {where}:")
    for line in tail:
        out(f"  | {line}")


def sent_input(described: Mapping[str, Any]) -> dict[str, Any]:
    """The execution's input as sent (``contract.execution``), or ``{}`` when it is not an object."""
    try:
        sent = json.loads(described.get("input") or "{}")
    except ValueError:
        return {}
    return sent if isinstance(sent, dict) else {}


def running_on(machine: StateMachine, scenario: str) -> dict[str, Any] | None:
    """The newest RUNNING execution whose input's ``scenario_path_S3`` is ``scenario/`` (described),
    or None: a ListExecutions per page, then one DescribeExecution per running execution (the
    listing has no input), ``DESCRIBE_WORKERS`` at a time."""
    arns = [listed["executionArn"] for listed in machine.running()]
    with ThreadPoolExecutor(DESCRIBE_WORKERS) as pool:
        for described in pool.map(machine.describe, arns):
            if str(sent_input(described).get("scenario_path_S3", "")).rstrip("/") == scenario:
                return described
    return None


def already_running(settings: Settings, scenario: str, described: Mapping[str, Any]) -> str:
    """Who started the running execution of ``scenario``, when, and how to follow or stop it."""
    metadata = sent_input(described).get("metadata")
    who = (metadata.get("user_email") if isinstance(metadata, dict) else None) or "someone (no email sent)"
    started = described["startDate"].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    profile = f" --profile {settings.profile}" if settings.profile else ""
    stop = (f"aws stepfunctions stop-execution --execution-arn {described['executionArn']} "
            f"--region {settings.region}{profile}")
    return (f"scenario {scenario!r} is already running on AWS: execution {described['name']}, started "
            f"{started} by {who}. Nothing was cleared and no run was started. Follow it with `invoke "
            f"executions`; or stop it (`{stop}`, or Stop execution in the Step Functions console) and "
            "re-run.")


def start_run(settings: Settings, aws: Aws, machine: StateMachine, scenario: Scenario, payload: dict,
              keep_outputs: bool, out: Out) -> str:
    """Under the scenario's lease: refuse while an execution of it runs, clear the last run's
    ``outputs/`` and ``logs/`` (unless ``keep_outputs``), start the execution; returns its ARN."""
    store = ScenarioStore(settings, aws)
    email = payload["metadata"]["user_email"]
    with store.lease(scenario.name, email, STARTING if keep_outputs else CLEARING) as lease:
        running = running_on(machine, scenario.name)
        if running is not None:
            raise RunError(already_running(settings, scenario.name, running))
        if keep_outputs:
            out(f"Kept s3://{scenario.bucket}/{scenario.prefix}outputs/ and logs/ (--keep-outputs).")
        else:
            cleared = store.clear_results(scenario.name)
            counts = " and ".join(f"{folder}/ ({count} object(s))" for folder, count in cleared.items())
            out(f"Cleared the last run's results, as the front end does: s3://{scenario.bucket}/"
                f"{scenario.prefix} {counts}.")
        lease.check()
        return machine.start(execution_name(scenario.name), payload)


def seconds_between(start: datetime, stop: datetime | None) -> float:
    return ((stop or datetime.now(UTC)) - start).total_seconds()


def run_remote(settings: Settings, aws: Aws, scenario: str, params=None, choice=None, wait=True,
               out: Out = print, authorization: str = "", keep_outputs: bool = False) -> int:
    """Run the pipeline on AWS on ``scenario``; returns the exit code (0 when it succeeded).

    ``params`` is ``{category: {name: value}}`` (or flat ``{name: value}``) or the path of a JSON
    file holding it; it overrides the scenario's ``inputs/params.json`` values, which are sent
    too, as the front end does. As the front end's Run button, it refuses while an execution of
    the scenario runs and deletes the last run's outputs and logs first (``start_run``).
    """
    overrides = load_overrides(params) if isinstance(params, (str, Path)) else (params or {})
    choice = choice or DEFAULT_CHOICE
    bucket = Scenario(aws.client("s3"), settings.bucket, scenario, settings.profile)
    bucket.check_exists()
    defaults, variants = front_end_params(bucket.entries(), choice)
    machine = state_machine(settings, aws)
    payload = execution_input(bucket.name, merge_params(defaults, overrides), choice, variants,
                              user_email(settings), authorization)
    arn = start_run(settings, aws, machine, bucket, payload, keep_outputs, out)
    out(f"Started {arn}")
    if not wait:
        out("Not waiting: follow it with `invoke executions`.")
        return 0
    follower = Follower(machine, arn, out)
    try:
        described = follower.follow()
    except KeyboardInterrupt:
        out(f"Stopped following; the execution goes on: {arn}")
        return 130
    seconds = seconds_between(described["startDate"], described.get("stopDate"))
    out(f"Execution {described['status']} after {seconds:.1f} s")
    for warning in bucket.layer_warnings():
        out(warning)
    if described["status"] == "SUCCEEDED":
        return 0
    report_failure(described, follower, machine, bucket, out)
    return 1


def list_executions(settings: Settings, aws: Aws, last: int = 10) -> list[dict[str, Any]]:
    """The ``last`` most recent executions: name, status, start, duration in seconds."""
    if last < 1:
        raise RunError("--last must be 1 or more")
    return [
        {
            "name": e["name"],
            "status": e["status"],
            "start": e["startDate"],
            "seconds": seconds_between(e["startDate"], e.get("stopDate")),
        }
        for e in state_machine(settings, aws).executions(last)
    ]


def executions_table(executions: Iterable[Mapping[str, Any]]) -> str:
    """Executions as aligned text columns."""
    rows = [("STARTED (UTC)", "STATUS", "DURATION", "NAME")]
    for e in executions:
        started = e["start"].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        rows.append((started, e["status"], f"{e['seconds']:.1f} s", e["name"]))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3]
        for row in rows
    )
