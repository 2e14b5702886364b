"""``invoke run --local``: the whole pipeline on this machine, no AWS account, no Docker.

The scenario is copied into a run folder (``.quetzal/runs/<run>/bucket/<scenario>/``) that a
``FolderStorage`` serves as the bucket, so ``scenarios/<scenario>/`` is never modified. The state
machine runs in the local interpreter, after the checks of what it would fail on; each Task runs
as ``step.py`` says, with the limits its Lambda function or Fargate task has on AWS. The run ends
with its summary, its HTML report and the plugins' ``quetzal_after_local_run``.
"""

from __future__ import annotations

import secrets
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from quetzal_deploy.contract.execution import execution_input, name_slug, readable_cause
from quetzal_deploy.contract.layers import crs_warnings, folder_layers
from quetzal_deploy.contract.params import DEFAULT_CHOICE, load_overrides, merge_params, scenario_params
from quetzal_deploy.errors import RunError
from quetzal_deploy.local.checks import check_before_run
from quetzal_deploy.local.container import ContainerTasks
from quetzal_deploy.local.errors import StatesError
from quetzal_deploy.local.interpreter import Interpreter, TaskCall
from quetzal_deploy.local.report import StepRecord, summary
from quetzal_deploy.local.run_report import write_local_report
from quetzal_deploy.local.step import Steps
from quetzal_deploy.output import Out
from quetzal_deploy.pipeline.definition import deployable, load_definition
from quetzal_deploy.pipeline.porting import ported
from quetzal_deploy.plugins import RunSummary, after_local_run, plugin_manager
from quetzal_deploy.runtime import warm
from quetzal_deploy.runtime.errors import StepError
from quetzal_deploy.runtime.notebook import CHILDREN, log_name, terminal_safe
from quetzal_deploy.runtime.paths import tree_files
from quetzal_deploy.settings import Settings
from quetzal_deploy.sync.scenarios import check_name, local_scenarios, user_email

LOCAL_ACCOUNT = "000000000000"
RUNS_DIR = Path(".quetzal", "runs")
LOG_TAIL_LINES = 20
CLEARED_BEFORE_A_RUN = {"outputs", "logs"}


def local_definition(settings: Settings, out: Out = print) -> dict[str, Any]:
    """step-functions.json with the model's Tasks in our forms (said once) and its placeholders
    filled for this machine."""
    own = ported(load_definition(settings.definition_path), settings)
    for note in own.notes():
        out(f"Note: {note}")
    return deployable(own.walk, settings, LOCAL_ACCOUNT)


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
        self.steps = Steps(settings, self.bucket, self.scenario_folder / "outputs", out)

    @property
    def scenario_folder(self) -> Path:
        return self.bucket / self.scenario

    @property
    def records(self) -> list[StepRecord]:
        return self.steps.records

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
        """Run one Task: the auth function is skipped, the model's function runs as ``step.py`` says."""
        if self.settings.auth_function and call.function == self.settings.auth_function:
            self.out(f"  {call.label}: skipped locally (the shared authorization function runs on AWS only)")
            self.records.append(StepRecord(call.label, status="skipped"))
            return call.payload
        return self.steps.run(call)

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
            run.steps.work = Path(tempfile.mkdtemp(prefix=f"quetzal-{settings.model_name}-"))
            if not docker:  # every step and Map iteration forked from one warm process
                warm.prepare(settings.root, out, warm.settings_config(settings.warm_steps,
                                                                      settings.warm_preload))
            with container or nullcontext():
                run.steps.container = container
                interpreter.execute(payload)
        except StatesError as ex:
            error = ex
        finally:
            warm.shutdown()
            if run.steps.work is not None:
                shutil.rmtree(run.steps.work, ignore_errors=True)
    run.report(error)
    write_local_report(run, error, out, open_report)
    out(f"Run {'FAILED' if error else 'SUCCEEDED'}: {run.folder}")
    after_local_run(plugins, settings, run.summary(error))
    return 1 if error else 0
