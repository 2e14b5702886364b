"""What a report shows of a run, whether it ran on this machine or on AWS."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from quetzal_deploy.runtime.notebook import log_name

LOG_HEAD_CHARS = 8_000
LOG_TAIL_CHARS = 40_000


@dataclass
class StepView:
    """One Task attempt: when it ran, what it used, how it ended."""

    label: str
    status: str  # ok, failed, skipped, running
    platform: str = "Lambda"
    notebook: str | None = None
    started: float | None = None  # seconds since the epoch
    seconds: float | None = None
    peak_memory_mb: float | None = None
    tmp_mb: float | None = None
    state_kb: float | None = None
    error: str | None = None
    attempt: int = 1
    request_id: str | None = None  # on AWS: the Lambda request, whose REPORT line gives peak memory


@dataclass
class LogView:
    """One notebook's log and the steps that wrote it."""

    name: str
    text: str
    failed: bool = False


@dataclass(frozen=True)
class Limits:
    """The sizes a step runs within: the model's Lambda, and its Fargate task if it has one."""

    timeout_s: float
    memory_mb: float
    storage_mb: float
    fargate_memory_mb: float | None = None
    fargate_storage_mb: float | None = None

    def of(self, platform: str) -> tuple[float | None, float, float]:
        """(time limit or None, memory MB, storage MB) of a step that ran on ``platform``."""
        if platform == "Fargate" and self.fargate_memory_mb:
            return None, self.fargate_memory_mb, self.fargate_storage_mb or 0
        return self.timeout_s, self.memory_mb, self.storage_mb


@dataclass
class RunView:
    """A whole run: its steps, limits, logs, and the folders holding its outputs and inputs."""

    kind: str  # "local run" or "AWS execution"
    model: str
    scenario: str
    name: str
    status: str  # SUCCEEDED, FAILED, ...
    limits: Limits
    started: float | None = None
    seconds: float | None = None
    steps: list[StepView] = field(default_factory=list)
    logs: list[LogView] = field(default_factory=list)
    outputs: Path | None = None
    inputs: Path | None = None
    error: str | None = None
    failed_state: str | None = None
    notes: list[str] = field(default_factory=list)
    tiles: str = ""  # an XYZ raster tile URL drawn under the layers; "" draws them offline


def mark_attempts(steps: list[StepView]) -> None:
    """Number each label's attempts in order: a retried Task shows attempt 2, 3, ..."""
    seen: dict[str, int] = {}
    for step in steps:
        seen[step.label] = seen.get(step.label, 0) + 1
        step.attempt = seen[step.label]


def shortened_log(text: str) -> str:
    """A log kept readable and small: its head and its tail (where an error is), the middle cut."""
    if len(text) <= LOG_HEAD_CHARS + LOG_TAIL_CHARS:
        return text
    cut = text[LOG_HEAD_CHARS:-LOG_TAIL_CHARS].count("\n")
    return (f"{text[:LOG_HEAD_CHARS]}\n[... {cut:,} lines cut from this report; the full log is in the "
            f"run's logs/ ...]\n{text[-LOG_TAIL_CHARS:]}")


def notebook_logs(notebook: str, keys: Iterable[str]) -> list[str]:
    """The logs one notebook wrote among ``keys``: ``logs/x.txt``, then ``x-2.txt``... (the handler
    writes one per run of it, never replacing one), in that order."""
    pattern = re.compile(re.escape(log_name(notebook).removesuffix(".txt")) + r"(?:-(\d+))?\.txt")
    found = [(int(match.group(1) or 1), key) for key in keys if (match := pattern.fullmatch(key))]
    return [key for _, key in sorted(found)]


def step_logs(steps: list[StepView], keys: Iterable[str], read: Callable[[str], str]) -> list[LogView]:
    """Every log of the steps' notebooks; those of a failed notebook holding a traceback (else its
    last log) are marked failed, so the page opens them."""
    keys, logs = list(keys), []
    failed = {s.notebook for s in steps if s.status == "failed"}
    for notebook in dict.fromkeys(s.notebook for s in steps if s.notebook):
        views = [LogView(key, shortened_log(read(key))) for key in notebook_logs(notebook, keys)]
        if notebook in failed and views:
            marked = [v for v in views if "Traceback" in v.text] or views[-1:]
            for view in marked:
                view.failed = True
        logs += views
    return logs
