"""``invoke run --local --docker``: each Task runs in the model's image, behind its Lambda emulator.

The image is built as ``invoke build`` builds it (tag ``local``); each Lambda Task runs in a
fresh container of it (a cold start), one at a time, with the run's bucket folder mounted where
the handler reads it (``QUETZAL_BUCKET_FOLDER``) and the model's time limit enforced by the
emulator. A container per step makes its cgroup's peak memory that step's: read from Docker's
stats (cgroup v1 ``max_usage``) or the cgroup's ``memory.peak`` (v2), page cache included as
Lambda counts it; ``/tmp`` is measured in the container after the step.

A Fargate step runs as on ECS: a container of its own from the same image, started with the
command-line entry point (``python -m quetzal_deploy.runtime.cli``, the task definition's entry
point) and its rendered container environment; with no Step Functions to report to, it writes
its outcome to a mounted file, with its figures measured in the container by the entry point
(``runtime.cli.Figures``: its processes' peak resident memory and its working folder's size, as a
step run in this process is measured), which the runner checks against the Fargate task's memory
and storage. A stopped container's cgroup is gone, so its peak cannot be read afterwards as a
Lambda step's is.
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
from quetzal_deploy.settings import Settings

MOUNT = "/bucket"
OUTBOX = "/quetzal-outbox"
ENTRY_POINT = ["python", "-m", "quetzal_deploy.runtime.cli"]  # the Terraform task definition's too
STOP_GRACE_S = 120
UPLOAD_LINE = re.compile(r"\[quetzal\] upload: [0-9.]+ s \(([0-9]+) files\)")
Figures = tuple[float | None, float | None, int | None]  # peak memory MB, /tmp MB, files written
TMP_PROBE = ("import os; print(sum(os.lstat(os.path.join(d, f)).st_size "
             "for d, _, fs in os.walk('/tmp') for f in fs))")


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
            figures = (peak_memory_mb(self.function.container), tmp_mb(self.function.container),
                       files_written(logs))
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


def peak_memory_mb(container) -> float | None:
    """The container's peak memory since it started: cgroup v1's ``max_usage`` in Docker's stats,
    else cgroup v2's ``memory.peak``; None when neither is available."""
    stats = container.stats(stream=False, one_shot=True).get("memory_stats", {})
    if stats.get("max_usage"):
        return stats["max_usage"] / 2**20
    found = container.exec_run(["cat", "/sys/fs/cgroup/memory.peak"])
    text = found.output.decode(errors="replace").strip()
    return int(text) / 2**20 if found.exit_code == 0 and text.isdigit() else None


def tmp_mb(container) -> float | None:
    """What the step left in the container's ``/tmp`` (the handler's working folder)."""
    found = container.exec_run(["python", "-c", TMP_PROBE])
    text = found.output.decode(errors="replace").strip()
    return int(text) / 2**20 if found.exit_code == 0 and text.isdigit() else None


def files_written(logs: str) -> int | None:
    """Files the step created or changed, from the handler's upload line (info.json aside)."""
    counts = UPLOAD_LINE.findall(logs)
    return max(int(counts[-1]) - 1, 0) if counts else None
