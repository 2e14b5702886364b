"""What each step of a local run cost, printed as the table a modeller sizes Lambda and Fargate from."""

from __future__ import annotations

from dataclasses import dataclass

from quetzal_deploy.contract.limits import STATE_LIMIT_BYTES
from quetzal_deploy.sizing import HEADROOM, suggest

STATE_LIMIT_KB = STATE_LIMIT_BYTES // 1024
STATE_WARNING_KB = 200


@dataclass
class StepRecord:
    """One Task of the run: its status and the figures that matter on Lambda."""

    label: str
    notebook: str | None = None
    platform: str = "Lambda"
    status: str = "running"
    seconds: float | None = None
    peak_memory_mb: float | None = None
    tmp_mb: float | None = None
    outputs_mb: float | None = None
    state_kb: float | None = None
    wrote_files: int | None = None  # files the step created or changed (info.json aside)
    returned: bool | None = None  # whether it merged RETURN: values into the state
    started: float | None = None  # seconds since the epoch, for the HTML report's timeline
    error: str | None = None


def figure(value: float | None, unit: str, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f} {unit}"


def size(mb: float | None) -> str:
    """A size in MB shown in the unit that keeps it readable."""
    if mb is None:
        return "-"
    return f"{mb * 1024:.0f} KB" if mb < 1 else f"{mb:.1f} MB"


def summary(records: list[StepRecord], memory_mb: int, storage_mb: int, timeout_s: int,
            fargate: tuple[int, int] | None = None) -> list[str]:
    """The table's lines, then a warning per state passed on near the 256 KB limit.

    The limits row is Lambda's; ``fargate`` (memory MB, storage MB) adds a line with Fargate's.
    """
    header = ("step", "status", "time", "peak memory", "/tmp used", "outputs so far", "state passed on",
              "ran on", f"suggested (peak + {HEADROOM - 1:.0%})")
    rows = [header, ("", "", f"of {timeout_s} s", f"of {memory_mb} MB", f"of {storage_mb} MB", "",
                     f"of {STATE_LIMIT_KB} KB", "", "")]
    for r in records:
        advice = suggest(r.seconds, r.peak_memory_mb, r.tmp_mb).text if r.status == "ok" else "-"
        rows.append((r.label, r.status, figure(r.seconds, "s"), figure(r.peak_memory_mb, "MB", 0),
                     size(r.tmp_mb), size(r.outputs_mb), figure(r.state_kb, "KB"),
                     r.platform if r.status != "skipped" else "-", advice))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(2, "  ".join("-" * width for width in widths))
    if fargate and any(r.platform == "Fargate" for r in records):
        lines.append(f"Fargate steps: of {fargate[0]} MB memory, {fargate[1] / 1024:g} GiB storage, "
                     "each within its own TimeoutSeconds.")
    lines.extend(idle_warnings(records))
    for r in records:
        if r.state_kb is not None and r.state_kb > STATE_WARNING_KB:
            lines.append(f"WARNING: {r.label} passes on {r.state_kb:.0f} KB; Step Functions stops at "
                         f"{STATE_LIMIT_KB} KB. Print smaller RETURN: values, write big results to outputs/.")
    return lines


def idle_warnings(records: list[StepRecord]) -> list[str]:
    """A warning per step that succeeded having written no file and returned nothing: how a silent
    no-op shows (a Lambda handler module run as a script, cells guarded by ``if manual:``)."""
    return [f"WARNING: {r.label} ({r.notebook}) succeeded but wrote no file and returned no RETURN: value; "
            "did its code run? A module that only defines handler(event, context), or cells that run "
            "only in Jupyter, do nothing as a step."
            for r in records if r.status == "ok" and r.wrote_files == 0 and r.returned is False]
