"""What a report shows of a run, whether it ran on this machine or on AWS."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

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
