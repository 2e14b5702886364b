"""Warm steps: the zygote preloads the notebooks' imports once and forks one real child per step.

Every test runs real processes: the zygote (``python -m quetzal_deploy.runtime.warm``), the
children it forks and, to compare, fresh ``python script`` processes through the same
``run_script``.
"""

import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures.parts import missing_part
from quetzal_deploy.errors import ConfigError
from quetzal_deploy.runtime import warm
from quetzal_deploy.runtime.handler import run_step
from quetzal_deploy.runtime.notebook import run_script
from quetzal_deploy.runtime.storage import FolderStorage
from quetzal_deploy.settings import load_settings

NOTEBOOKS = Path(__file__).parent / "support" / "notebooks"


def notebook(cells: list[str]) -> str:
    return json.dumps({"cells": [{"cell_type": "code", "source": cell} for cell in cells],
                       "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


@pytest.fixture
def zygotes():
    """Started zygotes, stopped after the test."""
    started = []
    yield started
    for zygote in started:
        zygote.stop()
    warm.shutdown()


def start(zygotes, lines, echo=print):
    zygote = warm.start(tuple(lines), echo)
    zygotes.append(zygote)
    return zygote


def run(tmp_path, source: str, zygote, env: dict | None = None, argument: str = '{"a": 1}'):
    """``source`` as a step's script, forked from ``zygote`` (or fresh with None); its outcome."""
    folder = tmp_path / "notebooks"
    folder.mkdir(exist_ok=True)
    script = folder / "step.py"
    script.write_text(source, encoding="utf-8")
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    step_env = {**os.environ, "PYTHONPATH": path, **(env or {})}
    return run_script(script, argument, cwd=folder, env=step_env, log_path=tmp_path / "step.log",
                      budget_s=300, out=lambda line: None, warm=zygote)


def printed(outcome) -> dict:
    """The step's ``RETURN:`` values merged."""
    merged = {}
    for text in outcome.returns:
        merged.update(json.loads(text))
    return merged


# --- what to preload -----------------------------------------------------------------------------

def test_discovery_lists_the_notebooks_top_level_imports_but_not_the_models_own(tmp_path):
    (tmp_path / "notebooks" / "pt").mkdir(parents=True)
    (tmp_path / "_common").mkdir()
    (tmp_path / "notebooks" / "helpers.py").write_text("import csv\nimport helpers_twin\n")
    (tmp_path / "notebooks" / "pt" / "prep.ipynb").write_text(notebook([
        "%matplotlib inline\nimport pandas as pd\nimport os.path, json",
        "from quetzal.model import stepmodel, analysismodel as am\nfrom helpers import f\n"
        "import _common.tools\nfrom __future__ import annotations",
        "def later():\n    import scipy\nif True:\n    import numba",
    ]))
    (tmp_path / "notebooks" / "pt" / "prep.py").write_text("import not_read  # the converted script\n")
    (tmp_path / "notebooks" / ".ipynb_checkpoints").mkdir()
    (tmp_path / "notebooks" / ".ipynb_checkpoints" / "old.ipynb").write_text(notebook(["import old"]))

    assert warm.discover(tmp_path) == ["import csv", "import helpers_twin", "import pandas",
                                       "import os.path", "import json",
                                       "from quetzal.model import stepmodel, analysismodel"]


def test_environment_then_image_file_then_discovery_choose_what_to_preload(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "a.ipynb").write_text(notebook(["import csv"]))
    assert warm.config(tmp_path, {}).preload == ("import csv",)

    (tmp_path / warm.CONFIG_FILE).write_text(warm.config_file(True, ("json", " email.parser"), tmp_path))
    assert warm.config(tmp_path, {}) == warm.Config(True, ("import json", "import email.parser"))
    assert warm.config(tmp_path, {warm.PRELOAD_VARIABLE: "decimal"}).preload == ("import decimal",)
    assert not warm.config(tmp_path, {warm.SWITCH: "0"}).enabled

    (tmp_path / warm.CONFIG_FILE).write_text(warm.config_file(False, None, tmp_path))
    saved = json.loads((tmp_path / warm.CONFIG_FILE).read_text())
    assert saved == {"enabled": False, "preload": ["import csv"]}  # found at build time
    assert not warm.config(tmp_path, {}).enabled


def test_env_file_sets_warm_steps_and_what_they_preload(tmp_path):
    base = "MODEL_NAME=model-one\nAWS_REGION=ca-central-1\nLAMBDA_MEMORY_SIZE=1024\nLAMBDA_TIME_LIMIT=60\n" \
           "LAMBDA_STORAGE_SIZE=512\n"
    (tmp_path / ".env").write_text(base)
    settings = load_settings(tmp_path)
    assert (settings.warm_steps, settings.warm_preload) == (True, None)

    (tmp_path / ".env").write_text(base + "WARM_STEPS=no\nWARM_PRELOAD=pandas, numpy\n")
    settings = load_settings(tmp_path)
    assert (settings.warm_steps, settings.warm_preload) == (False, ("pandas", "numpy"))

    (tmp_path / ".env").write_text(base + "WARM_STEPS=maybe\n")
    with pytest.raises(ConfigError, match="WARM_STEPS='maybe' in .env must be yes or no"):
        load_settings(tmp_path)


# --- the zygote ----------------------------------------------------------------------------------

def test_a_forked_step_finds_the_imports_preloaded_and_behaves_as_a_fresh_process(tmp_path, zygotes):
    zygote = start(zygotes, ["import decimal", "from email import parser"])
    source = (
        "import json, os, sys\n"
        "loaded = 'decimal' in sys.modules\n"
        "print('RETURN:', json.dumps({'argv': sys.argv[1:], 'cwd': os.getcwd(), 'preloaded': loaded,\n"
        "    'name': __name__, 'path0': sys.path[0], 'marker': os.environ.get('MARKER'),\n"
        "    'stdin': sys.stdin.read(), 'parent': os.getppid(), 'session': os.getsid(0) == os.getpid()}))\n"
    )
    outcomes = {mode: run(tmp_path, source, chosen, {"MARKER": mode})
                for mode, chosen in (("warm", zygote), ("fresh", None))}

    for mode, outcome in outcomes.items():
        assert outcome.returncode == 0, list(outcome.tail)
        seen = printed(outcome)
        assert seen["argv"] == ['{"a": 1}'] and seen["cwd"] == str(tmp_path / "notebooks")
        assert seen["name"] == "__main__" and seen["path0"] == str(tmp_path / "notebooks")
        assert seen["marker"] == mode and seen["stdin"] == "" and seen["session"]
        assert outcome.peak_memory_mb > 0
    assert printed(outcomes["warm"])["preloaded"] and not printed(outcomes["fresh"])["preloaded"]
    assert printed(outcomes["warm"])["parent"] == zygote.process.pid
    assert printed(outcomes["fresh"])["parent"] == os.getpid()


def test_nothing_a_step_does_reaches_the_next_one(tmp_path, zygotes):
    zygote = start(zygotes, ["import decimal"])
    first = run(tmp_path, "import decimal, os\ndecimal.STAMP = 1\nos.environ['STAMP'] = '1'\n", zygote)
    second = run(tmp_path, "import decimal, json, os\nprint('RETURN:', "
                           "json.dumps([hasattr(decimal, 'STAMP'), 'STAMP' in os.environ]))\n", zygote)
    assert first.returncode == 0 and second.returns == ["[false, false]"]


def test_exit_codes_and_tracebacks_are_those_of_python_script(tmp_path, zygotes):
    zygote = start(zygotes, [])
    for chosen in (zygote, None):
        assert run(tmp_path, "import sys\nsys.exit(3)\n", chosen).returncode == 3
        failed = run(tmp_path, "x = 1\nraise ValueError('boom')\n", chosen)
        assert failed.returncode == 1
        assert list(failed.tail)[-4:] == [
            "Traceback (most recent call last):",
            f'  File "{tmp_path / "notebooks" / "step.py"}", line 2, in <module>',
            "    raise ValueError('boom')", "ValueError: boom"]
        stopped = run(tmp_path, "end_of_notebook\n", chosen)
        assert stopped.returncode == 1 and stopped.end_of_notebook


def test_a_failed_preload_is_a_warning_never_a_failed_step(tmp_path, monkeypatch):
    """Through the handler's core: the step succeeds and says what was not preloaded."""
    task_root = tmp_path / "task"
    (task_root / "notebooks").mkdir(parents=True)
    (task_root / "notebooks" / "step.ipynb").write_text(
        notebook(["import json\nprint('RETURN:', json.dumps({'ok': 1}))"]))
    (tmp_path / "bucket" / "base" / "inputs").mkdir(parents=True)
    (tmp_path / "bucket" / "base" / "inputs" / "params.json").write_text("[]")  # an existing scenario
    monkeypatch.setenv(warm.SWITCH, "1")
    monkeypatch.setenv(warm.PRELOAD_VARIABLE, "no_such_module_for_quetzal,json")
    lines = []
    try:
        result = run_step({"notebook_path": "notebooks/step.ipynb", "scenario_path_S3": "base/",
                           "launcher_arg": {}, "metadata": {}},
                          storage=FolderStorage(tmp_path / "bucket"), workdir=tmp_path / "work",
                          task_root=task_root, time_left_s=300, image_tag="t", out=lines.append)
    finally:
        warm.shutdown()
    assert result.event["ok"] == 1
    warnings = [line for line in lines if "WARNING" in line]
    assert len(warnings) == 1 and "`import no_such_module_for_quetzal` was not preloaded" in warnings[0]
    assert "ModuleNotFoundError" in warnings[0]
    assert "[quetzal] warm start: 1 imports preloaded" in "\n".join(lines)


def test_the_switch_runs_steps_in_fresh_processes(tmp_path, monkeypatch):
    (tmp_path / "notebooks").mkdir()
    monkeypatch.setenv(warm.SWITCH, "0")
    try:
        assert warm.prepare(tmp_path) is None
        outcome = run(tmp_path, "import os\nprint('RETURN:', os.getppid())\n", warm.prepare(tmp_path))
    finally:
        warm.shutdown()
    assert outcome.returns == [str(os.getpid())]


def need_numpy():
    try:
        import numpy  # noqa: F401 - requirements-test.txt has it
    except ImportError:
        missing_part("numpy is not installed (requirements-test.txt has it)")


def thread_module(folder: Path) -> None:
    (folder / "starts_a_thread.py").write_text(
        "import threading\nthreading.Thread(target=threading.Event().wait, daemon=True).start()\n")


def test_a_module_that_starts_a_thread_is_left_out_and_the_zygote_forks_single_threaded(
        tmp_path, zygotes, monkeypatch):
    thread_module(tmp_path)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    warnings = []
    zygote = start(zygotes, ["import decimal", "import starts_a_thread", "import csv"], warnings.append)

    assert zygote.preloaded == ["import decimal", "import csv"]
    assert len(warnings) == 1 and "`import starts_a_thread` starts threads at import" in warnings[0]
    assert len(os.listdir(f"/proc/{zygote.process.pid}/task")) == 1
    assert run(tmp_path, "import starts_a_thread\n", zygote).returncode == 0  # the step imports it


def test_blas_pools_wait_in_the_zygote_and_get_their_size_back_in_each_step(tmp_path, zygotes):
    """numpy's OpenBLAS starts its pool when loaded: one thread in the zygote, the size the
    step's environment asks for in the step, as in a fresh process."""
    need_numpy()
    zygote = start(zygotes, ["import numpy"])
    assert zygote.preloaded == ["import numpy"]
    assert len(os.listdir(f"/proc/{zygote.process.pid}/task")) == 1

    source = "import numpy, os\nprint('RETURN:', len(os.listdir('/proc/self/task')))\n"
    counts = {mode: run(tmp_path, source, chosen, {"OPENBLAS_NUM_THREADS": "3"}).returns
              for mode, chosen in (("warm", zygote), ("fresh", None))}
    expected = min(3, len(os.sched_getaffinity(0)))  # OpenBLAS never starts more than the cores
    assert counts["warm"] == counts["fresh"] == [str(expected)]


def test_numba_preloaded_compiles_and_runs_parallel_code_in_each_step_with_the_steps_settings(
        tmp_path, zygotes, monkeypatch):
    """Real numba: importing it and decorating starts no thread (the zygote forks); a step
    compiles and runs a ``parallel=True`` function defined in a preloaded module, with the pool
    size and cache folder of its own environment (read again, as a fresh process reads them)."""
    try:
        import numba  # noqa: F401 - requirements-test.txt has it
    except ImportError:
        missing_part("numba is not installed (requirements-test.txt has it)")
    (tmp_path / "kernels.py").write_text(
        "from numba import njit, prange\n"
        "@njit(parallel=True)\ndef total(a):\n    s = 0.0\n    for i in prange(a.shape[0]):\n"
        "        s += a[i] * 2\n    return s\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    zygote = start(zygotes, ["import numpy", "import numba", "import kernels"])
    assert zygote.preloaded == ["import numpy", "import numba", "import kernels"]
    assert len(os.listdir(f"/proc/{zygote.process.pid}/task")) == 1

    source = ("import json, os, numpy, numba, kernels\n"
              "@numba.njit(cache=True)\ndef plus_one(x):\n    return x + 1\n"
              "print('RETURN:', json.dumps({'total': kernels.total(numpy.arange(1000.0)),\n"
              "    'one': plus_one(0),\n"
              "    'pool': numba.get_num_threads(), 'layer': numba.threading_layer(),\n"
              "    'threads': len(os.listdir('/proc/self/task')), 'cache': numba.config.CACHE_DIR}))\n")
    pool = len(os.sched_getaffinity(0)) + 1  # not numba's default: the zygote's import did not fix it
    seen = {}
    for mode, chosen in (("warm", zygote), ("fresh", None)):
        env = {"NUMBA_NUM_THREADS": str(pool), "NUMBA_CACHE_DIR": str(tmp_path / f"cache-{mode}")}
        outcome = run(tmp_path, source, chosen, env)
        assert outcome.returncode == 0, list(outcome.tail)
        seen[mode] = printed(outcome)
        assert seen[mode].pop("cache") == env["NUMBA_CACHE_DIR"]
        assert list((tmp_path / f"cache-{mode}").iterdir())  # plus_one cached there
    assert seen["warm"] == seen["fresh"]
    assert seen["warm"]["total"] == 999000.0 and seen["warm"]["one"] == 1 and seen["warm"]["pool"] == pool


def test_each_forked_step_draws_its_own_random_numbers(tmp_path, zygotes):
    need_numpy()
    zygote = start(zygotes, ["import numpy", "import random"])
    source = "import numpy, random\nprint('RETURN:', [numpy.random.random(), random.random()])\n"
    draws = [run(tmp_path, source, zygote).returns[0] for _ in range(2)]
    first, second = (json.loads(draw) for draw in draws)
    assert first[0] != second[0] and first[1] != second[1]


def test_a_step_runs_in_a_fresh_process_when_the_zygote_is_gone(tmp_path, zygotes, capfd):
    zygote = start(zygotes, [])
    zygote.process.kill()
    zygote.process.wait()
    outcome = run(tmp_path, "import os\nprint('RETURN:', os.getppid())\n", zygote)
    assert outcome.returns == [str(os.getpid())]
    assert "the warm process is gone: this step runs in a fresh process" in capfd.readouterr().err


def test_prepare_starts_one_zygote_per_task_root_and_again_when_it_died(tmp_path, monkeypatch):
    (tmp_path / "notebooks").mkdir()
    monkeypatch.setenv(warm.SWITCH, "1")
    try:
        first = warm.prepare(tmp_path)
        assert warm.prepare(tmp_path) is first
        first.process.kill()
        first.process.wait()
        again = warm.prepare(tmp_path)
        assert again is not first and again.process.poll() is None
        assert not first.folder.exists() and again.folder.is_dir()
    finally:
        warm.shutdown()


def test_a_package_starting_a_system_thread_is_refused_and_what_came_before_it_stays_preloaded(
        tmp_path, zygotes, monkeypatch):
    """A thread the threading module does not know (``_thread``, as an extension's would be) is
    traced to the package that started it; the next zygote refuses that package only."""
    (tmp_path / "raw_thread_starter.py").write_text(
        "import _thread, threading\n_thread.start_new_thread(threading.Event().wait, ())\n")
    (tmp_path / "uses_raw_thread.py").write_text("import fractions\nimport raw_thread_starter\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    warnings = []
    zygote = start(zygotes, ["import uses_raw_thread", "import decimal"], warnings.append)

    assert zygote.preloaded == ["import decimal"]
    assert [line for line, _ in zygote.skipped] == ["import uses_raw_thread"]
    assert len(warnings) == 1 and "`raw_thread_starter` starts threads when imported" in warnings[0]
    assert len(os.listdir(f"/proc/{zygote.process.pid}/task")) == 1
    source = ("import json, sys\nbefore = 'fractions' in sys.modules\nimport uses_raw_thread\n"
              "print('RETURN:', json.dumps(before))\n")
    assert run(tmp_path, source, zygote).returns == ["true"]


def test_what_a_refused_import_needs_besides_the_refused_package_is_preloaded_and_its_code_kept(
        tmp_path, zygotes, monkeypatch):
    """``from model_pkg import user`` fails on a package that starts a thread (as quetzal's
    modules on polars): the imports of ``model_pkg.user`` (relative ones made absolute) are
    preloaded in its place, and its compiled code is kept for the steps, unless its file changes."""
    (tmp_path / "raw_thread_starter.py").write_text(
        "import _thread, threading\n_thread.start_new_thread(threading.Event().wait, ())\n")
    (tmp_path / "after_it.py").write_text("value = 2\n")
    (tmp_path / "model_pkg").mkdir()
    (tmp_path / "model_pkg" / "__init__.py").write_text("")
    (tmp_path / "model_pkg" / "sibling.py").write_text("value = 1\n")
    user = tmp_path / "model_pkg" / "user.py"
    user.write_text("import raw_thread_starter\nfrom . import sibling\nfrom .sibling import value\n"
                    "import after_it\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    zygote = start(zygotes, ["from model_pkg import user"], lambda line: None)

    assert [line for line, _ in zygote.skipped] == ["from model_pkg import user"]
    assert zygote.around == ["from model_pkg import sibling", "from model_pkg.sibling import value",
                             "import after_it"]
    assert len(os.listdir(f"/proc/{zygote.process.pid}/task")) == 1
    source = ("import json, sys\nbefore = sorted(set(sys.modules) & {'model_pkg.sibling', 'after_it', "
              "'model_pkg.user', 'raw_thread_starter'})\nfrom model_pkg import user\n"
              "print('RETURN:', json.dumps({'before': before, 'cached': 'get_code' in vars(user.__loader__),"
              " 'changed': hasattr(user, 'changed')}))\n")
    assert printed(run(tmp_path, source, zygote)) == {
        "before": ["after_it", "model_pkg.sibling"], "cached": True, "changed": False}

    user.write_text(user.read_text() + "changed = True\n")
    assert printed(run(tmp_path, source, zygote))["changed"]


def test_an_import_that_starts_a_thread_and_then_fails_is_refused_too(tmp_path, zygotes, monkeypatch):
    (tmp_path / "threads_then_fails.py").write_text(
        "import _thread, threading\n_thread.start_new_thread(threading.Event().wait, ())\n"
        "raise RuntimeError('no')\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    warnings = []
    zygote = start(zygotes, ["import threads_then_fails", "import decimal"], warnings.append)

    assert zygote.preloaded == ["import decimal"]
    assert len(warnings) == 1 and "`threads_then_fails` starts threads when imported" in warnings[0]
    assert len(os.listdir(f"/proc/{zygote.process.pid}/task")) == 1


@pytest.mark.parametrize("mode", ["warm", "fresh"])
def test_a_forked_grandchild_is_watched_and_ended_with_its_step(tmp_path, zygotes, mode):
    """A process the notebook forks without exec (multiprocessing's fork, a daemon) shows the
    environment its process was started with: for a step forked from the warm process, the
    zygote's, without the step's mark. It is found by its session, the notebook's."""
    zygote = start(zygotes, []) if mode == "warm" else None
    seen_file, pid_file = tmp_path / "seen", tmp_path / "grandchild.pid"
    source = (
        "import os, time\nfrom pathlib import Path\n"
        "pid = os.fork()\n"
        "if pid == 0:\n    os.setpgid(0, 0)\n    while True:\n        time.sleep(60)\n"
        f"Path({str(pid_file)!r}).write_text(str(pid))\n"
        f"while not Path({str(seen_file)!r}).exists():\n    time.sleep(0.05)\n"
    )
    watched = []

    def watch(pids):
        watched.append(pids)
        if pid_file.exists() and int(pid_file.read_text() or 0) in pids:
            seen_file.touch()

    folder = tmp_path / "notebooks"
    folder.mkdir()
    (folder / "step.py").write_text(source)
    outcome = run_script(folder / "step.py", "{}", cwd=folder, env=dict(os.environ),
                         log_path=tmp_path / "log", budget_s=120, out=lambda line: None,
                         warm=zygote, watch=watch)

    assert outcome.returncode == 0 and seen_file.exists(), list(outcome.tail)
    grandchild = Path(f"/proc/{pid_file.read_text()}/stat")
    assert not grandchild.exists() or grandchild.read_text().rsplit(")", 1)[1].split()[0] == "Z"


# --- the zygote's folder never outlives it -------------------------------------------------------

def wait_until_ended(pid: int) -> None:
    """Until ``pid`` has exited (pidfd readiness: an event, bounded generously as a hang guard);
    reaped if it became this process's child (a subreaper adopts orphans)."""
    try:
        descriptor = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        ready, _, _ = select.select([descriptor], [], [], 120)
        assert ready, f"process {pid} still runs"
    finally:
        os.close(descriptor)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass  # init's or another reaper's child


def starter(tmp_path, code: str) -> subprocess.Popen:
    """A Python process running ``code`` with ``warm`` imported and its temporary files in ``tmp_path``."""
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    return subprocess.Popen([sys.executable, "-c", "from quetzal_deploy.runtime import warm\n" + code],
                            env={**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": path},
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


@pytest.mark.parametrize("end", ["SIGKILL", "exit without shutdown"])
def test_the_zygote_removes_its_folder_when_the_process_that_started_it_is_gone(tmp_path, end):
    process = starter(tmp_path, "zygote = warm.start(('import decimal',))\n"
                                "print(zygote.process.pid, zygote.folder, flush=True)\n"
                                + ("import sys\nsys.stdin.read()\n" if end == "SIGKILL" else ""))
    pid, folder = process.stdout.readline().split()
    assert Path(folder).is_dir() and Path(folder).parent == tmp_path
    if end == "SIGKILL":
        process.kill()
    process.wait()

    wait_until_ended(int(pid))
    assert not [path.name for path in tmp_path.iterdir() if path.name.startswith("quetzal-warm-")]


def test_a_zygote_ended_by_sigterm_removes_its_folder_and_its_steps_get_the_default_back(
        tmp_path, zygotes):
    zygote = start(zygotes, ["import decimal"])
    source = ("import json, signal\n"
              "print('RETURN:', json.dumps(signal.getsignal(signal.SIGTERM) == signal.SIG_DFL))\n")
    assert run(tmp_path, source, zygote).returns == ["true"]

    zygote.process.send_signal(signal.SIGTERM)
    assert zygote.process.wait() == 128 + signal.SIGTERM
    assert not zygote.folder.exists()


def test_a_start_interrupted_while_preloading_leaves_no_zygote_and_no_folder(tmp_path):
    """Ctrl-C (or the local run's SIGTERM, made an exception) while the zygote imports: the
    import here waits until the test has seen it start."""
    (tmp_path / "slow_import.py").write_text(
        "import os, signal\nprint('preloading', os.getpid(), flush=True)\nsignal.pause()\n")
    process = starter(tmp_path, "warm.start(('import slow_import',))\n")
    word, pid = process.stdout.readline().split()
    assert word == "preloading"

    process.send_signal(signal.SIGINT)
    process.wait()

    assert process.returncode != 0
    wait_until_ended(int(pid))
    assert not [path.name for path in tmp_path.iterdir() if path.name.startswith("quetzal-warm-")]
