"""Run one notebook as a script in a child process, with a deadline, capturing its output.

The script is the ``.py`` converted at image build time next to the notebook; when only the
``.ipynb`` exists it is converted in-process (``convert``: display magics dropped, any other
IPython syntax refused with the fix).
The child gets ``argv[1] = json.dumps(launcher_arg)``, cwd = the notebook's folder,
``PYTHONPATH`` = the task root and the notebook's folder, and its caches under the working
folder. Its output goes, line by line, to a log file and to ``out``; ``RETURN: {...}`` lines
(JSON or a Python literal) are noted, and so is ``end_of_notebook`` anywhere in the output (a
notebook stops early by printing it or by evaluating the bare, undefined name: the ``NameError``
names it). At the step's end (the notebook's exit, the deadline, Ctrl-C) its whole process group
is killed, then every process it started, even in a session of its own (``strays``). A ``watch``
is called every ``WATCH_S`` with the step's processes while it runs; what it raises stops the step;
``CHILDREN.stop_all()`` kills every running one at once (a local run stopped by a signal).
"""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from quetzal_deploy.contract.params import deep_merge
from quetzal_deploy.runtime.convert import script_source
from quetzal_deploy.runtime.errors import NotebookError
from quetzal_deploy.runtime.strays import STEP_VARIABLE, become_subreaper, end_marked, new_mark, step_pids

RETURN_PREFIX = "RETURN:"
END_OF_NOTEBOOK = "end_of_notebook"
TAIL_LINES = 400
TRACEBACK = "Traceback (most recent call last):"
WATCH_S = 0.25
CONTROLS = {code: f"\\x{code:02x}" for code in [*range(32), *range(127, 160)] if code != 9}


@dataclass
class Outcome:
    """What the notebook did: exit status, time, memory, and what it printed that matters."""

    returncode: int | None = None
    timed_out: bool = False
    seconds: float = 0.0
    peak_memory_mb: float | None = None
    returns: list[str] = field(default_factory=list)
    end_of_notebook: bool = False
    tail: deque = field(default_factory=lambda: deque(maxlen=TAIL_LINES))

    @property
    def failed(self) -> bool:
        return self.timed_out or (self.returncode != 0 and not self.end_of_notebook)

    def failure_text(self, limit: int = 16_000) -> str:
        """The traceback (or, without one, the last lines), at most ``limit`` characters."""
        lines = list(self.tail)
        starts = [index for index, line in enumerate(lines) if line.startswith(TRACEBACK)]
        text = "\n".join(lines[starts[-1]:] if starts else lines[-40:])
        return text[-limit:] or "(it printed nothing)"

    def exit_description(self) -> str:
        if self.returncode is not None and self.returncode < 0:
            name = signal.Signals(-self.returncode).name
            hint = " (out of memory? raise the Lambda memory size)" if name == "SIGKILL" else ""
            return f"was killed by {name}{hint}"
        return f"exited with code {self.returncode}"


def log_name(notebook_path: str) -> str:
    """The log's key in its scenario: ``logs/<path under notebooks/, no suffix>.txt``.

    ``notebooks/prep.ipynb`` logs to ``logs/prep.txt``, ``notebooks/pt/prep.ipynb`` to
    ``logs/pt/prep.txt`` (the front end lists ``logs/`` recursively and shows each key).
    """
    parts = PurePosixPath(notebook_path).with_suffix("").parts
    if len(parts) > 1 and parts[0] == "notebooks":
        parts = parts[1:]
    return "logs/" + "/".join(parts) + ".txt"


def script_for(notebook: Path, private: Path) -> Path:
    """The notebook's script: the build-time ``.py`` next to it, else converted into ``private``."""
    if notebook.suffix == ".py":
        return notebook
    converted = notebook.with_suffix(".py")
    if converted.is_file():
        return converted
    source = script_source(notebook, notebook.name)
    script = private / converted.name
    script.write_text(source, encoding="utf-8")
    return script


def child_environment(task_root: Path, notebook: Path, private: Path,
                      extra_env: dict[str, str] | None = None) -> dict[str, str]:
    """The parent's environment (plus ``extra_env``), the model's code importable, caches writable."""
    env = {**os.environ, **(extra_env or {})}
    paths = [str(task_root), str(notebook.parent), env.get("PYTHONPATH", "")]
    home = private / "home"
    caches = {
        "HOME": home,
        "XDG_CACHE_HOME": home / ".cache",
        "XDG_CONFIG_HOME": home / ".config",
        "MPLCONFIGDIR": home / "matplotlib",
        "NUMBA_CACHE_DIR": home / "numba",
        "TMPDIR": private / "tmp",
    }
    for name, folder in caches.items():
        folder.mkdir(parents=True, exist_ok=True)
        env[name] = str(folder)
    env.update(
        PYTHONPATH=os.pathsep.join(path for path in paths if path),
        TQDM_DISABLE="1",
        PYTHONUNBUFFERED="1",
        MPLBACKEND="Agg",
    )
    return env


def peak_mb(rusage) -> float:
    """ru_maxrss is in KiB on Linux, bytes on macOS."""
    scale = 1 if sys.platform == "darwin" else 1024
    return rusage.ru_maxrss * scale / 2**20


def terminal_safe(line: str) -> str:
    """``line`` with the control characters a terminal acts on (ESC, NUL, CSI...) written as
    escapes, so a notebook's output can only be read, never move the cursor or retitle a window."""
    return line.translate(CONTROLS)


def read_output(stream, log_file, outcome: Outcome, out) -> None:
    """Copy the notebook's output to the log as it is, and line by line, neutralised, to ``out``."""
    try:
        for raw in stream:
            log_file.write(raw)
            line = terminal_safe(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
            out(line)
            outcome.tail.append(line)
            if line.startswith(RETURN_PREFIX):
                outcome.returns.append(line[len(RETURN_PREFIX):].strip())
            elif END_OF_NOTEBOOK in line:
                outcome.end_of_notebook = True
        log_file.flush()
    except (OSError, ValueError):  # the step was stopped and its pipe or log closed under it
        return


class Children:
    """The notebooks this process runs (each the leader of its own process group), so that a run
    stopped by Ctrl-C or SIGTERM can stop them all, and start no more, at once."""

    def __init__(self):
        self.lock = threading.RLock()  # re-entrant: a signal handler may run while the main thread holds it
        self.running: set[subprocess.Popen] = set()
        self.stopping = False

    def start(self, command: list[str], spawn=None, **options) -> subprocess.Popen:
        """``command`` in a new session: a fresh process, or forked by ``spawn`` (``warm``)."""
        with self.lock:
            if self.stopping:
                raise NotebookError("The run is being stopped: this notebook was not started.")
            if spawn is not None:
                process = spawn(command, **options)
            else:
                process = subprocess.Popen(command, start_new_session=True, **options)
            self.running.add(process)
            return process

    def finished(self, process: subprocess.Popen) -> None:
        with self.lock:
            self.running.discard(process)

    def stop_all(self) -> None:
        """Kill every running notebook's process group; refuse new ones until ``resume``."""
        with self.lock:
            self.stopping = True
            for process in self.running:
                kill_all(process)

    def resume(self) -> None:
        with self.lock:
            self.stopping = False


CHILDREN = Children()


def run_script(script: Path, argument: str, *, cwd: Path, env: dict, log_path: Path,
               budget_s: float, out=print, warm=None, watch=None) -> Outcome:
    """Run ``script`` with ``argument`` as argv[1] for at most ``budget_s`` seconds; forked from
    ``warm`` (a ``warm.Zygote``) when given, else in a fresh process."""
    outcome = Outcome()
    started = time.monotonic()
    mark = new_mark()
    become_subreaper()
    with log_path.open("wb") as log_file:
        process = CHILDREN.start(
            [sys.executable, str(script), argument], spawn=warm and warm.spawn, cwd=cwd,
            env={**env, STEP_VARIABLE: mark},
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        reader = threading.Thread(target=read_output,
                                  args=(process.stdout, log_file, outcome, out), daemon=True)
        reader.start()
        waiter = threading.Thread(target=wait_for, args=(process, outcome), daemon=True)
        waiter.start()
        try:
            wait_watching(waiter, started + max(budget_s, 0.0),
                          watch and (lambda: watch(step_pids(process.pid, mark))))
            outcome.timed_out = waiter.is_alive()
        finally:  # after an exit, at the deadline, on a limit, on Ctrl-C: all it left behind, then
            kill_all(process)  # its output read to the end before the log closes
            end_marked(mark, spare=process.pid)
            CHILDREN.finished(process)
            waiter.join()
            reader.join(5)
            process.stdout.close()
        outcome.seconds = time.monotonic() - started
    return outcome


def wait_watching(waiter: threading.Thread, until: float, watch=None) -> None:
    """Wait for ``waiter`` until ``until`` (``time.monotonic``), calling ``watch`` every ``WATCH_S``."""
    while waiter.is_alive() and (left := until - time.monotonic()) > 0:
        waiter.join(min(left, WATCH_S) if watch else left)
        if watch and waiter.is_alive():
            watch()


def wait_for(process: subprocess.Popen, outcome: Outcome) -> None:
    """Reap the child, with its peak memory where ``os.wait4`` exists (not on Windows)."""
    if not hasattr(os, "wait4"):
        outcome.returncode = process.wait()
        return
    _, status, rusage = process.wait4() if hasattr(process, "wait4") else os.wait4(process.pid, 0)
    outcome.returncode = process.returncode = os.waitstatus_to_exitcode(status)
    outcome.peak_memory_mb = peak_mb(rusage)


def kill_all(process: subprocess.Popen) -> None:
    """Kill the child's whole process group (POSIX), or the child itself (Windows)."""
    if not hasattr(os, "killpg"):
        process.kill()
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def parse_return(text: str, notebook_path: str) -> dict:
    """One ``RETURN:`` value: a JSON object, or a Python dict literal (read, never executed)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        try:
            value = json.loads(json.dumps(ast.literal_eval(text)))  # tuples as lists, as JSON has
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as ex:
            raise NotebookError(
                f"{notebook_path} printed a RETURN: line that is neither JSON nor a Python literal "
                f"of JSON values ({type(ex).__name__}: {ex}): RETURN: {text[:200]}") from ex
    if not isinstance(value, dict):
        raise NotebookError(f"{notebook_path} printed RETURN: {text[:200]}; it must be a JSON "
                            "object or a Python dict, like RETURN: {'key': 'value'}.")
    return value


def parse_returns(returns: list[str], notebook_path: str) -> dict:
    """Merge the notebook's ``RETURN:`` lines, in order, into one object (deeply)."""
    merged = {}
    for text in returns:
        merged = deep_merge(merged, parse_return(text, notebook_path))
    return merged
