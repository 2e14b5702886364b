"""The HTML report of a local run, written beside its bucket: ``.quetzal/runs/<run>/report.html``."""

from __future__ import annotations

import webbrowser
from pathlib import Path
from typing import TYPE_CHECKING

from quetzal_deploy.contract.execution import readable_cause
from quetzal_deploy.local.errors import StatesError
from quetzal_deploy.output import Out
from quetzal_deploy.report.model import Limits, RunView, StepView, mark_attempts, step_logs
from quetzal_deploy.settings import Settings

if TYPE_CHECKING:
    from quetzal_deploy.local.runner import LocalRun

REPORT_NAME = "report.html"


def settings_limits(settings: Settings) -> Limits:
    return Limits(settings.timeout_s, settings.memory_mb, settings.storage_mb,
                  settings.fargate_memory_mb, settings.fargate_storage_gb * 1024)


def local_view(run: LocalRun, error: StatesError | None) -> RunView:
    """The run as the report shows it: its step records, the logs its notebooks wrote, its folders."""
    steps = [StepView(r.label, r.status, r.platform, r.notebook, r.started, r.seconds, r.peak_memory_mb,
                      r.tmp_mb, r.state_kb, r.error) for r in run.records]
    mark_attempts(steps)
    folder = run.scenario_folder
    keys = [p.relative_to(folder).as_posix() for p in (folder / "logs").rglob("*.txt") if p.is_file()]
    logs = step_logs(steps, keys, lambda key: (folder / key).read_text(encoding="utf-8", errors="replace"))
    timed = [s for s in steps if s.started is not None]
    started = min((s.started for s in timed), default=None)
    ended = max((s.started + (s.seconds or 0) for s in timed), default=None)
    return RunView(
        kind="local run", model=run.settings.model_name, scenario=run.scenario, name=run.name,
        status="FAILED" if error else "SUCCEEDED", limits=settings_limits(run.settings), started=started,
        seconds=None if started is None else ended - started, steps=steps, logs=logs,
        outputs=run.scenario_folder / "outputs", inputs=run.scenario_folder / "inputs",
        error=f"{error.error}: {readable_cause(error.cause)}" if error else None,
        failed_state=error.state if error else None, tiles=run.settings.report_tile_url)


def write_local_report(run: LocalRun, error: StatesError | None, out: Out,
                       open_it: bool = False) -> Path | None:
    """Write the run's report and print its path; without plotly, say how to get it (the run stands)."""
    from quetzal_deploy.report.html import ReportUnavailable, write_report

    try:
        path = write_report(local_view(run, error), run.folder / REPORT_NAME)
    except ReportUnavailable as ex:
        out(f"Report: not written: {ex}")
        return None
    out(f"Report:  {path}")
    if open_it:
        webbrowser.open(path.as_uri())
    return path
