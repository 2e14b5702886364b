"""The report of an execution on AWS, from what AWS keeps of it: the execution's history (every
Task attempt, Map iteration and Parallel branch, timed), the notebooks' logs and the scenario's
outputs in the bucket, and the Lambda's ``REPORT`` lines in CloudWatch (peak memory)."""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from quetzal_deploy.aws import Aws, translated
from quetzal_deploy.contract.execution import readable_cause
from quetzal_deploy.errors import QuetzalError
from quetzal_deploy.output import Out
from quetzal_deploy.pipeline.executions import event_details
from quetzal_deploy.pipeline.logs import lambda_logs, milliseconds
from quetzal_deploy.pipeline.stepfunctions import state_machine
from quetzal_deploy.report.layers import MAX_LAYER_MB
from quetzal_deploy.report.model import Limits, LogView, RunView, StepView, mark_attempts, step_logs
from quetzal_deploy.settings import Settings

REPORTS_DIR = Path(".quetzal", "executions")
MAX_MEMORY = re.compile(r"RequestId:\s*(\S+).*?Max Memory Used:\s*(\d+)\s*MB")
ENDED = {"TaskSucceeded": "ok", "LambdaFunctionSucceeded": "ok", "TaskFailed": "failed",
         "LambdaFunctionFailed": "failed", "TaskTimedOut": "failed", "LambdaFunctionTimedOut": "failed",
         "TaskStartFailed": "failed", "LambdaFunctionStartFailed": "failed",
         "TaskSubmitFailed": "failed"}
STARTED = {"TaskScheduled", "LambdaFunctionScheduled"}
SCOPE_OPENS = {"MapIterationStarted", "ParallelStateStarted"}
SCOPE_CLOSES = {"MapIterationSucceeded", "MapIterationFailed", "MapIterationAborted",
                "ParallelStateSucceeded", "ParallelStateFailed", "ParallelStateAborted"}


def scopes(events: list[Mapping[str, Any]]) -> dict[int, tuple[str, ...]]:
    """Each event's place: the Map iterations (``fan[2]``) and Parallel states it runs inside,
    followed through ``previousEventId`` as Step Functions links them."""
    found: dict[int, tuple[str, ...]] = {}
    entered: dict[tuple[str, ...], str] = {}
    for event in sorted(events, key=lambda e: e["id"]):  # an event follows the one it names
        parent = found.get(event.get("previousEventId") or 0, ())
        kind, details = event["type"], event_details(event)
        if kind == "MapIterationStarted":  # it may follow a sibling iteration's last event
            name = details.get("name")
            while parent and parent[-1].startswith(f"{name}["):
                parent = parent[:-1]
            found[event["id"]] = (*parent, f"{name}[{details.get('index')}]")
        elif kind == "ParallelStateStarted":
            found[event["id"]] = (*parent, entered.get(parent, "parallel"))
        elif kind in SCOPE_CLOSES:
            found[event["id"]] = parent[:-1]
        else:
            found[event["id"]] = parent
        if kind.endswith("StateEntered"):
            entered[found[event["id"]]] = details.get("name", "")
    return found


def timestamp(event: Mapping[str, Any]) -> float:
    return event["timestamp"].timestamp()


def history_steps(events: list[Mapping[str, Any]], stopped: float | None,
                  failure: str | None) -> list[StepView]:
    """One step per Task attempt (and per Pass state, which stands in for a step's place)."""
    place = scopes(events)
    current: dict[tuple[str, ...], str] = {}
    open_steps: dict[tuple[str, ...], StepView] = {}
    steps: list[StepView] = []
    for event in sorted(events, key=lambda e: e["id"]):
        kind, details, scope = event["type"], event_details(event), place[event["id"]]
        label = " > ".join((*scope, current.get(scope, "")))
        if kind.endswith("StateEntered"):
            current[scope] = details.get("name", "")
            if kind == "PassStateEntered":
                label = " > ".join((*scope, current[scope]))
                steps.append(StepView(label, "ok", "Step Functions", started=timestamp(event), seconds=0.0))
        elif kind == "PassStateExited" and steps and steps[-1].label == label:
            steps[-1].seconds = timestamp(event) - steps[-1].started
        elif kind in STARTED:
            parameters = json.loads(details.get("parameters") or "{}") if "parameters" in details else {}
            payload = parameters.get("Payload") if isinstance(parameters, dict) else None
            notebook = payload.get("notebook_path") if isinstance(payload, dict) else None
            platform = "Fargate" if details.get("resourceType") == "ecs" else "Lambda"
            open_steps[scope] = StepView(label, "running", platform, notebook, started=timestamp(event))
            steps.append(open_steps[scope])
        elif kind in ENDED and scope in open_steps:
            step = open_steps.pop(scope)
            step.status, step.seconds = ENDED[kind], timestamp(event) - step.started
            if step.status == "failed":
                step.error = f"{details.get('error', kind)}: {readable_cause(details.get('cause', ''))}"
            step.request_id = request_id(details.get("output"))
        elif kind == "TaskStateExited":
            done = [s for s in steps if s.label == label and s.platform != "Step Functions"]
            if done:
                done[-1].state_kb = len((details.get("output") or "").encode()) / 1024
    for step in open_steps.values():  # still open when the execution ended
        step.seconds = (stopped or step.started) - step.started
        if failure:
            step.status, step.error = "failed", failure
    mark_attempts(steps)
    return steps


def request_id(output: str | None) -> str | None:
    """The Lambda request id of a lambda:invoke Task's output (it names the REPORT line)."""
    try:
        parsed = json.loads(output or "")
    except ValueError:
        return None
    metadata = parsed.get("SdkResponseMetadata") if isinstance(parsed, dict) else None
    return metadata.get("RequestId") if isinstance(metadata, dict) else None


def peak_memories(settings: Settings, aws: Aws, since: float) -> dict[str, float]:
    """Max Memory Used (MB) by Lambda request id, from the function's REPORT lines."""
    try:
        events = lambda_logs(settings, aws).events(milliseconds_since(since))
        return {m.group(1): float(m.group(2)) for e in events if (m := MAX_MEMORY.search(e["message"]))}
    except QuetzalError:  # no log group yet
        return {}


def milliseconds_since(epoch: float) -> int:
    from datetime import UTC, datetime

    return milliseconds(datetime.fromtimestamp(epoch, UTC))


def download(s3, bucket: str, prefix: str, folder: Path, suffixes: Iterable[str]) -> list[str]:
    """The objects under ``prefix`` ending in ``suffixes`` into ``folder``; notes on those skipped."""
    notes = []
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    for item in (item for page in pages for item in page.get("Contents", [])):
        key = item["Key"]
        if not key.endswith(tuple(suffixes)) or key.endswith("/"):
            continue
        if item["Size"] > MAX_LAYER_MB * 2**20:
            notes.append(f"s3://{bucket}/{key}: {item['Size'] / 2**20:.0f} MB, not downloaded for the report")
            continue
        target = folder / key[len(prefix):]
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(target))
    return notes


def bucket_logs(s3, bucket: str, scenario: str, steps: list[StepView]) -> list[LogView]:
    """The logs the steps' notebooks wrote to ``<scenario>/logs/``."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{scenario}/logs/")
    keys = [item["Key"][len(scenario) + 1:] for page in pages for item in page.get("Contents", [])]

    def read(key: str) -> str:
        return s3.get_object(Bucket=bucket, Key=f"{scenario}/{key}")["Body"].read().decode("utf-8", "replace")

    return step_logs(steps, keys, read)


def execution_arn(settings: Settings, aws: Aws, name: str) -> str:
    if name.startswith("arn:"):
        return name
    machine = state_machine(settings, aws)
    return f"{machine.arn.replace(':stateMachine:', ':execution:')}:{name}"


def execution_view(settings: Settings, aws: Aws, name: str, folder: Path) -> RunView:
    """The execution as the report shows it; its outputs and inputs downloaded under ``folder``."""
    machine = state_machine(settings, aws)
    arn = execution_arn(settings, aws, name)
    missing = (f"No execution {name!r} of {settings.state_machine}: list them with `invoke executions` "
               "(give the name or the ARN).")
    with translated(settings.profile, {"ExecutionDoesNotExist": missing, "InvalidArn": missing}):
        described = machine.client.describe_execution(executionArn=arn)
    events = list(machine.history(arn))
    started = described["startDate"].timestamp()
    stopped = described["stopDate"].timestamp() if described.get("stopDate") else None
    failure = None
    if described["status"] != "SUCCEEDED" and described["status"] != "RUNNING":
        failed = next((event_details(e) for e in reversed(events) if e["type"] == "ExecutionFailed"), {})
        error = described.get("error") or failed.get("error")
        cause = described.get("cause") or failed.get("cause")
        failure = f"{error or described['status']}: {readable_cause(cause or '')}".rstrip(": ")
    steps = history_steps(events, stopped, failure)
    memory = peak_memories(settings, aws, started)
    for step in steps:
        step.peak_memory_mb = memory.get(step.request_id or "")
    inputs = json.loads(described.get("input") or "{}")
    scenario = str(inputs.get("scenario_path_S3", "")).strip("/") if isinstance(inputs, dict) else ""
    s3 = aws.client("s3")
    notes = ["Figures from AWS: time from the execution's history, peak memory from the Lambda's REPORT "
             "lines; /tmp use is not recorded on AWS (a local run measures it)."]
    logs = []
    if scenario:
        with translated(settings.profile):
            for kind, suffixes in (("outputs", (".geojson", ".json")), ("inputs", (".geojson",))):
                notes += download(s3, settings.bucket, f"{scenario}/{kind}/", folder / kind, suffixes)
            logs = bucket_logs(s3, settings.bucket, scenario, steps)
    failed_state = next((s.label for s in reversed(steps) if s.status == "failed"), None)
    return RunView(
        kind="AWS execution", model=settings.model_name, scenario=scenario or "?", name=described["name"],
        status=described["status"], started=started, seconds=(stopped - started) if stopped else None,
        limits=Limits(settings.timeout_s, settings.memory_mb, settings.storage_mb, settings.fargate_memory_mb,
                      settings.fargate_storage_gb * 1024),
        steps=steps, logs=logs, outputs=folder / "outputs", inputs=folder / "inputs", error=failure,
        failed_state=failed_state, notes=notes, tiles=settings.report_tile_url)


def write_execution_report(settings: Settings, aws: Aws, name: str, out: Out = print) -> Path:
    """``.quetzal/executions/<execution>/report.html``, built from AWS; prints its path."""
    from quetzal_deploy.report.html import write_report

    with tempfile.TemporaryDirectory(prefix="quetzal-report-") as work:
        view = execution_view(settings, aws, name, Path(work))
        path = write_report(view, settings.root / REPORTS_DIR / view.name / "report.html")
    out(f"Report:  {path}")
    return path
