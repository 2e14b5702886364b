"""The model's image running on this machine behind the Lambda emulator of its base image.

``LocalLambda`` starts the container with the environment the Lambda has, waits until the
emulator answers, posts events to ``/2015-03-31/functions/function/invocations`` and stops it.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlparse

from botocore.exceptions import NoCredentialsError

from quetzal_deploy.aws import Aws, explain
from quetzal_deploy.contract.params import DEFAULT_CHOICE, scenario_params
from quetzal_deploy.errors import QuetzalError
from quetzal_deploy.images.build import DockerError
from quetzal_deploy.pipeline.definition import load_definition, notebook_paths
from quetzal_deploy.settings import Settings
from quetzal_deploy.sync.scenarios import user_email

INVOKE_PATH = "/2015-03-31/functions/function/invocations"
EMULATOR_PORT = 8080
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass
class Invocation:
    """What the function answered: its payload (parsed JSON when it is) and its error, if any."""

    payload: object
    error: str | None  # the X-Amz-Function-Error header: "Unhandled" when the handler raised

    @property
    def failed(self) -> bool:
        return self.error is not None


def lambda_environment(settings: Settings, aws: Aws) -> dict[str, str]:
    """The variables the deployed Lambda sees, with the caller's credentials and endpoint."""
    credentials = aws.session.get_credentials()
    if credentials is None:
        raise explain(NoCredentialsError(), settings.profile)
    frozen = credentials.get_frozen_credentials()
    env = {
        "BUCKET_NAME": settings.bucket,
        "AWS_REGION": settings.region,
        "AWS_DEFAULT_REGION": settings.region,
        "AWS_EXECUTION_ENV": settings.execution_env,
        "AWS_ACCESS_KEY_ID": frozen.access_key,
        "AWS_SECRET_ACCESS_KEY": frozen.secret_key,
        "AWS_LAMBDA_FUNCTION_NAME": settings.function_name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(settings.memory_mb),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": str(settings.timeout_s),
    }
    if frozen.token:
        env["AWS_SESSION_TOKEN"] = frozen.token
    env.update({k: v for k, v in os.environ.items() if k.startswith("AWS_ENDPOINT_URL")})
    return env


def default_event(settings: Settings, scenario: str = "base") -> dict:
    """The event the state machine sends the first step for ``scenario`` (front-end params)."""
    paths = notebook_paths(load_definition(settings.definition_path))
    if not paths:
        raise QuetzalError("step-functions.json has no Task with a notebook_path: pass --event.")
    params, _ = scenario_params(settings.scenarios_dir / scenario, DEFAULT_CHOICE)
    return {
        "notebook_path": paths[0],
        "scenario_path_S3": f"{scenario}/",
        "launcher_arg": {"training_folder": "/tmp", "params": params},
        "metadata": {"user_email": user_email(settings, default="local")},
    }


def needs_host_network(env: dict[str, str]) -> bool:
    """An endpoint on this machine's loopback is only reachable from a host-network container."""
    return any(urlparse(url).hostname in LOOPBACK
               for key, url in env.items() if key.startswith("AWS_ENDPOINT_URL"))


def port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


class LocalLambda:
    """One container of ``image`` serving Lambda invocations on this machine."""

    def __init__(self, client, image: str, env: dict[str, str], host_network: bool = False,
                 port: int = 0, name: str | None = None, volumes: dict | None = None):
        self.client, self.image, self.env = client, image, env
        self.volumes = volumes or {}  # docker SDK form: {host_path: {"bind": path, "mode": "rw"}}
        self.host_network = host_network
        self.port = EMULATOR_PORT if host_network else port  # 0: a free one, chosen by Docker
        self.name = name or f"quetzal-lambda-{secrets.token_hex(4)}"
        self.container = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{INVOKE_PATH}"

    def start(self, ready_within_s: float = 60) -> LocalLambda:
        from docker.errors import DockerException

        if self.host_network and port_in_use(self.port):
            raise DockerError(f"Port {self.port} is in use on this machine: on the host network the "
                              "Lambda emulator needs it. Stop what listens there (a container from "
                              "`--keep`? see `docker ps`), then retry.")
        network = {"network_mode": "host"} if self.host_network else {
            "ports": {f"{EMULATOR_PORT}/tcp": ("127.0.0.1", self.port or None)}}
        try:
            self.container = self.client.containers.run(
                self.image, detach=True, name=self.name, environment=self.env, volumes=self.volumes,
                **network)
        except DockerException as ex:
            raise DockerError(
                f"Could not start {self.image}: {ex}. If the port is taken, stop what uses "
                f"port {self.port} (`docker ps`), or run with another one."
            ) from ex
        if not self.port:
            self.container.reload()
            self.port = int(self.container.ports[f"{EMULATOR_PORT}/tcp"][0]["HostPort"])
        self.wait_ready(ready_within_s)
        return self

    def wait_ready(self, within_s: float) -> None:
        """Until the emulator answers HTTP (any status: no invocation is made)."""
        deadline = time.monotonic() + within_s
        while True:
            try:
                urllib.request.urlopen(self.url, timeout=2).close()
                return
            except urllib.error.HTTPError:
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            self.container.reload()
            if self.container.status == "exited" or time.monotonic() > deadline:
                raise DockerError(f"The container of {self.image} did not start serving on port "
                                  f"{self.port} (state: {self.container.status}). Its log:\n{self.logs()}")
            time.sleep(0.2)

    def invoke(self, event: dict, timeout_s: float = 960) -> Invocation:
        """Post ``event``; returns once the function answered (or failed)."""
        request = urllib.request.Request(self.url, data=json.dumps(event).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                body, error = response.read(), response.headers.get("X-Amz-Function-Error")
        except (urllib.error.URLError, OSError) as ex:
            raise DockerError(f"The local Lambda did not answer: {ex}. Its log:\n{self.logs()}") from ex
        try:
            payload = json.loads(body) if body else None
        except json.JSONDecodeError:
            payload = body.decode(errors="replace")
        return Invocation(payload, error)

    def logs(self) -> str:
        return self.container.logs().decode(errors="replace") if self.container else ""

    def stop(self) -> None:
        if self.container is not None:
            self.container.remove(force=True)
            self.container = None

    def __enter__(self) -> LocalLambda:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
