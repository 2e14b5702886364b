"""``invoke run --local --docker``: each Task runs in the model's image, behind its Lambda emulator.

The image is built as ``invoke build`` builds it (tag ``local``); one container serves every
Task of the run, one invocation at a time (the emulator serves one at a time, as one Lambda
instance does), with the run's bucket folder mounted where the handler reads it
(``QUETZAL_BUCKET_FOLDER``) and the model's time limit enforced by the emulator.

A Fargate step runs as on ECS: a container of its own from the same image, started with the
command-line entry point (``python -m quetzal_deploy.runtime.cli``, the task definition's entry
point) and its rendered container environment; with no Step Functions to report to, it writes
its outcome to a mounted file.
"""

from __future__ import annotations

import json
import secrets
import tempfile
from pathlib import Path
from typing import Any

from quetzal_deploy.images.build import build_image, docker_client, resolve_base_image
from quetzal_deploy.local.errors import StatesError
from quetzal_deploy.local.lambda_emulator import LocalLambda
from quetzal_deploy.output import Out
from quetzal_deploy.runtime.cli import TOKEN_VARIABLE
from quetzal_deploy.settings import Settings

MOUNT = "/bucket"
OUTBOX = "/quetzal-outbox"
ENTRY_POINT = ["python", "-m", "quetzal_deploy.runtime.cli"]  # the Terraform task definition's too
STOP_GRACE_S = 120


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
        self.printed = 0

    def __enter__(self) -> ContainerTasks:
        self.function.start()
        self.out(f"Started {self.function.image} as {self.function.name} on {self.function.url}")
        return self

    def __exit__(self, *exc) -> None:
        self.function.stop()

    def invoke(self, payload: Any, label: str) -> Any:
        """The function's answer; a function error becomes the StatesError Step Functions raises."""
        answer = self.function.invoke(payload, timeout_s=self.settings.timeout_s + 60)
        logs = self.function.logs()
        for line in logs[self.printed:].splitlines():
            self.out(f"    {label} | {line}")
        self.printed = len(logs)
        if not answer.failed:
            return answer.payload
        body = answer.payload if isinstance(answer.payload, dict) else {"errorMessage": str(answer.payload)}
        raise StatesError(body.get("errorType", "Lambda.Unknown"), json.dumps(body))

    def run_task(self, environment: dict[str, str], label: str, limit_s: float) -> Any:
        """A Fargate step in a container of its own; returns its event or raises its failure."""
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
                for line in container.logs().decode(errors="replace").splitlines():
                    self.out(f"    {label} | {line}")
            finally:
                container.remove(force=True)
            outcome_file = Path(outbox, "outcome.json")
            if not outcome_file.is_file():
                raise StatesError("States.TaskFailed", f"{label}: the container stopped without an outcome")
            outcome = json.loads(outcome_file.read_text(encoding="utf-8"))
        if "error" in outcome:
            raise StatesError(outcome["error"], outcome["cause"])
        return outcome["output"]["Payload"]
