"""Command-line entry point: one pipeline step outside Lambda (a Fargate task, or ``docker run``).

``python -m quetzal_deploy.runtime.cli [EVENT_JSON] [--time-limit-s N]`` runs the same
``run_step`` as the Lambda handler, with the same storage, working folder and image tag taken
from the environment (``BUCKET_NAME`` or ``QUETZAL_BUCKET_FOLDER``, ``QUETZAL_WORKDIR``,
``IMAGE_TAG``). The event comes from, in order: the argument, ``QUETZAL_EVENT`` (one JSON
object), or one ``QUETZAL_EVENT__<field>`` variable per field holding that field's JSON value,
``__`` separating nested names (what ``update-steps`` renders into the ECS task's container
overrides, since Step Functions can turn a path into JSON text but cannot build an object from
several paths): ``runtime.event.read_event``, the variables named in ``contract.fargate``.

The time limit (``--time-limit-s`` or ``QUETZAL_TIME_LIMIT_S``) counts from the start of this
process; the notebook is stopped a safety margin before it, its log is uploaded and a
``NotebookTimeout`` is raised, as on Lambda.

When ``QUETZAL_TASK_TOKEN`` is set (the state's ``$$.Task.Token`` in a ``.waitForTaskToken``
integration), the outcome goes to Step Functions: ``SendTaskSuccess`` with ``{"Payload": event}``
(the merged event, shaped as the Lambda invoke integration's result, so ``"OutputPath":
"$.Payload"`` works for both kinds of step), or ``SendTaskFailure`` with the
error's class name as ``Error`` and a Lambda-shaped JSON ``Cause`` (``errorMessage``,
``errorType``, ``stackTrace``), so the front end shows a failed Fargate step as a failed Lambda
step. A heartbeat is sent every minute while the step runs, so a container that dies without
reporting fails the state after ``HeartbeatSeconds`` rather than at its time limit.
``--output FILE`` also writes the outcome as JSON (``{"output": ...}`` or ``{"error", "cause"}``)
with the step's ``figures``: the peak resident memory of its processes and the size of its
working folder, measured as the local runner measures a step it runs itself (``handler.Figures``):
``invoke run --local --docker`` reads it, having no Step Functions, and checks the figures against
the Fargate task's memory and storage. The exit code is 0 on success, 1 on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from quetzal_deploy.contract.fargate import LIMIT_VARIABLE, TOKEN_VARIABLE, task_output
from quetzal_deploy.runtime.errors import InvalidEvent
from quetzal_deploy.runtime.event import read_event, time_limit
from quetzal_deploy.runtime.handler import (
    FARGATE,
    Figures,
    default_task_root,
    run_step,
    storage_from_environment,
)

HEARTBEAT_S = 60.0
# SendTaskFailure limits: Error 256 characters, Cause 32,768.
MAX_ERROR = 256
MAX_CAUSE = 32_768


def lambda_shaped_cause(error: BaseException) -> str:
    """The failure as Lambda reports it; the message is cut in the middle to fit the Cause."""
    body = {"errorMessage": str(error), "errorType": type(error).__name__, "stackTrace": []}
    message, keep = body["errorMessage"], MAX_CAUSE // 2
    while len(cause := json.dumps(body, ensure_ascii=False)) > MAX_CAUSE:
        keep //= 2  # escaping makes a character up to 6 long: halve until it fits
        body["errorMessage"] = message[:keep] + "\n[...]\n" + message[-keep:]
    return cause


class Reporter:
    """Sends the step's outcome and heartbeats for one task token (nothing without a token)."""

    def __init__(self, token: str | None, client=None, out=print, output: Path | None = None):
        self.token = token
        self.client = client if client or not token else boto3.client("stepfunctions")
        self.out = out
        self.output = output
        self.figures: dict | None = None  # written with the outcome

    def write(self, outcome: dict) -> None:
        if self.output is not None:
            outcome = dict(outcome, figures=self.figures) if self.figures else outcome
            self.output.write_text(json.dumps(outcome, ensure_ascii=False), encoding="utf-8")

    def call(self, method: str, **kwargs) -> bool:
        if not self.token:
            return True
        try:
            getattr(self.client, method)(taskToken=self.token, **kwargs)
            return True
        except (BotoCoreError, ClientError) as ex:
            self.out(f"[quetzal] {method} failed: {ex}")
            return False

    def success(self, event: dict) -> bool:
        self.write({"output": task_output(event)})
        return self.call("send_task_success", output=json.dumps(task_output(event), ensure_ascii=False))

    def failure(self, error: BaseException) -> bool:
        outcome = {"error": type(error).__name__[:MAX_ERROR], "cause": lambda_shaped_cause(error)}
        self.write(outcome)
        return self.call("send_task_failure", **outcome)

    @contextmanager
    def heartbeat(self, every_s: float = HEARTBEAT_S):
        """Send a heartbeat every ``every_s`` seconds while the block runs."""
        stop = threading.Event()

        def beat():
            while not stop.wait(every_s):
                self.call("send_task_heartbeat")

        thread = threading.Thread(target=beat, daemon=True)
        if self.token:
            thread.start()
        try:
            yield
        finally:
            stop.set()


def run(argument: str | None, limit_s: str | float | None, environ, reporter: Reporter,
        out=print) -> int:
    """Run the step and report it; 0 when it succeeded and was reported, else 1."""
    started = time.monotonic()
    workdir = Path(environ.get("QUETZAL_WORKDIR", "/tmp"))
    figures = Figures(workdir)
    try:
        event = read_event(argument, environ)
        seconds = time_limit(limit_s if limit_s is not None else environ.get(LIMIT_VARIABLE))
        with reporter.heartbeat():
            result = run_step(
                event,
                storage=storage_from_environment(),
                workdir=workdir,
                task_root=default_task_root(),
                time_left_s=seconds - (time.monotonic() - started),
                image_tag=environ.get("IMAGE_TAG", "unknown"),
                out=out,
                platform=FARGATE,
                watch=figures.watch if reporter.output else None,  # measured only for a local run
            )
    except Exception as ex:  # every failure must reach Step Functions, or the state waits
        out(f"[quetzal] step failed: {type(ex).__name__}: {ex}")
        if not isinstance(ex, InvalidEvent) and not type(ex).__module__.startswith("quetzal_deploy"):
            out(traceback.format_exc())
        if reporter.output:
            reporter.figures = figures.read()
        reporter.failure(ex)
        return 1
    if reporter.output:
        reporter.figures = figures.read(result.peak_memory_mb)
    return 0 if reporter.success(result.event) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m quetzal_deploy.runtime.cli",
                                     description="Run one pipeline step (one notebook).")
    parser.add_argument("event", nargs="?", help="the step's event as JSON (default: from the environment)")
    parser.add_argument("--time-limit-s", type=float, default=None,
                        help=f"stop the notebook before this many seconds (default: ${LIMIT_VARIABLE})")
    parser.add_argument("--output", type=Path, default=None,
                        help="also write the outcome to this file as JSON")
    args = parser.parse_args(argv)

    def out(line: str) -> None:
        print(line, flush=True)

    reporter = Reporter(os.environ.get(TOKEN_VARIABLE), out=out, output=args.output)
    return run(args.event, args.time_limit_s, os.environ, reporter, out=out)


if __name__ == "__main__":
    sys.exit(main())
