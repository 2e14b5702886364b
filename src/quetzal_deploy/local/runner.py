"""``invoke run --local``: the whole pipeline on this machine, no AWS account, no Docker.

The scenario is copied into a run folder (``.quetzal/runs/<run>/bucket/<scenario>/``) that a
``FolderStorage`` serves as the bucket, so ``scenarios/<scenario>/`` is never modified. The state
machine runs in the local interpreter; each Lambda Task runs the handler's ``run_step`` (same
event, same ``RETURN:`` merging, same logs) in its own working folder, with the model's Lambda
limits: the time limit is enforced by the handler, memory and ``/tmp`` size are checked from the
step's figures and fail the step as Lambda would. A Fargate step runs the same way from its
rendered ECS state (the event read back from its container's environment, as ``runtime.cli``
reads it), with Fargate's limits: its own time limit, the task's memory and storage.
"""

from __future__ import annotations

import json
import math
import secrets
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from quetzal_deploy.contract.execution import execution_input, name_slug, readable_cause
from quetzal_deploy.contract.fargate import LIMIT_VARIABLE, task_output
from quetzal_deploy.contract.layers import crs_warnings, folder_layers
from quetzal_deploy.contract.params import DEFAULT_CHOICE, load_overrides, merge_params, scenario_params
from quetzal_deploy.errors import RunError
from quetzal_deploy.local.checks import check_before_run
from quetzal_deploy.local.container import ContainerTasks
from quetzal_deploy.local.errors import StatesError
from quetzal_deploy.local.interpreter import Interpreter, TaskCall, state_size
from quetzal_deploy.local.report import StepRecord, summary
from quetzal_deploy.local.run_report import write_local_report
from quetzal_deploy.output import Out
from quetzal_deploy.pipeline.definition import deployable, load_definition
from quetzal_deploy.pipeline.porting import ported
from quetzal_deploy.plugins import RunSummary, after_local_run, plugin_manager
from quetzal_deploy.runtime import warm
from quetzal_deploy.runtime.errors import LimitExceeded, NotebookTimeout, StepError
from quetzal_deploy.runtime.event import read_event, time_limit
from quetzal_deploy.runtime.handler import FARGATE, LAMBDA, run_step
from quetzal_deploy.runtime.notebook import CHILDREN, log_name, terminal_safe
from quetzal_deploy.runtime.paths import tree_files
from quetzal_deploy.runtime.storage import FolderStorage
from quetzal_deploy.runtime.strays import resident_mb
from quetzal_deploy.runtime.workdir import size_mb
from quetzal_deploy.settings import Settings
from quetzal_deploy.sync.scenarios import check_name, local_scenarios, user_email

LOCAL_ACCOUNT = "000000000000"
RUNS_DIR = Path(".quetzal", "runs")
LOG_TAIL_LINES = 20
CLEARED_BEFORE_A_RUN = {"outputs", "logs"}


def lambda_cause(error: str, message: str) -> str:
    """A cause shaped as Lambda shapes a function error (the front end parses it as JSON)."""
    return json.dumps({"errorMessage": message, "errorType": error, "stackTrace": []})


def limit_error(error: str, message: str) -> StatesError:
    """A step over a Lambda limit, with the error Lambda would give."""
    return StatesError(error, lambda_cause(error, message))


def local_definition(settings: Settings, out: Out = print) -> dict[str, Any]:
    """step-functions.json with the model's Tasks in our forms (said once) and its placeholders
    filled for this machine."""
    own = ported(load_definition(settings.definition_path), settings)
    for note in own.notes():
        out(f"Note: {note}")
    return deployable(own.definition, settings, LOCAL_ACCOUNT)


class LocalRun:
    """One local execution: its folders, its Task runner and its step records."""

    def __init__(self, settings: Settings, scenario: str, out: Out = print):
        self.settings, self.out = settings, out
        self.scenario = check_name(scenario.removesuffix("/"))
        self.source = settings.scenarios_dir / self.scenario
        if not self.source.is_dir():
            raise RunError(f"Scenario {scenario!r} not found in {settings.scenarios_dir}; "
                           f"available: {', '.join(local_scenarios(settings)) or 'none'}.")
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.name = f"{stamp}-{name_slug(self.scenario)}-{secrets.token_hex(2)}"
        self.folder = settings.root / RUNS_DIR / self.name
        self.bucket = self.folder / "bucket"
        self.records: list[StepRecord] = []
        self.work: Path | None = None  # a private temporary folder while the run goes on
        self.container: ContainerTasks | None = None  # with --docker

    @property
    def scenario_folder(self) -> Path:
        return self.bucket / self.scenario

    def copy_scenario(self) -> None:
        """The scenario as the bucket holds it when a run starts: the front end deletes its
        outputs/ and logs/ first (a notebook run in Jupyter may have left some). Links are
        followed as an upload follows them: only inside the scenario, else the run is refused."""
        try:
            files = tree_files(self.source, skip=lambda rel: rel.rstrip("/") in CLEARED_BEFORE_A_RUN)
        except StepError as ex:
            raise RunError(str(ex)) from ex
        for real, rel in files:
            target = self.scenario_folder / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(real, target)

    def invoke(self, call: TaskCall) -> Any:
        """Run one Task: the auth function is skipped, the model's function runs ``run_step``."""
        if self.settings.auth_function and call.function == self.settings.auth_function:
            self.out(f"  {call.label}: skipped locally (the shared authorization function runs on AWS only)")
            self.records.append(StepRecord(call.label, status="skipped"))
            return call.payload
        payload, limit = self.step_input(call)
        notebook = payload.get("notebook_path") if isinstance(payload, dict) else None
        record = StepRecord(call.label, notebook=notebook, platform=call.platform, started=time.time())
        self.records.append(record)
        started = time.monotonic()
        try:
            if self.container is not None and call.platform == FARGATE:
                event = self.container.run_task(call.payload, call.label, limit)
            elif self.container is not None:
                event, figures = self.container.invoke(call.payload, call.label)
                record.peak_memory_mb, record.tmp_mb, record.wrote_files = figures
            else:
                event = self.run_handler(call, payload, record, limit)
        except StatesError as ex:
            record.status, record.error = "failed", f"{ex.error}: {readable_cause(ex.cause)}"
            raise
        finally:
            record.seconds = time.monotonic() - started
        record.outputs_mb = size_mb(self.scenario_folder / "outputs")
        record.state_kb = state_size(event) / 1024
        record.returned = event != payload
        record.status = "ok"
        return task_output(event) if call.platform == FARGATE else event

    def step_input(self, call: TaskCall) -> tuple[Any, float]:
        """The step's event and time limit: a Lambda's payload, or a Fargate container's environment."""
        if call.platform != FARGATE:
            return call.payload, min(self.settings.timeout_s, call.timeout_s or math.inf)
        try:
            return read_event(None, call.payload), time_limit(call.payload.get(LIMIT_VARIABLE))
        except StepError as ex:
            raise StatesError(type(ex).__name__, lambda_cause(type(ex).__name__, str(ex))) from ex

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
        except LimitExceeded as ex:
            raise limit_error(ex.error, str(ex)) from ex
        except NotebookTimeout as ex:
            if call.platform == LAMBDA and limit < self.settings.timeout_s:  # the state's TimeoutSeconds
                raise StatesError("States.Timeout", f"{call.label} did not finish within the Task's "
                                  f"TimeoutSeconds ({limit:g} s)") from ex
            raise StatesError("NotebookTimeout", lambda_cause("NotebookTimeout", str(ex))) from ex
        except StepError as ex:
            raise StatesError(type(ex).__name__, lambda_cause(type(ex).__name__, str(ex))) from ex
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        record.peak_memory_mb = max(record.peak_memory_mb or 0.0, result.peak_memory_mb or 0.0) or None
        record.tmp_mb = result.workdir_mb
        record.wrote_files = max(result.uploaded - 1, 0)  # info.json is stamped by every step
        self.check_limits(record, call)
        return result.event

    def watcher(self, call: TaskCall, record: StepRecord, workdir: Path) -> Callable[[list[int]], None]:
        """What ``run_step`` calls while the notebook runs: it stops the step once its processes
        hold more memory, or its working folder more bytes, than the Lambda or Fargate task has."""
        def watch(pids: list[int]) -> None:
            record.peak_memory_mb = max(record.peak_memory_mb or 0.0, resident_mb(pids))
            record.tmp_mb = size_mb(workdir)
            problem = self.limit_problem(record, call)
            if problem:
                raise LimitExceeded(*problem)
        return watch

    def check_limits(self, record: StepRecord, call: TaskCall) -> None:
        """Fail a step that used more memory or /tmp than its Lambda or Fargate task has, as AWS would."""
        problem = self.limit_problem(record, call)
        if problem:
            raise limit_error(*problem)

    def limit_problem(self, record: StepRecord, call: TaskCall) -> tuple[str, str] | None:
        """(the error AWS gives, its message) when the step's figures are over its limits."""
        if call.platform == FARGATE:
            memory, storage = self.settings.fargate_memory_mb, self.settings.fargate_storage_gb * 1024
            where, memory_key, storage_key = "Fargate task", "FARGATE_MEMORY", "FARGATE_STORAGE (GiB)"
            bigger = "Raise {} in .env and the module's fargate_* sizes (at most {})"
            maxima = ("122880", "200")
        else:
            memory, storage = self.settings.memory_mb, self.settings.storage_mb
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

    def summary(self, error: StatesError | None) -> RunSummary:
        """The run as the plugins' ``quetzal_after_local_run`` gets it."""
        return RunSummary(self.scenario, "FAILED" if error else "SUCCEEDED", tuple(self.records),
                          self.folder, self.scenario_folder / "outputs", self.scenario_folder / "logs",
                          error=f"{error.error}: {readable_cause(error.cause)}" if error else None)

    def report(self, error: StatesError | None) -> None:
        self.out("")
        for line in summary(self.records, self.settings.memory_mb, self.settings.storage_mb,
                            self.settings.timeout_s, fargate=(self.settings.fargate_memory_mb,
                                                              self.settings.fargate_storage_gb * 1024)):
            self.out(line)
        self.out("")
        self.out(f"Outputs: {self.scenario_folder / 'outputs'}")
        self.out(f"Logs:    {self.scenario_folder / 'logs'}")
        for warning in crs_warnings(folder_layers(self.scenario_folder / "outputs", "outputs/")):
            self.out(warning)
        if error is None:
            return
        self.out(f"Failed state: {error.state or 'unknown'}")
        self.out(f"Error: {error.error}")
        cause = readable_cause(error.cause)
        self.out(f"Cause: {cause.splitlines()[0] if cause else 'none given'}")
        failed = [r for r in self.records if r.status == "failed"]
        notebook = failed[-1].notebook if failed else None
        log = self.scenario_folder / log_name(notebook) if notebook else None
        if log is not None and log.is_file():
            tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-LOG_TAIL_LINES:]
            self.out(f"Last {len(tail)} lines of {log}:")
            for line in tail:
                self.out(f"  | {terminal_safe(line)}")
        elif len(cause.splitlines()) > 1:
            for line in cause.splitlines()[1:]:
                self.out(f"  | {line}")


def prune_runs(runs: Path, keep: int) -> int:
    """Remove all but the ``keep`` newest run folders (their names start with their UTC start
    time); the number removed."""
    folders = sorted(path for path in runs.iterdir() if path.is_dir()) if runs.is_dir() else []
    old = folders[:max(len(folders) - keep, 0)]
    for folder in old:
        shutil.rmtree(folder, ignore_errors=True)
    return len(old)


@contextmanager
def notebooks_stopped_on_signals() -> Iterator[None]:
    """Ctrl-C and SIGTERM kill the run's notebooks (each in its own process group) and start no
    more, then interrupt the run, whose ``finally`` blocks remove its temporary folders. Signals
    that follow the first are ignored, so the cleanup completes."""
    if threading.current_thread() is not threading.main_thread():  # only it can handle signals
        yield
        return

    def interrupt(signum, frame):
        if not CHILDREN.stopping:
            CHILDREN.stop_all()
            raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {number: signal.signal(number, interrupt) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        CHILDREN.resume()


def run_local(settings: Settings, scenario: str, params=None, choice=None, docker: bool = False,
              out: Out = print, open_report: bool = False) -> int:
    """Run the pipeline on this machine on ``scenario``; returns the exit code (0: succeeded).

    With ``docker`` each Task runs in the model's image (built first) instead of this process.
    The run's HTML report is written in its folder (``open_report`` opens it in the browser).
    """
    overrides = load_overrides(params) if isinstance(params, (str, Path)) else (params or {})
    choice = choice or DEFAULT_CHOICE
    plugins = plugin_manager(settings.root)  # a broken plugin stops the run before it starts
    definition = local_definition(settings, out)
    run = LocalRun(settings, scenario, out)
    interpreter = Interpreter(definition, run.invoke, out=lambda line: out(f"  {line}"),
                              max_workers=1 if docker else None, execution_name=run.name,
                              state_machine_arn=f"arn:aws:states:{settings.region}:{LOCAL_ACCOUNT}:"
                                                f"stateMachine:{settings.state_machine}")
    for warning in check_before_run(interpreter.states, settings, choice):
        out(f"Warning: {warning}")
    defaults, variants = scenario_params(run.source, choice)
    payload = execution_input(run.scenario, merge_params(defaults, overrides), choice, variants,
                              user_email(settings, default="local"))
    container = ContainerTasks(settings, run.bucket, out) if docker else None
    removed = prune_runs(settings.root / RUNS_DIR, settings.local_runs_kept - 1)
    if removed:
        out(f"Removed {removed} older run(s) from {RUNS_DIR} (it keeps the last "
            f"LOCAL_RUNS_KEPT={settings.local_runs_kept}, set in .env)")
    run.copy_scenario()
    out(f"Running {settings.state_machine} locally on {run.scenario} (run {run.name})")
    error = None
    with notebooks_stopped_on_signals():
        try:
            run.work = Path(tempfile.mkdtemp(prefix=f"quetzal-{settings.model_name}-"))
            if not docker:  # every step and Map iteration forked from one warm process
                warm.prepare(settings.root, out, warm.settings_config(settings.warm_steps,
                                                                      settings.warm_preload))
            with container or nullcontext():
                run.container = container
                interpreter.execute(payload)
        except StatesError as ex:
            error = ex
        finally:
            warm.shutdown()
            if run.work is not None:
                shutil.rmtree(run.work, ignore_errors=True)
    run.report(error)
    write_local_report(run, error, out, open_report)
    out(f"Run {'FAILED' if error else 'SUCCEEDED'}: {run.folder}")
    after_local_run(plugins, settings, run.summary(error))
    return 1 if error else 0
