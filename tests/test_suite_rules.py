"""Rules the suite keeps about itself: every test needing Docker is marked, so that
`-m "not docker"` runs nothing that needs it; a daemon the fixtures start, they stop."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fixtures.aws import free_port
from fixtures.docker import port_open
from fixtures.parts import STATE_DIR, process_start, shared_daemon

TESTS = Path(__file__).parent


def collect(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not docker", *args, "."],
        cwd=folder, env={**os.environ, "PYTHONPATH": str(TESTS)}, capture_output=True, text=True, timeout=300,
    )


@pytest.fixture
def suite(tmp_path) -> Path:
    """A small suite on the real fixtures: one Docker test marked, one through another fixture not."""
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["fixtures.docker"]\n')
    (tmp_path / "test_marked.py").write_text(
        "import pytest\n\n\n@pytest.mark.docker\ndef test_marked(docker_engine):\n    assert docker_engine\n")
    (tmp_path / "test_unmarked.py").write_text(
        "def test_through_the_base_image(lambda_base_image):\n    assert lambda_base_image\n")
    return tmp_path


@pytest.mark.parametrize("args", [["--collect-only"], ["-n", "2"]], ids=["collection", "xdist-run"])
def test_a_docker_test_without_the_marker_fails_the_suite_naming_it(suite, args):
    done = collect(suite, *args)
    assert done.returncode != 0
    output = done.stdout + done.stderr
    errors = [line for line in output.splitlines() if "lacks @pytest.mark.docker" in line]
    assert errors and all("test_unmarked.py::test_through_the_base_image" in line for line in errors), output


def test_marked_docker_tests_are_deselected(suite):
    (suite / "test_unmarked.py").unlink()
    done = collect(suite, "--collect-only")
    assert done.returncode == 5, done.stdout + done.stderr  # 5: no test selected
    assert "1 deselected" in done.stdout


@pytest.fixture
def web_daemon(tmp_path):
    """A real small daemon (python's http.server) on a free port, as a stand-in for dockerd."""
    port = free_port()
    command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    return f"http-{port}", lambda: port_open(f"127.0.0.1:{port}"), command, str(tmp_path / "daemon.log")


def test_a_daemon_the_fixtures_start_is_stopped_by_the_last_user(web_daemon):
    name, answers, command, log = web_daemon
    with shared_daemon(name, answers, command, log, wait_s=60):
        assert answers()
        with shared_daemon(name, answers, command, log, wait_s=60):  # a second user (xdist worker)
            pid = json.loads((STATE_DIR / f"{name}.json").read_text())["started"][0]
        assert answers(), "still used by the first user"
    assert process_start(pid) is None and not answers()


def test_a_daemon_running_before_the_tests_is_left_running(web_daemon):
    name, answers, command, log = web_daemon
    machine = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not answers():
            assert time.monotonic() < deadline, "the stand-in daemon did not start"
            time.sleep(0.1)
        with shared_daemon(name, answers, command, log, wait_s=60):
            assert answers()
        assert machine.poll() is None and answers()
    finally:
        machine.kill()
        machine.wait()
