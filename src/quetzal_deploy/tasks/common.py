"""What every task shares: settings from the repo, domain errors turned into exits.

Task modules import their concern inside the task body: every ``invoke`` command (``--list``
too) loads all of them, so what they import at the top is paid by every command."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from invoke import Exit, task

from quetzal_deploy.errors import QuetzalError
from quetzal_deploy.settings import Settings, load_settings

if TYPE_CHECKING:
    from quetzal_deploy.aws import Aws

PROFILE_HELP = "AWS profile to use (default: AWS_PROFILE, then the default credential chain)"
REGION_HELP = "AWS region (default: AWS_REGION from .env)"
AWS_HELP = {"profile": PROFILE_HELP, "region": REGION_HELP}


def ask(question: str, instead: str) -> str:
    """One answer from standard input; a closed input is an error naming the flag to pass ``instead``."""
    try:
        return input(question).strip()
    except (EOFError, RuntimeError):  # closed input, or none at all ("lost sys.stdin")
        raise Exit(f"ERROR: no answer on standard input: {instead}", code=1) from None


def confirmed(question: str, instead: str = "re-run with --yes to confirm.") -> bool:
    """A yes/no question; anything but y/yes is a no."""
    return ask(f"{question} [y/N] ", instead).lower() in {"y", "yes"}


def quetzal_task(*args, **kwargs):
    """``@task`` (same keyword arguments) whose QuetzalError becomes a one-line message and exit code 1."""

    def decorate(body):
        @functools.wraps(body)
        def wrapper(*a, **kw):
            try:
                return body(*a, **kw)
            except QuetzalError as ex:
                raise Exit(f"ERROR: {ex}", code=1) from ex
            except KeyboardInterrupt:
                raise Exit("Interrupted.", code=130) from None

        return task(**kwargs)(wrapper)

    if len(args) == 1 and callable(args[0]) and not kwargs:  # bare @quetzal_task
        return decorate(args[0])
    return decorate


def settings_for(profile: str | None = None, region: str | None = None) -> Settings:
    """The settings of the repo around the current folder."""
    return load_settings(profile=profile, region=region)


def aws_for(settings: Settings) -> Aws:
    """The AWS clients of these settings (boto3 loads here, for the tasks that call AWS)."""
    from quetzal_deploy.aws import Aws

    return Aws(settings)
