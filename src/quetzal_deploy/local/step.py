"""One Task of a local run, on this machine, within the limits AWS would give it.

A Lambda Task runs the handler's ``run_step`` (same event, same ``RETURN:`` merging, same logs)
in this process, in its own working folder, with the model's Lambda limits: the time limit is
enforced by the handler, memory and ``/tmp`` size are watched from the step's figures and fail
the step as Lambda would. A Fargate step runs the same way from its rendered ECS state (the event
read back from its container's environment, as the container's entry point reads it), with
Fargate's limits: its own time limit, the task's memory and storage. With ``--docker`` the
model's image runs it instead (``container.py``); its figures, measured in its container, are
checked against the Lambda's or the task's memory and storage once it ended. Each Task leaves a
``StepRecord`` of its figures.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quetzal_deploy.contract.execution import readable_cause
from quetzal_deploy.contract.fargate import LIMIT_VARIABLE, task_output
from quetzal_deploy.local.errors import StatesError
from quetzal_deploy.local.interpreter import TaskCall, state_size
from quetzal_deploy.local.report import StepRecord
from quetzal_deploy.output import Out
from quetzal_deploy.runtime.errors import LimitExceeded, NotebookTimeout, StepError
from quetzal_deploy.runtime.event import read_event, time_limit
from quetzal_deploy.runtime.handler import FARGATE, LAMBDA, run_step
from quetzal_deploy.runtime.storage import FolderStorage
from quetzal_deploy.runtime.strays import resident_mb
from quetzal_deploy.runtime.workdir import size_mb
from quetzal_deploy.settings import Settings

if TYPE_CHECKING:
    from quetzal_deploy.local.container import ContainerTasks


def lambda_cause(error: str, message: str) -> str:
    """A cause shaped as Lambda shapes a function error (the front end parses it as JSON)."""
    return json.dumps({"errorMessage": message, "errorType": error, "stackTrace": []})


def limit_error(error: str, message: str) -> StatesError:
    """A step over a Lambda limit, with the error Lambda would give."""
    return StatesError(error, lambda_cause(error, message))


def step_failure(ex: StepError) -> StatesError:
    """A step that raised ``ex``, as its Lambda function's error."""
    name = type(ex).__name__
    return StatesError(name, lambda_cause(name, str(ex)))


def step_input(call: TaskCall, settings: Settings) -> tuple[Any, float]:
    """The step's event and time limit: a Lambda's payload, or a Fargate container's environment."""
    if call.platform != FARGATE:
        return call.payload, min(settings.timeout_s, call.timeout_s or math.inf)
    try:
        return read_event(None, call.payload), time_limit(call.payload.get(LIMIT_VARIABLE))
    except StepError as ex:
        raise step_failure(ex) from ex


def limit_problem(settings: Settings, record: StepRecord, call: TaskCall) -> tuple[str, str] | None:
    """(the error AWS gives, its message) when the step's figures are over its limits."""
    if call.platform == FARGATE:
        memory, storage = settings.fargate_memory_mb, settings.fargate_storage_gb * 1024
        where, memory_key, storage_key = "Fargate task", "FARGATE_MEMORY", "FARGATE_STORAGE (GiB)"
        bigger = "Raise {} in .env and the module's fargate_* sizes (at most {})"
        maxima = ("122880", "200")
    else:
        memory, storage = settings.memory_mb, settings.storage_mb
        where, memory_key, storage_key = "Lambda", "LAMBDA_MEMORY_SIZE", "LAMBDA_STORAGE_SIZE"
        bigger = "Raise {} in .env (at most {}), or run the step on Fargate (see the README),"
        maxima = ("10240", "10240")
    if record.peak_memory_mb is not None and record.peak_memory_mb > memory:
        return "Runtime.OutOfMemory", (
            f"{call.label} peaked at {record.peak_memory_mb:.0f} MB but the {where} has "
            f"{memory_key}={memory} MB: on AWS it is killed (signal: killed). "
            f"{bigger.format(memory_key, maxima[0])} or use less memory.")
    if record.tmp_mb is not None and record.tmp_mb > storage:
        return "NotebookError", (
            f"{call.label} used {record.tmp_mb:.0f} MB of its working folder but the {where} has "
            f"{storage} MB ({storage_key}): on AWS it fails with 'OSError: [Errno 28] No space left "
            f"on device'. {bigger.format(storage_key, maxima[1])} or write less.")
    return None


class Steps:
    """The Tasks of one local run: each runs here (or in the model's image with ``--docker``)
    and is recorded in ``records``."""

    def __init__(self, settings: Settings, bucket: Path, outputs: Path, out: Out):
        self.settings, self.bucket, self.outputs, self.out = settings, bucket, outputs, out
        self.records: list[StepRecord] = []
        self.work: Path | None = None  # a private temporary folder while the run goes on
        self.container: ContainerTasks | None = None  # with --docker

    def run(self, call: TaskCall) -> Any:
        """Run one Task and record its figures; what it returns to the state machine."""
        payload, limit = step_input(call, self.settings)
        notebook = payload.get("notebook_path") if isinstance(payload, dict) else None
        record = StepRecord(call.label, notebook=notebook, platform=call.platform, started=time.time())
        self.records.append(record)
        started = time.monotonic()
        try:
            event = self.execute(call, payload, record, limit)
        except StatesError as ex:
            record.status, record.error = "failed", f"{ex.error}: {readable_cause(ex.cause)}"
            raise
        finally:
            record.seconds = time.monotonic() - started
        record.outputs_mb = size_mb(self.outputs)
        record.state_kb = state_size(event) / 1024
        record.returned = event != payload
        record.status = "ok"
        return task_output(event) if call.platform == FARGATE else event

    def execute(self, call: TaskCall, payload: Any, record: StepRecord, limit: float) -> Any:
        """The event the step returns: from the model's image with ``--docker``, else from here."""
        if self.container is None:
            return self.run_handler(call, payload, record, limit)
        if call.platform == FARGATE:
            event, figures = self.container.run_task(call.payload, call.label, limit)
        else:
            event, figures = self.container.invoke(call.payload, call.label)
        record.peak_memory_mb, record.tmp_mb, record.wrote_files = figures
        problem = limit_problem(self.settings, record, call)
        if problem:  # measured in its container once it ended: over its Lambda's or task's limits
            raise limit_error(*problem)
        return event

    def run_handler(self, call: TaskCall, payload: Any, record: StepRecord, limit: float) -> Any:
        """The handler's core in this process, in a working folder of its own."""
        safe_label = "".join(c if c.isalnum() or c in "-_" else "." for c in call.label)
        workdir = Path(tempfile.mkdtemp(prefix=f"{safe_label}-", dir=self.work))
        try:
            result = run_step(payload, storage=FolderStorage(self.bucket), workdir=workdir,
                              task_root=self.settings.root, time_left_s=limit, image_tag="local",
                              out=lambda line: self.out(f"    {call.label} | {line}"),
                              extra_env={"AWS_EXECUTION_ENV": self.settings.execution_env},
                              platform=call.platform, watch=self.watcher(call, record, workdir))
        except StepError as ex:
            raise self.handler_error(ex, call, limit) from ex
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        record.peak_memory_mb = max(record.peak_memory_mb or 0.0, result.peak_memory_mb or 0.0) or None
        record.tmp_mb = result.workdir_mb
        record.wrote_files = max(result.uploaded - 1, 0)  # info.json is stamped by every step
        problem = limit_problem(self.settings, record, call)
        if problem:  # over what its Lambda or Fargate task has, as AWS would fail it
            raise limit_error(*problem)
        return result.event

    def handler_error(self, ex: StepError, call: TaskCall, limit: float) -> StatesError:
        """The error Step Functions sees for a step whose handler raised ``ex``."""
        if isinstance(ex, LimitExceeded):
            return limit_error(ex.error, str(ex))
        if isinstance(ex, NotebookTimeout) and call.platform == LAMBDA and limit < self.settings.timeout_s:
            return StatesError("States.Timeout", f"{call.label} did not finish within the Task's "
                               f"TimeoutSeconds ({limit:g} s)")  # the state's own TimeoutSeconds
        return step_failure(ex)

    def watcher(self, call: TaskCall, record: StepRecord, workdir: Path) -> Callable[[list[int]], None]:
        """What ``run_step`` calls while the notebook runs: it stops the step once its processes
        hold more memory, or its working folder more bytes, than the Lambda or Fargate task has."""
        def watch(pids: list[int]) -> None:
            record.peak_memory_mb = max(record.peak_memory_mb or 0.0, resident_mb(pids))
            record.tmp_mb = size_mb(workdir)
            problem = limit_problem(self.settings, record, call)
            if problem:
                raise LimitExceeded(*problem)
        return watch
