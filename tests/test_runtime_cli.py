# ruff: noqa: F811 (the handler tests' fixtures are imported, then used as arguments)
"""The command-line entry point (a Fargate step) against moto server S3 and Step Functions.

Each step runs ``python -m quetzal_deploy.runtime.cli`` as a real child process with a real
notebook. moto accepts SendTaskSuccess / SendTaskFailure / SendTaskHeartbeat but keeps nothing
(its backend methods are no-ops), so the test harness points Step Functions
(``AWS_ENDPOINT_URL_SFN``) at a recording proxy that forwards every request to moto and keeps
the request bodies: the calls are checked as they went over the wire. The proxy is a shim of
the harness only; the code under test is plain boto3.
"""

import json
import os
import subprocess
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from test_handler import TAG, TEMPLATE, lambda_env, make_event, read, s3, task_root, workdir  # noqa: F401

from fixtures.bake import SRC
from quetzal_deploy.runtime.cli import MAX_CAUSE, Reporter, lambda_shaped_cause
from quetzal_deploy.runtime.errors import InvalidEvent, NotebookError
from quetzal_deploy.runtime.event import read_event

TOKEN = "token-of-the-state"


class Recorder(BaseHTTPRequestHandler):
    """Forwards a request to moto and keeps (operation, JSON body)."""

    calls: list
    moto: str
    arrived: threading.Condition

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        operation = self.headers["X-Amz-Target"].rsplit(".", 1)[-1]
        forward = urllib.request.Request(self.moto + self.path, data=body, method="POST",
                                         headers=dict(self.headers))
        with urllib.request.urlopen(forward, timeout=30) as answer:
            status, payload = answer.status, answer.read()
        with self.arrived:
            self.calls.append((operation, json.loads(body)))
            self.arrived.notify_all()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def sfn_calls(aws, monkeypatch):
    """The Step Functions requests the code sends, recorded by a proxy in front of moto."""
    handler = type("BoundRecorder", (Recorder,), {
        "calls": [], "moto": aws, "arrived": threading.Condition()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_SFN", f"http://127.0.0.1:{server.server_address[1]}")
    yield handler
    server.shutdown()
    server.server_close()


def event_fields(event: dict) -> dict[str, str]:
    """The event as update-steps renders it into the container's environment."""
    return {f"QUETZAL_EVENT__{name}": json.dumps(value) for name, value in event.items()}


def run_cli(*args: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    child_env = {**os.environ, "PYTHONPATH": str(SRC), **env}
    return subprocess.run([sys.executable, "-m", "quetzal_deploy.runtime.cli", *args],
                          env=child_env, capture_output=True, text=True, timeout=timeout)


def only_call(calls) -> tuple[str, dict]:
    reports = [call for call in calls if call[0] != "SendTaskHeartbeat"]
    assert len(reports) == 1, calls
    return reports[0]


def test_success_sends_the_merged_event_as_task_output(lambda_env, s3, sfn_calls):
    event = make_event()
    done = run_cli(env={**event_fields(event), "QUETZAL_TASK_TOKEN": TOKEN,
                        "QUETZAL_TIME_LIMIT_S": "600"})

    assert done.returncode == 0, done.stdout + done.stderr
    operation, body = only_call(sfn_calls.calls)
    assert operation == "SendTaskSuccess" and body["taskToken"] == TOKEN
    output = json.loads(body["output"])["Payload"]  # the Lambda invoke integration's shape
    assert {key: output[key] for key in event} == event
    assert output["first"] == 1 and output["second"] == [2]
    assert b"wrote" in read(s3, "base/logs/writes_outputs.txt")
    assert json.loads(read(s3, "base/info.json"))["model_tag"] == TAG
    assert "[quetzal] upload: " in done.stdout


def test_failure_sends_the_notebook_traceback_and_log_key(lambda_env, s3, sfn_calls):
    done = run_cli(json.dumps(make_event("fails")), "--time-limit-s", "600",
                   env={"QUETZAL_TASK_TOKEN": TOKEN})

    assert done.returncode == 1
    operation, body = only_call(sfn_calls.calls)
    assert operation == "SendTaskFailure" and body["error"] == "NotebookError"
    cause = json.loads(body["cause"])
    assert cause["errorType"] == "NotebookError"
    assert "ValueError: demand is negative: -5" in cause["errorMessage"]
    assert "base/logs/fails.txt" in cause["errorMessage"]
    assert b"demand is negative" in read(s3, "base/logs/fails.txt")


def test_time_limit_uploads_the_log_and_fails_before_the_task_is_killed(lambda_env, s3, sfn_calls):
    done = run_cli(json.dumps(make_event("sleeps")), "--time-limit-s", "8",
                   env={"QUETZAL_TASK_TOKEN": TOKEN})

    assert done.returncode == 1
    operation, body = only_call(sfn_calls.calls)
    assert operation == "SendTaskFailure" and body["error"] == "NotebookTimeout"
    message = json.loads(body["cause"])["errorMessage"]
    assert "before the Fargate time limit" in message and "TimeoutSeconds" in message
    assert "LAMBDA_TIME_LIMIT" not in message
    log = read(s3, "base/logs/sleeps.txt").decode()
    assert "the Fargate time limit was near" in log


@pytest.mark.parametrize(("env", "expected"), [
    ({}, "No event given"),
    ({"QUETZAL_EVENT": "{not json"}, "QUETZAL_EVENT is not valid JSON"),
    ({"QUETZAL_EVENT": json.dumps(make_event())}, "No time limit"),
    ({"QUETZAL_EVENT": json.dumps(make_event()), "QUETZAL_TIME_LIMIT_S": "-3"}, "positive number"),
])
def test_a_bad_invocation_is_reported_to_step_functions(lambda_env, sfn_calls, env, expected):
    done = run_cli(env={"QUETZAL_TASK_TOKEN": TOKEN, **env})

    assert done.returncode == 1
    operation, body = only_call(sfn_calls.calls)
    assert operation == "SendTaskFailure" and body["error"] == "InvalidEvent"
    assert expected in json.loads(body["cause"])["errorMessage"]


def test_without_a_token_nothing_is_sent_and_the_output_file_has_the_outcome(lambda_env, s3, sfn_calls,
                                                                              tmp_path):
    outcome = tmp_path / "outcome.json"
    done = run_cli(json.dumps(make_event()), "--time-limit-s", "600", "--output", str(outcome), env={})

    assert done.returncode == 0, done.stderr
    assert sfn_calls.calls == []
    written = json.loads(outcome.read_text())
    assert written["output"]["Payload"]["first"] == 1
    assert b"wrote" in read(s3, "base/logs/writes_outputs.txt")
    figures = written["figures"]  # what a local --docker run shows and checks for the step
    assert figures["peak_memory_mb"] > 1 and figures["tmp_mb"] > 0, figures


def test_heartbeats_are_sent_while_the_step_runs(sfn_calls):
    import boto3

    reporter = Reporter(TOKEN, client=boto3.client("stepfunctions"))
    with reporter.heartbeat(every_s=0.05), sfn_calls.arrived:
        assert sfn_calls.arrived.wait_for(lambda: len(sfn_calls.calls) >= 2, timeout=120)
    assert {operation for operation, _ in sfn_calls.calls} == {"SendTaskHeartbeat"}
    assert all(body == {"taskToken": TOKEN} for _, body in sfn_calls.calls)


def test_a_huge_message_is_cut_to_fit_the_cause():
    error = NotebookError("start " + "é\"" * 40_000 + " end")
    cause = lambda_shaped_cause(error)
    assert len(cause) <= MAX_CAUSE
    message = json.loads(cause)["errorMessage"]
    assert message.startswith("start ") and message.endswith(" end") and "[...]" in message


def test_event_fields_are_read_as_json_values():
    environ = {"QUETZAL_EVENT__launcher_arg": '{"params": {"a": 1}}',
               "QUETZAL_EVENT__scenario_path_S3": '"base/"', "OTHER": "x"}
    assert read_event(None, environ) == {"launcher_arg": {"params": {"a": 1}}, "scenario_path_S3": "base/"}
    with pytest.raises(InvalidEvent, match="QUETZAL_EVENT__x is not valid JSON"):
        read_event(None, {"QUETZAL_EVENT__x": "base/"})
