"""No process of a step outlives it (issue #19, item 4).

A real notebook starts a daemon the classic way (a double fork and ``os.setsid()``: out of its
process group and its session), which goes on writing into the step's working folder. At the
step's end it must be gone: through the handler's core (what Lambda and Fargate run) and under
``invoke run --local``. Linux only, as Lambda and Fargate are.
"""

import contextlib
import os
import signal
import sys
from pathlib import Path

import nbformat
import pytest
from test_run_local import invoke, lambda_task, step_payload, write_definition

from quetzal_deploy.runtime.handler import run_step
from quetzal_deploy.runtime.storage import FolderStorage
from quetzal_deploy.runtime.strays import state_and_parent

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux: /proc, prctl")

DAEMON = """import os, sys, time
from pathlib import Path
if os.fork():
    os._exit(0)
os.setsid()
Path(sys.argv[1]).write_text(str(os.getpid()))
while True:
    try:
        Path(sys.argv[2]).write_text(str(time.time()))
    except OSError:  # the folder was removed: it would write into the next step's, if it could
        pass
    time.sleep(0.05)
"""
NOTEBOOK = f"""import json, os, subprocess, sys, time
from pathlib import Path
argv = json.loads(sys.argv[1])
pid_file = Path(os.environ["DAEMON_PID_FILE"])
outputs = Path(argv["training_folder"]) / "outputs"
outputs.mkdir(exist_ok=True)
subprocess.Popen([sys.executable, "-c", {DAEMON!r}, str(pid_file), str(outputs / "late.txt")],
                 start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
deadline = time.monotonic() + 120  # an event, bounded generously for a loaded machine
while not pid_file.exists() or not pid_file.read_text():
    assert time.monotonic() < deadline, "the daemon never started"
    time.sleep(0.05)
print("daemon", pid_file.read_text())
"""


@pytest.fixture
def daemon_pid_file(tmp_path, monkeypatch):
    """Where the notebook's daemon writes its pid; the daemon is killed at the end if it is alive."""
    path = tmp_path / "daemon.pid"
    monkeypatch.setenv("DAEMON_PID_FILE", str(path))
    yield path
    if path.exists() and path.read_text():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(path.read_text()), signal.SIGKILL)


def write_notebook(root: Path) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(NOTEBOOK)]
    (root / "notebooks").mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, root / "notebooks" / "daemon.ipynb")


def gone(pid: int) -> bool:
    """No such process, or a zombie whose parent is not this process (init reaps it)."""
    seen = state_and_parent(pid)
    return seen is None or (seen[0] == "Z" and seen[1] != os.getpid())


@pytest.mark.parametrize("warm", ["1", "0"], ids=["warm-fork", "fresh-process"])
def test_a_daemon_started_by_the_notebook_ends_with_the_step(tmp_path, daemon_pid_file, warm, monkeypatch):
    monkeypatch.setenv("QUETZAL_WARM", warm)
    write_notebook(tmp_path / "task")
    (tmp_path / "bucket" / "base").mkdir(parents=True)
    (tmp_path / "bucket" / "base" / "info.json").write_text("{}")
    event = {"notebook_path": "notebooks/daemon.ipynb", "scenario_path_S3": "base/",
             "launcher_arg": {"training_folder": "/tmp", "params": {}}}

    result = run_step(event, storage=FolderStorage(tmp_path / "bucket"), workdir=tmp_path / "work",
                      task_root=tmp_path / "task", time_left_s=300, image_tag="t", out=lambda line: None)

    pid = int(daemon_pid_file.read_text())
    assert "daemon" in (tmp_path / "bucket" / result.log_key).read_text()
    assert gone(pid), f"the notebook's daemon {pid} outlived its step"
    assert state_and_parent(pid) is None  # reaped here, no zombie left


def test_a_daemon_started_by_the_notebook_ends_with_the_step_of_a_local_run(baked_repo, tmp_path,
                                                                           daemon_pid_file):
    write_notebook(baked_repo)
    write_definition(baked_repo, {"daemon": lambda_task(step_payload("daemon"), End=True)}, "daemon")

    done = invoke(baked_repo, tmp_path, "run", "--local", "base")

    assert done.returncode == 0, done.stdout + done.stderr
    pid = int(daemon_pid_file.read_text())
    assert gone(pid), f"the notebook's daemon {pid} outlived the local run's step"
