"""`invoke logs` and the follow loop, against CloudWatch Logs in moto server."""

import os
import signal
import subprocess
import sys
import time

import pytest

from fixtures.tasks import run_task
from quetzal_deploy.aws import Aws
from quetzal_deploy.pipeline.logs import lambda_logs
from quetzal_deploy.settings import load_settings

GROUP = "/aws/lambda/quetzal-test"
STREAM = "2026/01/01/[$LATEST]0123456789abcdef"


@pytest.fixture
def logs(boto):
    client = boto.client("logs")
    client.create_log_group(logGroupName=GROUP)
    client.create_log_stream(logGroupName=GROUP, logStreamName=STREAM)
    return client


def put(logs, *messages, minutes_ago=0.0):
    now_ms = int((time.time() - minutes_ago * 60) * 1000)
    logs.put_log_events(logGroupName=GROUP, logStreamName=STREAM, logEvents=[
        {"timestamp": now_ms + i, "message": message} for i, message in enumerate(messages)
    ])


def test_logs_prints_the_window_oldest_first(baked_repo, logs):
    put(logs, "START old run", minutes_ago=120)
    put(logs, "START recent run", "running notebooks/preparation.ipynb", "END recent run", minutes_ago=30)

    done = run_task(baked_repo, "logs", "--since", "1h")

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == [
        "START recent run", "running notebooks/preparation.ipynb", "END recent run"]


def test_logs_with_nothing_recent_says_so(baked_repo, logs):
    put(logs, "START old run", minutes_ago=120)
    done = run_task(baked_repo, "logs")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"No log events in {GROUP} over the last 10m."


def test_follow_prints_each_new_event_once(baked_repo, logs):
    """The loop polls three times; between polls, the injected sleep writes what the Lambda would."""
    settings = load_settings(baked_repo)
    put(logs, "first")
    arrivals = iter([("second", "third"), ("fourth",)])
    printed = []

    def sleep(_seconds):
        put(logs, *next(arrivals))

    count = lambda_logs(settings, Aws(settings)).follow(
        int((time.time() - 60) * 1000), printed.append, polls=3, interval=0, sleep=sleep)

    assert count == 4
    assert [line.split(" ", 2)[2] for line in printed] == ["first", "second", "third", "fourth"]


@pytest.mark.timeout(180)
def test_follow_runs_until_ctrl_c(baked_repo, logs):
    """`invoke logs --follow` in a pipe: each event shows as it comes; Ctrl-C (SIGINT) ends it cleanly."""
    put(logs, "first")
    follower = subprocess.Popen([sys.executable, "-m", "invoke", "logs", "--follow"], cwd=baked_repo,
                                env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    try:
        assert follower.stdout.readline().endswith(" first\n")
        put(logs, "second")
        assert follower.stdout.readline().endswith(" second\n")
        follower.send_signal(signal.SIGINT)
        _, err = follower.communicate(timeout=120)  # an event (its exit), bounded for a loaded machine
    finally:
        follower.kill()
    assert follower.returncode == 130
    assert err.strip() == "Interrupted."


@pytest.mark.parametrize("args, message", [
    (["--since", "ten minutes"], "--since 'ten minutes' is not a duration"),
    ([], f"No log group {GROUP} yet"),
])
def test_logs_errors_are_one_line(baked_repo, aws, args, message):
    done = run_task(baked_repo, "logs", *args)
    assert done.returncode == 1
    assert done.stderr.startswith(f"ERROR: {message}"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
