"""``invoke run --local --docker``: each Task runs in the model's image, behind its Lambda emulator.

The image is built as ``invoke build`` builds it (tag ``local``); each Lambda Task runs in a
fresh container of it (a cold start), one at a time, with the run's bucket folder mounted where
the handler reads it (``QUETZAL_BUCKET_FOLDER``) and the model's time limit enforced by the
emulator. Its figures are measured in the container by the handler, as a step run in this
process is measured (``runtime.handler.Figures``: its processes' peak resident memory, not the
container's page cache, and its ``/tmp``'s size), and logged on a ``FIGURES_LINE`` read from the
container's log with the handler's upload line: what the function returns is the deployed
Lambda's. The runner checks them against the Lambda's memory and storage.

A Fargate step runs as on ECS: a container of its own from the same image, started with the
command-line entry point (``python -m quetzal_deploy.runtime.cli``, the task definition's entry
point) and its rendered container environment; with no Step Functions to report to, it writes
its outcome to a mounted file, with the same figures measured in the container by the entry
point, which the runner checks against the Fargate task's memory and storage.
"""

from __future__ import annotations

import json
import re
import secrets
import tempfile
from pathlib import Path
from typing import Any

from quetzal_deploy.contract.fargate import TOKEN_VARIABLE
from quetzal_deploy.images.build import build_image, docker_client, resolve_base_image
from quetzal_deploy.local.errors import StatesError
from quetzal_deploy.local.lambda_emulator import LocalLambda
from quetzal_deploy.output import Out
from quetzal_deploy.runtime.handler import FIGURES_LINE
from quetzal_deploy.settings import Settings

MOUNT = "/bucket"
OUTBOX = "/quetzal-outbox"
ENTRY_POINT = ["python", "-m", "quetzal_deploy.runtime.cli"]  # the Terraform task definition's too
STOP_GRACE_S = 120
UPLOAD_LINE = re.compile(r"\[quetzal\] upload: [0-9.]+ s \(([0-9]+) files\)")
Figures = tuple[float | None, float | None, int | None]  # peak memory MB, /tmp MB, files written


class ContainerTasks:
    """The model's image serving Lambda invocations for one local run."""

    def __init__(self, settings: Settings, bucket: Path, out: Out):
        self.settings, self.out = settings, out
        self.client = client = docker_client()
        self.bucket = bucket
        image = build_image(client, settings, "local", resolve_base_image(), out=out)
        env = {
            "QUETZAL_BUCKET_FOLDER": MOUNT,
            "AWS_REGION": settings.region,
            "AWS_EXECUTION_ENV": settings.execution_env,
            "AWS_LAMBDA_FUNCTION_NAME": settings.function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(settings.memory_mb),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(settings.timeout_s),
        }
        self.function = LocalLambda(client, image, env,
                                    volumes={str(bucket.resolve()): {"bind": MOUNT, "mode": "rw"}})

    def __enter__(self) -> ContainerTasks:
        self.out(f"Each Lambda step runs in a fresh container of {self.function.image}, its peak memory "
                 "and /tmp measured there")
        return self

    def __exit__(self, *exc) -> None:
        self.function.stop()

    def invoke(self, payload: Any, label: str) -> tuple[Any, Figures]:
        """The function's answer and the step's (peak memory MB, /tmp MB, files written); a function
        error becomes the StatesError Step Functions raises."""
        self.function.port = 0  # a free one, for each container
        self.function.start()
        try:
            answer = self.function.invoke(payload, timeout_s=self.settings.timeout_s + 60)
            logs = self.function.logs()
            figures = (*logged_figures(logs), files_written(logs))
        finally:
            self.function.stop()
        for line in logs.splitlines():
            self.out(f"    {label} | {line}")
        if not answer.failed:
            return answer.payload, figures
        body = answer.payload if isinstance(answer.payload, dict) else {"errorMessage": str(answer.payload)}
        raise StatesError(body.get("errorType", "Lambda.Unknown"), json.dumps(body))

    def run_task(self, environment: dict[str, str], label: str, limit_s: float) -> tuple[Any, Figures]:
        """A Fargate step in a container of its own: its event and its (peak memory MB, working
        folder MB, files written), or its failure raised."""
        env = {key: value for key, value in environment.items() if key != TOKEN_VARIABLE}
        env.update({"QUETZAL_BUCKET_FOLDER": MOUNT, "AWS_REGION": self.settings.region,
                    "AWS_EXECUTION_ENV": "AWS_ECS_FARGATE"})
        with tempfile.TemporaryDirectory(prefix="quetzal-outbox-") as outbox:
            container = self.client.containers.run(
                self.function.image, entrypoint=ENTRY_POINT, command=["--output", f"{OUTBOX}/outcome.json"],
                environment=env, detach=True, name=f"quetzal-fargate-{secrets.token_hex(4)}",
                volumes={str(self.bucket.resolve()): {"bind": MOUNT, "mode": "rw"},
                         outbox: {"bind": OUTBOX, "mode": "rw"}})
            try:
                container.wait(timeout=limit_s + STOP_GRACE_S)
                logs = container.logs().decode(errors="replace")
                for line in logs.splitlines():
                    self.out(f"    {label} | {line}")
            finally:
                container.remove(force=True)
            outcome_file = Path(outbox, "outcome.json")
            if not outcome_file.is_file():
                raise StatesError("States.TaskFailed", f"{label}: the container stopped without an outcome")
            outcome = json.loads(outcome_file.read_text(encoding="utf-8"))
        if "error" in outcome:
            raise StatesError(outcome["error"], outcome["cause"])
        measured = outcome.get("figures") or {}
        return outcome["output"]["Payload"], (measured.get("peak_memory_mb"), measured.get("tmp_mb"),
                                              files_written(logs))


def logged_figures(logs: str) -> tuple[float | None, float | None]:
    """(peak memory MB, /tmp MB) from the handler's last ``FIGURES_LINE``; None when absent."""
    lines = [line.partition(FIGURES_LINE)[2] for line in logs.splitlines() if FIGURES_LINE in line]
    measured = json.loads(lines[-1]) if lines else {}
    return measured.get("peak_memory_mb"), measured.get("tmp_mb")


def files_written(logs: str) -> int | None:
    """Files the step created or changed, from the handler's upload line (info.json aside)."""
    counts = UPLOAD_LINE.findall(logs)
    return max(int(counts[-1]) - 1, 0) if counts else None
