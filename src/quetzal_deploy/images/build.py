"""Build the model's Lambda image with the Docker engine: tag, build log, clear failures."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import quetzal_deploy
from quetzal_deploy.errors import QuetzalError
from quetzal_deploy.git import output
from quetzal_deploy.images.context import PLUGIN_FILES, build_context
from quetzal_deploy.output import Out
from quetzal_deploy.plugins import image_files, plugin_manager
from quetzal_deploy.runtime import warm
from quetzal_deploy.settings import Settings

BASE_IMAGE_ENV = "QUETZAL_BASE_IMAGE"
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# What goes into the image (see .dockerignore): only these make a build "dirty".
IMAGE_INPUTS = ("Dockerfile", ".dockerignore", "requirements.txt", "notebooks", "inputs")
STEP = re.compile(r"^Step \d+/\d+ : ")
# Lambda's architecture names -> Docker's platform and image architecture names.
PLATFORMS = {"x86_64": "linux/amd64", "arm64": "linux/arm64"}
DOCKER_ARCHITECTURES = {"amd64": "x86_64", "arm64": "arm64"}
# The image's label naming the quetzal-deploy whose runtime it carries (the Dockerfile sets it).
VERSION_LABEL = "org.quetzal.deploy.version"


class DockerError(QuetzalError):
    """The Docker engine is missing, refused a request or failed."""


class BuildError(DockerError):
    """``docker build`` failed: the message names the failing step and shows its output."""


def docker_client():
    """A client on the running engine (DOCKER_HOST or the default socket)."""
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env()
        client.ping()
    except DockerException as ex:
        host = os.environ.get("DOCKER_HOST", "the default socket")
        raise DockerError(
            f"Docker is not running or not reachable at {host} ({ex}). Start Docker Desktop "
            "(or `sudo systemctl start docker` / `dockerd` on Linux), check DOCKER_HOST, then retry."
        ) from ex
    return client


def check_tag(tag: str) -> str:
    if not TAG.fullmatch(tag):
        raise QuetzalError(
            f"{tag!r} is not a valid image tag: use up to 128 letters, digits, '_', '.' or '-', "
            "not starting with '.' or '-'"
        )
    return tag


def default_tag(root: Path, now: datetime | None = None) -> str:
    """The commit the image is built from, so a tag always says which code runs.

    Uncommitted changes to what goes into the image give ``<sha>-dirty-<UTC time>``: each such
    build gets its own tag, so an earlier one can still be rolled back to.
    """
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    sha = output(root, "rev-parse", "--short", "HEAD")
    if sha is None:
        return f"build-{stamp}"
    changed = output(root, "status", "--porcelain", "--", *IMAGE_INPUTS)
    return f"{sha}-dirty-{stamp}" if changed else sha


def resolve_base_image(explicit: str | None = None) -> str | None:
    """``--base-image``, else ``QUETZAL_BASE_IMAGE``, else None (the Dockerfile's AWS default)."""
    return explicit or os.environ.get(BASE_IMAGE_ENV) or None


def image_ref(settings: Settings, tag: str) -> str:
    """The local name of the model's image."""
    return f"{settings.ecr_repo}:{tag}"


class ArchitectureError(QuetzalError):
    """An image whose CPU architecture is not the function's."""


def image_architecture(client, ref: str) -> str:
    """The image's architecture in Lambda's words (x86_64, arm64), or Docker's when it has none."""
    found = client.images.get(ref).attrs.get("Architecture", "")
    return DOCKER_ARCHITECTURES.get(found, found)


def architecture_mismatch(ref: str, image: str, wanted: str, runs_on: str) -> ArchitectureError:
    """The refusal, with both ways out."""
    return ArchitectureError(
        f"Image {ref} is built for {image} but {runs_on} runs on {wanted}: Lambda cannot start it. "
        f"Fix: build for {wanted} (LAMBDA_ARCHITECTURE={wanted} in .env, then `invoke push`), or move "
        f"the function to {image} (LAMBDA_ARCHITECTURE={image}, then `invoke infra`). Images are "
        "built for LAMBDA_ARCHITECTURE whatever this machine is.")


def platform_fix(platform: str) -> str:
    return (f"Fix: pass --base-image (or {BASE_IMAGE_ENV}) naming a {platform} image, or turn on "
            "multi-platform builds (Docker Desktop does; on Linux install QEMU binfmt).")


class BuildLog:
    """Follows the legacy builder's JSON stream: prints it, remembers the current step."""

    def __init__(self, out: Out):
        self.out = out
        self.step = ""
        self.step_output: list[str] = []
        self.image_id = None

    def feed(self, chunk: dict) -> None:
        if "error" in chunk:
            detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
            raise self.failure(detail)
        if "aux" in chunk and "ID" in chunk["aux"]:
            self.image_id = chunk["aux"]["ID"]
        text = chunk.get("stream", "")
        for line in text.splitlines():
            if STEP.match(line):
                self.step, self.step_output = line, []
            elif line.strip():
                self.step_output.append(line)
        if text.strip():
            self.out(text.rstrip("\n"))

    def failure(self, detail: str) -> BuildError:
        output = "\n".join(self.step_output[-30:])
        where = f"at {self.step!r}" if self.step else "before the first step"
        if "does not match the specified platform" in detail:
            fix = platform_fix(detail.rsplit("wanted ", 1)[-1].split(",")[0])
        elif " : FROM " in self.step:
            fix = (f"The base image could not be had: pass --base-image (or {BASE_IMAGE_ENV}) naming an "
                   "image you have (`docker images`), or check your network and registry login.")
        elif "runtime.convert" in self.step:
            fix = "Fix the notebook(s) as said above and run the build again."
        else:
            fix = "Fix the Dockerfile or requirements.txt (see the step above) and run `invoke build` again."
        return BuildError(
            f"The image build failed {where}: {detail.strip()}"
            + (f"\n--- output of that step ---\n{output}" if output else "")
            + f"\n{fix}"
        )


def build_image(client, settings: Settings, tag: str, base: str | None = None, out: Out = print) -> str:
    """Build the model's image as ``<ecr_repo>:<tag>``; returns that name."""
    from docker.errors import APIError, DockerException

    ref = image_ref(settings, check_tag(tag))
    platform = PLATFORMS[settings.architecture]
    args = {"PYTHON_VERSION": settings.python_version, "IMAGE_TAG": tag,
            "QUETZAL_DEPLOY_VERSION": quetzal_deploy.__version__}
    if base:
        args["BASE_IMAGE"] = base
    out(f"Building {ref} for {platform} from {settings.root}" + (f" on {base}" if base else ""))
    log = BuildLog(out)
    added = image_files(plugin_manager(settings.root), settings)
    for name in added:
        out(f"Adding {name} (a plugin's quetzal_image_files)")
    # Whether steps start warm and what they preload (.env's WARM_*, else the notebooks' imports).
    warm_file = Path(tempfile.mkdtemp(prefix="quetzal-warm-")) / warm.CONFIG_FILE
    warm_file.write_text(warm.config_file(settings.warm_steps, settings.warm_preload, settings.root),
                         encoding="utf-8")
    added = {**added, warm_file.name: warm_file}
    context = build_context(settings.root, {f"{PLUGIN_FILES}/{name}": path for name, path in added.items()})
    try:
        for chunk in client.api.build(fileobj=context, custom_context=True, tag=ref, buildargs=args,
                                      platform=platform, rm=True, forcerm=True, decode=True):
            log.feed(chunk)
    except APIError as ex:
        raise log.failure(ex.explanation or str(ex)) from ex
    except DockerException as ex:
        raise DockerError(f"Docker failed during the build: {ex}. Is the engine still running?") from ex
    finally:
        context.close()
        shutil.rmtree(warm_file.parent, ignore_errors=True)
    if log.image_id is None:
        raise log.failure("the engine did not report an image")
    built = image_architecture(client, ref)
    if built != settings.architecture:
        raise ArchitectureError(
            f"Image {ref} came out built for {built}, not for {settings.architecture} "
            f"(LAMBDA_ARCHITECTURE): the base image {base or '(the Dockerfile default)'} has no "
            f"{platform} variant here, or this Docker engine cannot build for {platform}. "
            + platform_fix(platform))
    out(f"Built {ref}")
    return ref
