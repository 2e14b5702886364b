"""End every process a step started, including those that left its process group.

A notebook may start a child in its own session (``os.setsid()``, a double fork): killing the
notebook's process group misses it, and it would go on writing into the next step's working
folder. So each notebook gets a mark in its environment (``STEP_VARIABLE``), which its
descendants inherit, and at the step's end ``end_marked(mark)`` kills every process that carries
it (Linux: read from ``/proc/<pid>/environ``). The process running the steps first becomes a
child subreaper (``PR_SET_CHILD_SUBREAPER``): orphans are re-parented to it rather than to init,
so it reaps those it killed and no zombie is left. Elsewhere (macOS, Windows) only the process
group is ended. Standard library only: the Lambda image imports this module.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import sys
import time
from pathlib import Path

STEP_VARIABLE = "QUETZAL_STEP"
PR_SET_CHILD_SUBREAPER = 36
KILL_ROUNDS = 20  # a process forking while it is killed: each round ends what the last one missed
REAP_WAIT_S = 5.0
PROC = Path("/proc")


def new_mark() -> str:
    return secrets.token_hex(8)


def become_subreaper() -> None:
    """Orphaned descendants of this process are re-parented to it (Linux; elsewhere nothing)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def session_of(entry: Path) -> int | None:
    try:
        return int(entry.joinpath("stat").read_text().rsplit(")", 1)[1].split()[3])
    except (OSError, ValueError, IndexError):
        return None


def marked(mark: str, session: int | None = None) -> list[int]:
    """The processes whose environment carries ``mark`` (this process's own user's), or that are
    in ``session`` (the notebook's: a process forked without exec shows the environment it was
    started with, which for a step forked from the warm process is the zygote's, unmarked)."""
    needle = f"{STEP_VARIABLE}={mark}".encode()
    found = []
    for entry in PROC.glob("[0-9]*") if PROC.is_dir() else ():
        try:
            if needle in entry.joinpath("environ").read_bytes().split(b"\0") or (
                    session is not None and session_of(entry) == session):
                found.append(int(entry.name))
        except (OSError, ValueError):  # gone, or another user's
            continue
    return [pid for pid in found if pid != os.getpid()]


def step_pids(leader: int, mark: str) -> list[int]:
    """The notebook (leader of its session) and every process carrying its mark or in its session."""
    return [leader] + [pid for pid in marked(mark, session=leader) if pid != leader]


def resident_mb(pids: list[int]) -> float:
    """Their resident memory together, in MB (``VmRSS``; 0 for a process gone, or without /proc)."""
    total = 0
    for pid in pids:
        try:
            lines = (PROC / str(pid) / "status").read_text().splitlines()
        except OSError:
            continue
        total += sum(int(line.split()[1]) for line in lines if line.startswith("VmRSS:"))
    return total / 1024


def state_and_parent(pid: int) -> tuple[str, int] | None:
    """``(state letter, parent pid)`` of a process, None once it is gone."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1])


def end_marked(mark: str, spare: int | None = None) -> list[int]:
    """Kill every process carrying ``mark`` or in the session of ``spare`` (the notebook, reaped by
    its waiter) but ``spare``, then reap those re-parented to this process; the pids killed."""
    killed: set[int] = set()
    for _ in range(KILL_ROUNDS):
        found = [pid for pid in marked(mark, session=spare) if pid != spare and pid not in killed]
        if not found:
            break
        for pid in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        killed.update(found)
    reap(killed)
    return sorted(killed)


def reap(pids: set[int]) -> None:
    """Wait for the killed processes to die; collect the exit status of those that are ours."""
    deadline = time.monotonic() + REAP_WAIT_S
    waiting = set(pids)
    while waiting and time.monotonic() < deadline:
        for pid in list(waiting):
            seen = state_and_parent(pid)
            if seen is None or (seen[0] == "Z" and seen[1] not in pids | {os.getpid()}):
                waiting.discard(pid)  # gone, or for a parent that lives on to reap
            elif seen[0] == "Z":
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
                waiting.discard(pid)
        if waiting:
            time.sleep(0.01)
