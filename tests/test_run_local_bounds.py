"""``invoke run --local`` bounded: an endless loop ends at Step Functions' history limit, duplicate
state names are refused before anything runs, and a run stopped by SIGTERM (a CI job cancelled,
a container stopped) or Ctrl-C stops its notebook (which runs in its own process group) with its
children, starts no further Map item, and removes its temporary folder.

The signal test synchronises on events only: a FIFO the notebook writes once it runs, the invoke
process's exit, and pidfd readiness for the notebook's processes."""

import os
import select
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from test_run_local import (
    invoke,
    lambda_task,
    no_aws_environment,
    step_payload,
    write_definition,
    write_notebook,
)

pytestmark = pytest.mark.timeout(300)

HOLD = """import subprocess
grandchild = subprocess.Popen(["sleep", "600"])
with open({pids!r}, "a") as log:
    log.write(f"{{os.getpid()}} {{grandchild.pid}}\\n")
with open({fifo!r}, "w") as fifo:
    fifo.write("started")
time.sleep(600)
"""
EVENT = {"scenario_path_S3.$": "$.scenario_path_S3", "launcher_arg.$": "$.launcher_arg",
         "metadata.$": "$.metadata"}


def two_item_map() -> dict:
    """A Map over two items, one at a time, each running the ``hold`` notebook."""
    iterator = {"StartAt": "hold", "States": {"hold": lambda_task(step_payload("hold"), End=True)}}
    return {
        "items": {"Type": "Pass", "Parameters": {"items.$": "States.ArrayRange(0, 1, 1)", **EVENT},
                  "Next": "fan"},
        "fan": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 1, "ItemSelector": EVENT,
                "Iterator": iterator, "End": True},
    }


def wait_until_gone(pid: int, budget_s: float = 60) -> None:
    """Return once process ``pid`` has ended (a pidfd becomes readable); fail after ``budget_s``."""
    try:
        descriptor = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        ready, _, _ = select.select([descriptor], [], [], budget_s)
        assert ready, f"process {pid} still runs {budget_s:g} s after the run was stopped"
    finally:
        os.close(descriptor)


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stopped_local_run_stops_its_notebooks_and_removes_its_temporary_folder(
        baked_repo, tmp_path, signal_number):
    fifo, pids, temporary = tmp_path / "started", tmp_path / "pids.txt", tmp_path / "tmp"
    os.mkfifo(fifo)
    temporary.mkdir()
    write_notebook(baked_repo, "hold", HOLD.format(pids=str(pids), fifo=str(fifo)))
    write_definition(baked_repo, two_item_map(), "items")
    env = {**no_aws_environment(tmp_path), "TMPDIR": str(temporary)}
    run = subprocess.Popen([sys.executable, "-m", "invoke", "run", "--local", "base"], cwd=baked_repo,
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def unblock_if_it_ends_early():
        run.wait()
        with open(fifo, "w") as writer:
            writer.write("exited")

    threading.Thread(target=unblock_if_it_ends_early, daemon=True).start()
    with open(fifo) as reader:
        assert reader.read() == "started", "the run ended before its notebook started"
    notebook, grandchild = map(int, Path(pids).read_text().split())

    run.send_signal(signal_number)
    out, err = run.communicate(timeout=120)

    assert run.returncode == 130, out + err
    assert "Interrupted." in err and "Traceback" not in err, err
    for pid in (notebook, grandchild):
        wait_until_gone(pid)
    assert len(pids.read_text().splitlines()) == 1, "the Map started its second item after the signal"
    assert not [path.name for path in temporary.iterdir() if path.name.startswith("quetzal-")]


def test_an_endless_loop_ends_at_the_history_limit_and_item_processor_is_warned_about(baked_repo, tmp_path):
    processor = {"StartAt": "inner", "States": {"inner": {"Type": "Pass", "End": True}}}
    write_definition(baked_repo, {
        "fan": {"Type": "Map", "ItemsPath": "$.variants", "ItemProcessor": processor, "ResultPath": None,
                "Next": "again"},
        "again": {"Type": "Choice", "Default": "fan",
                  "Choices": [{"Variable": "$.choice", "StringEquals": "never", "Next": "done"}]},
        "done": {"Type": "Succeed"},
    }, "fan")

    done = invoke(baked_repo, tmp_path, "run", "--local", "base")

    assert done.returncode == 1, done.stdout + done.stderr
    assert "Warning: Map state 'fan' uses ItemProcessor" in done.stdout
    assert "Error: States.Runtime" in done.stdout
    assert "history reached 25,000 events" in done.stdout and "Traceback" not in done.stderr


def test_duplicate_state_names_are_refused_before_the_run(baked_repo, tmp_path):
    branch = {"StartAt": "step", "States": {"step": lambda_task(step_payload("preparation"), End=True)}}
    write_definition(baked_repo, {
        "step": {"Type": "Parallel", "Branches": [branch], "End": True},
    }, "step")

    done = invoke(baked_repo, tmp_path, "run", "--local", "base")

    assert done.returncode == 1
    assert "state name 'step' is used 2 times" in done.stderr and "Traceback" not in done.stderr
    assert not (baked_repo / ".quetzal" / "runs").exists()
