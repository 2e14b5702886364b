"""``invoke doctor``: is this machine and this account ready to deploy and run the model?"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace

import docker
import requests
from docker.errors import DockerException
from packaging.version import InvalidVersion, Version

import quetzal_deploy
from quetzal_deploy.aws import Aws, translated
from quetzal_deploy.errors import QuetzalError
from quetzal_deploy.pipeline.stepfunctions import state_machine
from quetzal_deploy.plugins import plugin_manager
from quetzal_deploy.rules import REGIONS
from quetzal_deploy.settings import Settings, load_settings

INFRA_HINT = "run `invoke infra` (or check the names in .env and AWS_REGION)"


@dataclass(frozen=True)
class Check:
    """One line of the report: what was checked, the outcome, and how to fix a failure."""

    name: str
    ok: bool
    detail: str
    hint: str = ""
    warning: bool = False  # passes, but the user should know (shown with '!')


def passed(name: str, detail: str) -> Check:
    return Check(name, True, detail)


def probe(name: str, detail: str, hint: str, attempt: Callable[[], object], profile: str | None) -> Check:
    """Run ``attempt``; an AWS error becomes a failed check with its own explanation and ``hint``."""
    try:
        with translated(profile):
            attempt()
    except QuetzalError as ex:
        return Check(name, False, str(ex), hint)
    return passed(name, detail)


def aws_checks(settings: Settings, aws: Aws) -> list[Check]:
    """Region, credentials, then each resource of the model's stack."""
    checks = [Check("region", settings.region in REGIONS, settings.region,
                    "set AWS_REGION in .env (or --region) to an AWS region such as ca-central-1")]
    if settings.region != settings.front_end_region:
        checks.append(Check(
            "front end region", True, warning=True,
            detail=f"the model is in {settings.region}, the front end in {settings.front_end_region}: "
                   "it will not list or run this model",
            hint="deploy the model in FRONT_END_REGION, or set FRONT_END_REGION in .env to the region "
                 "of the front end you use"))
    try:
        checks.append(passed("credentials", f"account {aws.account_id}"))
    except QuetzalError as ex:
        return [*checks, Check("credentials", False, str(ex),
                               "then run `invoke doctor` again: the model's AWS resources need them")]
    s3, ecr, functions = aws.client("s3"), aws.client("ecr"), aws.client("lambda")
    profile = settings.profile
    checks += [
        probe("bucket", settings.bucket, INFRA_HINT, lambda: s3.head_bucket(Bucket=settings.bucket), profile),
        probe("ECR repository", settings.ecr_repo, INFRA_HINT,
              lambda: ecr.describe_repositories(repositoryNames=[settings.ecr_repo]), profile),
        probe("Lambda function", settings.function_name,
              "run `invoke deploy` the first time, `invoke push --initial` once the stack exists",
              lambda: functions.get_function(FunctionName=settings.function_name), profile),
        probe("state machine", settings.state_machine, INFRA_HINT,
              lambda: state_machine(settings, aws).arn, profile),
    ]
    return checks


def architecture_check(settings: Settings, aws: Aws) -> list[Check]:
    """The function runs on .env's architecture, and so does the local image of its tag, if any."""
    from quetzal_deploy.images.build import architecture_mismatch, image_architecture, image_ref
    from quetzal_deploy.images.registry import lambda_for, tag_of

    function = lambda_for(settings, aws)
    try:
        found = function.described()
    except QuetzalError:
        return []  # the Lambda function check reports why
    if found is None:
        return []
    runs_on = found["Configuration"].get("Architectures", ["x86_64"])[0]
    if runs_on != settings.architecture:
        return [Check("architecture", False, f"Lambda function {function.name} runs on {runs_on}, "
                      f"LAMBDA_ARCHITECTURE is {settings.architecture}",
                      f"set LAMBDA_ARCHITECTURE={runs_on} in .env, or run `invoke infra` to move the "
                      f"function to {settings.architecture}")]
    ref = image_ref(settings, tag_of(found["Code"].get("ImageUri")) or "latest")
    try:
        built = image_architecture(docker.from_env(), ref)
    except (DockerException, requests.RequestException):
        return [passed("architecture", f"{runs_on} (image {ref} is not on this machine)")]
    if built != runs_on:
        refusal = architecture_mismatch(ref, built, runs_on, f"Lambda function {function.name}")
        return [Check("architecture", False, str(refusal),
                      "`invoke push` builds for LAMBDA_ARCHITECTURE and points the function at it")]
    return [passed("architecture", f"{runs_on}, like image {ref}")]


def runtime_check(settings: Settings, aws: Aws) -> Check:
    """Warns when the deployed image's handler is older than the installed quetzal-deploy's
    (the image's version label, read from the registry holding it)."""
    from quetzal_deploy.images.registry import deployed_version, lambda_for, tag_of

    name, installed = "image runtime", quetzal_deploy.__version__
    fix = "`invoke push` builds and deploys the image with the installed quetzal-deploy's handler"
    try:
        image_uri = lambda_for(settings, aws).image_uri()
        found = deployed_version(settings, aws, image_uri)
    except (OSError, ValueError, KeyError, QuetzalError) as ex:  # URLError is an OSError
        return Check(name, True, f"could not read the deployed image's version: {ex}",
                     "check that the image is still in the registry (`invoke update` lists the tags)",
                     warning=True)
    tag = tag_of(image_uri)
    if older_than(found, installed):
        return Check(name, True, f"image {tag} runs the handler of quetzal-deploy {found or '(unrecorded)'}, "
                     f"older than the installed {installed}", fix, warning=True)
    return passed(name, f"image {tag}: quetzal-deploy {found}")


def older_than(found: str | None, installed: str) -> bool:
    """True when ``found`` is an older version than ``installed``, or no version at all."""
    try:
        return Version(found or "") < Version(installed)
    except InvalidVersion:
        return True


def docker_check() -> Check:
    try:
        client = docker.from_env()
        version = client.version().get("Version", "?")
        client.close()
    except (DockerException, requests.RequestException) as ex:
        return Check("Docker daemon", False, f"not reachable ({ex})",
                     "start Docker (Docker Desktop, or `sudo systemctl start docker`), or set DOCKER_HOST")
    return passed("Docker daemon", f"Docker {version}")


def terraform_check() -> Check:
    path = shutil.which("terraform")
    if path is None:
        return Check("terraform", False, "not on PATH",
                     "install Terraform: https://developer.hashicorp.com/terraform/install")
    return passed("terraform", path)


def plugin_checks(settings: Settings) -> list[Check]:
    """The plugins that load and the hooks each implements; none: no line."""
    try:
        manager = plugin_manager(settings.root)
    except QuetzalError as ex:
        return [Check("plugins", False, str(ex), "fix the plugin, or move quetzal_plugins.py away")]
    hooks = {}
    for name, caller in sorted(vars(manager.hook).items()):
        for impl in caller.get_hookimpls():
            hooks.setdefault(impl.plugin_name, []).append(name)
    return [passed("plugins", "; ".join(f"{plugin}: {', '.join(names)}" for plugin, names in hooks.items()))
            ] if hooks else []


def run_checks(profile: str | None = None, region: str | None = None) -> list[Check]:
    """Every check, in the order a user fixes them."""
    try:
        # A --region that is no AWS region is the region check's failure, not the .env's.
        settings = load_settings(profile=profile, region=region if region in REGIONS else None)
        if region:
            settings = replace(settings, region=region)
    except QuetzalError as ex:
        checks = [Check(".env", False, str(ex), "then run `invoke doctor` again: AWS checks need .env")]
    else:
        aws = Aws(settings)
        checks = [passed(".env", f"{settings.root / '.env'} ({settings.model_name})"),
                  *plugin_checks(settings), *aws_checks(settings, aws)]
        if any(check.name == "Lambda function" and check.ok for check in checks):
            checks += [*architecture_check(settings, aws), runtime_check(settings, aws)]
    return [*checks, docker_check(), terraform_check()]


def report(checks: list[Check]) -> str:
    """A ✓/✗ table, with the fix under each failure."""
    width = max(len(check.name) for check in checks)
    lines = []
    for check in checks:
        mark = "!" if check.warning else "✓" if check.ok else "✗"
        lines.append(f"{mark} {check.name.ljust(width)}  {check.detail}")
        if (check.warning or not check.ok) and check.hint:
            lines.append(f"  {' ' * width}  fix: {check.hint}")
    return "\n".join(lines)
