"""Ship the model's image: ECR login, push with progress, point the Lambda (and the Fargate
steps' task definition, when there is one) at a tag.

``QUETZAL_REGISTRY`` (host[:port]) is for AWS emulators only (``AWS_ENDPOINT_URL`` set): the
layers go to another registry (a local one) while the emulated ECR and Lambda stay the APIs of
record, the pushed manifest being registered in ECR with ``put_image`` so ``update`` and
``rollback`` still see every tag. Real ECR refuses a manifest whose layers it does not hold.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime

from botocore.exceptions import WaiterError

from quetzal_deploy.aws import Aws, translated, unless_absent
from quetzal_deploy.errors import AwsError, QuetzalError
from quetzal_deploy.images.build import (
    DOCKER_ARCHITECTURES,
    VERSION_LABEL,
    DockerError,
    architecture_mismatch,
    build_image,
    check_tag,
    default_tag,
    docker_client,
    image_architecture,
    resolve_base_image,
)
from quetzal_deploy.output import Out
from quetzal_deploy.pipeline.definition import FARGATE_CONTAINER, family_of
from quetzal_deploy.settings import Settings

REGISTRY_ENV = "QUETZAL_REGISTRY"
EMULATOR_ENVS = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_ECR")
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
)
INDEX_TYPES = (
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
)


class PushError(DockerError):
    """The registry refused the image or could not be reached."""


def tag_of(image_uri: str | None) -> str | None:
    """The tag (or digest) of an image URI: ``host/repo:tag`` -> ``tag``."""
    if not image_uri:
        return None
    if "@" in image_uri:
        return image_uri.rsplit("@", 1)[1]
    name = image_uri.rsplit("/", 1)[-1]
    return name.split(":", 1)[1] if ":" in name else "latest"


def repository_of(image_uri: str) -> str:
    """The repository of an image URI: ``host/repo:tag`` (or ``host/repo@digest``) -> ``host/repo``."""
    host, _, path = image_uri.split("@", 1)[0].partition("/")
    return f"{host}/{path.split(':', 1)[0]}"


@dataclass(frozen=True)
class PushedImage:
    tag: str
    pushed_at: datetime | None


class Ecr:
    """The model's ECR repository."""

    def __init__(self, ecr, repo: str, profile: str | None = None):
        self.ecr, self.repo, self.profile = ecr, repo, profile

    def call(self, method: str, missing: str = "", **kwargs):
        """``ecr.<method>(**kwargs)``; None when the error code is ``missing``."""
        known = {"RepositoryNotFoundException": f"ECR repository {self.repo} does not exist: run "
                                                "`invoke infra` first (or check MODEL_NAME in .env)."}
        return unless_absent(lambda: getattr(self.ecr, method)(**kwargs), {missing} - {""}, None,
                             self.profile, known)

    def repository_uri(self) -> str:
        return self.call("describe_repositories", repositoryNames=[self.repo])["repositories"][0][
            "repositoryUri"]

    def credentials(self) -> dict:
        """Docker credentials from the ECR authorization token (what `docker login` would store)."""
        token = self.call("get_authorization_token")["authorizationData"][0]["authorizationToken"]
        username, password = base64.b64decode(token).decode().split(":", 1)
        return {"username": username, "password": password}

    def recent(self, limit: int = 10) -> list[PushedImage]:
        """The last pushed tags, newest first."""
        images, token = [], {}
        while True:
            page = self.call("describe_images", repositoryName=self.repo,
                             filter={"tagStatus": "TAGGED"}, **token)
            for detail in page["imageDetails"]:
                images += [PushedImage(t, detail.get("imagePushedAt")) for t in detail.get("imageTags", [])]
            if not page.get("nextToken"):
                break
            token = {"nextToken": page["nextToken"]}
        # Same-second pushes (an emulator's clock) keep the listing's order: the later one is newer.
        ranked = sorted(enumerate(images), reverse=True, key=lambda item: (
            item[1].pushed_at is not None, item[1].pushed_at or 0, item[0]))
        return [image for _, image in ranked[:limit]]

    def has_tag(self, tag: str) -> bool:
        found = self.call("describe_images", missing="ImageNotFoundException",
                          repositoryName=self.repo, imageIds=[{"imageTag": tag}])
        return found is not None

    def register(self, tag: str, manifest: bytes, media_type: str) -> None:
        """Tell ECR about an image whose layers went to another registry."""
        self.call("put_image", repositoryName=self.repo, imageManifest=manifest.decode(),
                  imageManifestMediaType=media_type, imageTag=tag)


class LambdaFunction:
    """The model's image-based Lambda function."""

    def __init__(self, client, name: str, profile: str | None = None):
        self.client, self.name, self.profile = client, name, profile

    def described(self) -> dict | None:
        """GetFunction's answer; None when the function does not exist yet."""
        return unless_absent(lambda: self.client.get_function(FunctionName=self.name),
                             {"ResourceNotFoundException"}, None, self.profile)

    def image_uri(self) -> str | None:
        """The image the function runs; None when the function does not exist yet."""
        found = self.described()
        return None if found is None else found["Code"].get("ImageUri", "")

    def architecture(self) -> str | None:
        """x86_64 or arm64; None when the function does not exist yet."""
        found = self.described()
        return None if found is None else found["Configuration"].get("Architectures", ["x86_64"])[0]

    def point_to(self, image_uri: str) -> None:
        """Run ``image_uri`` from now on; returns once Lambda has finished the update."""
        with translated(self.profile):
            try:
                self.client.update_function_code(FunctionName=self.name, ImageUri=image_uri)
                self.client.get_waiter("function_updated_v2").wait(
                    FunctionName=self.name, WaiterConfig={"Delay": 2, "MaxAttempts": 150})
            except WaiterError as ex:
                reason = (ex.last_response or {}).get("Configuration", {}).get("LastUpdateStatusReason")
                raise AwsError(f"Lambda {self.name} did not take image {image_uri}: {reason or ex}. "
                               "Check the image is in ECR and runs (`invoke test-lambda`).") from ex


class FargateTask:
    """The task definition of the model's Fargate steps (``<model>-step``), when the module made one."""

    # What register_task_definition takes back from describe_task_definition.
    REGISTERED = ("family", "taskRoleArn", "executionRoleArn", "networkMode", "volumes",
                  "placementConstraints", "requiresCompatibilities", "cpu", "memory", "ephemeralStorage",
                  "runtimePlatform", "pidMode", "ipcMode", "proxyConfiguration")

    def __init__(self, client, family: str, profile: str | None = None):
        self.client, self.family, self.profile = client, family, profile

    def point_to(self, image_uri: str) -> int | None:
        """Register a revision running ``image_uri`` (RunTask on the family takes the latest);
        returns its number, or None when there is no such task definition (no Fargate steps)."""
        described = unless_absent(  # ClientException: no task definition, the model has no Fargate part
            lambda: self.client.describe_task_definition(taskDefinition=self.family, include=["TAGS"]),
            {"ClientException"}, None, self.profile)
        if described is None:
            return None
        current = described["taskDefinition"]
        containers = [dict(container, image=image_uri) if container["name"] == FARGATE_CONTAINER
                      else container for container in current["containerDefinitions"]]
        fields = {key: current[key] for key in self.REGISTERED if key in current}
        if described.get("tags"):
            fields["tags"] = described["tags"]
        with translated(self.profile):
            registered = self.client.register_task_definition(**fields, containerDefinitions=containers)
        return registered["taskDefinition"]["revision"]


class PushProgress:
    """One tqdm bar over all the layers of a ``docker push`` stream."""

    def __init__(self, name: str):
        from tqdm import tqdm

        self.bar = tqdm(desc=f"push {name}", unit="B", unit_scale=True, file=sys.stderr, total=0,
                        mininterval=0.5)
        self.layers: dict[str, tuple[int, int]] = {}
        self.reused = 0
        self.digest = None

    def feed(self, chunk: dict) -> None:
        layer, detail = chunk.get("id"), chunk.get("progressDetail") or {}
        if chunk.get("status") == "Layer already exists":
            self.reused += 1
        if layer and detail.get("total"):
            self.layers[layer] = (detail.get("current", 0), detail["total"])
        elif layer and chunk.get("status") == "Pushed" and layer in self.layers:
            self.layers[layer] = (self.layers[layer][1],) * 2
        self.digest = (chunk.get("aux") or {}).get("Digest", self.digest)
        self.bar.total = sum(total for _, total in self.layers.values())
        self.bar.n = min(self.bar.total, sum(current for current, _ in self.layers.values()))
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def push_hint(registry: str, detail: str) -> str:
    lowered = detail.lower()
    if any(word in lowered for word in ("denied", "unauthorized", "authentication", "403")):
        return ("the registry refused the credentials: check that your AWS profile may push to this "
                "ECR repository (ecr:InitiateLayerUpload, ecr:PutImage) and that the token is fresh.")
    if any(word in lowered for word in ("connection refused", "no such host", "timeout", "dial tcp")):
        return (f"the registry {registry} cannot be reached: check your network/VPN, or "
                f"{REGISTRY_ENV} if you set it.")
    return "see the registry's message above."


def push_image(client, local_ref: str, repository: str, tag: str, auth: dict, out: Out = print) -> None:
    """Tag ``local_ref`` as ``repository:tag`` and push it."""
    from docker.errors import DockerException

    registry = repository.split("/", 1)[0]
    progress = PushProgress(f"{repository}:{tag}")
    try:
        client.images.get(local_ref).tag(repository, tag)
        for chunk in client.api.push(repository, tag=tag, auth_config=auth, stream=True, decode=True):
            if "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                raise PushError(f"Pushing {repository}:{tag} failed: {detail.strip()}. "
                                f"{push_hint(registry, detail)}")
            progress.feed(chunk)
    except DockerException as ex:
        raise PushError(f"Pushing {repository}:{tag} failed: {ex}. {push_hint(registry, str(ex))}") from ex
    finally:
        progress.close()
    out(f"Pushed {repository}:{tag} ({progress.digest}; {len(progress.layers)} layers uploaded, "
         f"{progress.reused} already in the registry)")


def registry_get(registry: str, path: str, accept: str = "", auth: dict | None = None) -> tuple[bytes, str]:
    """``GET /v2/<path>`` on a registry: its body and content type. ``auth``: ``{"username",
    "password"}`` (ECR's token), sent to the registry only, not to where it redirects a blob."""
    local = registry.split(":")[0] in {"127.0.0.1", "localhost"}
    request = urllib.request.Request(f"{'http' if local else 'https'}://{registry}/v2/{path}",
                                     headers={"Accept": accept} if accept else {})
    if auth:
        pair = base64.b64encode(f"{auth['username']}:{auth['password']}".encode()).decode()
        request.add_unredirected_header("Authorization", f"Basic {pair}")
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read(), response.headers.get_content_type()


def fetch_manifest(registry: str, repo: str, tag: str, auth: dict | None = None) -> tuple[bytes, str]:
    """The manifest a registry serves for ``repo:tag``."""
    return registry_get(registry, f"{repo}/manifests/{tag}", ", ".join(MANIFEST_TYPES), auth)


def image_labels(registry: str, repo: str, reference: str, architecture: str,
                 auth: dict | None = None) -> dict:
    """The labels of ``repo:reference`` read from the registry (for an index, of its image for
    ``architecture``, in Docker's words: amd64, arm64)."""
    accept = ", ".join((*MANIFEST_TYPES, *INDEX_TYPES))
    manifest = json.loads(registry_get(registry, f"{repo}/manifests/{reference}", accept, auth)[0])
    if "manifests" in manifest:
        listed = manifest["manifests"]
        ours = [m for m in listed if m.get("platform", {}).get("architecture") == architecture]
        chosen = (ours or listed)[0]
        return image_labels(registry, repo, chosen["digest"], architecture, auth)
    config = json.loads(registry_get(registry, f"{repo}/blobs/{manifest['config']['digest']}", "", auth)[0])
    return (config.get("config") or {}).get("Labels") or {}


def deployed_version(settings: Settings, aws: Aws, image_uri: str) -> str | None:
    """The quetzal-deploy version recorded in the image the Lambda runs, read from the registry
    holding its layers (``QUETZAL_REGISTRY`` with an emulator, else ECR); None when unlabelled."""
    mirror = other_registry()
    if not mirror and any(os.environ.get(name) for name in EMULATOR_ENVS):
        raise QuetzalError(f"an emulated ECR keeps no layers: set {REGISTRY_ENV} to the registry "
                           "`invoke push` sent them to")
    host, repo = repository_of(image_uri).split("/", 1)
    auth = None if mirror else ecr_for(settings, aws).credentials()
    architecture = next(d for d, lam in DOCKER_ARCHITECTURES.items() if lam == settings.architecture)
    labels = image_labels(mirror or host, settings.ecr_repo if mirror else repo, tag_of(image_uri),
                          architecture, auth)
    return labels.get(VERSION_LABEL)


def lambda_for(settings: Settings, aws: Aws) -> LambdaFunction:
    return LambdaFunction(aws.client("lambda"), settings.function_name, settings.profile)


def fargate_for(settings: Settings, aws: Aws) -> FargateTask:
    return FargateTask(aws.client("ecs"), family_of(settings.model_name), settings.profile)


def ecr_for(settings: Settings, aws: Aws) -> Ecr:
    return Ecr(aws.client("ecr"), settings.ecr_repo, settings.profile)


def other_registry() -> str | None:
    """``QUETZAL_REGISTRY``, refused unless ECR is an emulator (its layers would never reach AWS)."""
    registry = os.environ.get(REGISTRY_ENV) or None
    if registry and not any(os.environ.get(name) for name in EMULATOR_ENVS):
        raise QuetzalError(
            f"{REGISTRY_ENV}={registry} is for AWS emulators only (with AWS_ENDPOINT_URL set): real "
            "ECR refuses an image whose layers went to another registry, and Lambda could not pull "
            f"it. Unset {REGISTRY_ENV} to push to ECR (nothing was built or pushed).")
    return registry


def push(settings: Settings, aws: Aws, tag: str | None = None, initial: bool = False,
         base: str | None = None, client=None, out: Out = print) -> str:
    """Build, push to ECR (or ``QUETZAL_REGISTRY``), point the Lambda at it; returns the image URI.

    ``initial``: the first deployment, when the Lambda may not exist yet (then: push only).
    """
    tag = check_tag(tag) if tag else default_tag(settings.root)
    mirror = other_registry()
    ecr, function = ecr_for(settings, aws), lambda_for(settings, aws)
    repository_uri = ecr.repository_uri()
    runs_on = function.architecture()
    exists = runs_on is not None
    if not exists and not initial:
        raise AwsError(f"Lambda function {settings.function_name} does not exist. For a first "
                       "deployment run `invoke push --initial`, then `invoke infra` (or `invoke deploy`).")
    client = client or docker_client()
    local_ref = build_image(client, settings, tag, resolve_base_image(base), out)
    built = image_architecture(client, local_ref)
    if exists and built != runs_on:
        raise architecture_mismatch(local_ref, built, runs_on, f"Lambda function {function.name}")
    registry = mirror or repository_uri.split("/", 1)[0]
    repository = f"{registry}/{settings.ecr_repo}"
    push_image(client, local_ref, repository, tag, ecr.credentials(), out)
    if mirror:
        record_in_ecr(ecr, registry, tag, out)
    image_uri = f"{repository_uri}:{tag}"
    if exists:
        point(function, image_uri, out, fargate_for(settings, aws))
    else:
        out(f"Lambda function {settings.function_name} does not exist yet: the image is in ECR. "
             "Next: run `invoke infra` to create it with this image (or `invoke deploy`).")
    return image_uri


def record_in_ecr(ecr: Ecr, registry: str, tag: str, out: Out) -> None:
    try:
        manifest, media_type = fetch_manifest(registry, ecr.repo, tag)
        ecr.register(tag, manifest, media_type)
    except (OSError, urllib.error.URLError, QuetzalError) as ex:
        out(f"WARNING: ECR does not list tag {tag} ({ex}): `invoke update` and `invoke rollback` "
             "will not offer it.")


def point(function: LambdaFunction, image_uri: str, out: Out, fargate: FargateTask | None = None) -> None:
    out(f"Pointing Lambda {function.name} at {image_uri} ...")
    function.point_to(image_uri)
    out(f"Lambda {function.name} now runs {tag_of(image_uri)}")
    revision = fargate.point_to(image_uri) if fargate else None
    if revision is not None:
        out(f"Fargate steps ({fargate.family}:{revision}) now run {tag_of(image_uri)}")


def rollback(settings: Settings, aws: Aws, to: str | None = None, out: Out = print) -> str:
    """Point the Lambda at an earlier tag already in ECR (default: the one pushed before)."""
    ecr, function = ecr_for(settings, aws), lambda_for(settings, aws)
    current = function.image_uri()
    if current is None:
        raise AwsError(f"Lambda function {settings.function_name} does not exist: nothing to roll back.")
    deployed = tag_of(current)
    if to is None:
        tags = [image.tag for image in ecr.recent(limit=1000)]
        older = tags[tags.index(deployed) + 1:] if deployed in tags else []
        if not older:
            raise QuetzalError(f"No tag older than the deployed one ({deployed}) in ECR; "
                               "pass --to TAG (see `invoke update` for the list).")
        to = older[0]
    check_tag(to)
    if not ecr.has_tag(to):
        listed = ", ".join(image.tag for image in ecr.recent()) or "none"
        raise QuetzalError(f"Tag {to!r} is not in ECR repository {settings.ecr_repo} "
                           f"(recent tags: {listed}).")
    image_uri = f"{ecr.repository_uri()}:{to}"
    point(function, image_uri, out, fargate_for(settings, aws))
    return image_uri
