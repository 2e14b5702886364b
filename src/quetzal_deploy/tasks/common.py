"""What every task shares: one decorator, ``quetzal_task``, which is the task boundary.

A task's body takes only what it uses: a leading ``settings`` parameter receives the repo's
``Settings``, an ``aws`` one its ``Aws`` clients; ``aws=True`` gives the task ``--profile`` and
``--region`` (written here once). Invoke's context stays in the wrapper: no task body takes ``c``.

At the boundary a ``QuetzalError``, or the run contract's ``ParamsError`` (standard library only,
as the image ships it, so not a ``QuetzalError``), becomes ``ERROR: <message>``; anything else is
a bug in this package: one line says so and where to report it, and ``--debug`` (invoke's) or
``QUETZAL_DEBUG=1`` shows the traceback and the package's ``logging`` lines. ``invoke <task>
--help`` shows the help even for a task whose positional argument would otherwise take ``--help``
as its value.

Task modules import their concern inside the task body: every ``invoke`` command (``--list``
too) loads all of them, so what they import at the top is paid by every command."""

from __future__ import annotations

import functools
import inspect
import logging
import os
from typing import TYPE_CHECKING

from invoke import Exit, task

import quetzal_deploy
from quetzal_deploy.contract.params import ParamsError
from quetzal_deploy.errors import Cancelled, QuetzalError
from quetzal_deploy.settings import load_settings

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)
PROFILE_HELP = "AWS profile to use (default: AWS_PROFILE, then the default credential chain)"
REGION_HELP = "AWS region (default: AWS_REGION from .env)"
AWS_HELP = {"profile": PROFILE_HELP, "region": REGION_HELP}
ISSUES = "https://github.com/systragroup/quetzal-template/issues"
HANDED = ("settings", "aws")  # what the boundary hands a task body that names it
HELP_WORDS = {"--help", "-h"}
# Libraries whose debug lines would bury ours (botocore logs every request in full).
LOUD = ("botocore", "boto3", "s3transfer", "urllib3", "docker", "invoke")


def ask(question: str, instead: str) -> str:
    """One answer from standard input; a closed input is an error naming the flag to pass ``instead``."""
    try:
        return input(question).strip()
    except (EOFError, RuntimeError):  # closed input, or none at all ("lost sys.stdin")
        raise Exit(f"ERROR: no answer on standard input: {instead}", code=1) from None


def confirmed(question: str, instead: str = "re-run with --yes to confirm.") -> bool:
    """A yes/no question; anything but y/yes is a no."""
    return ask(f"{question} [y/N] ", instead).lower() in {"y", "yes"}


def confirm_or_cancel(question: str, yes: bool, cancelled: str = "Cancelled: nothing was changed.") -> None:
    """Go on when ``yes`` or the user answers yes; otherwise ``Cancelled``."""
    if not yes and not confirmed(question):
        raise Cancelled(cancelled)


def debugging() -> bool:
    """``QUETZAL_DEBUG=1``, or invoke's ``--debug`` (it sets the root logger to DEBUG)."""
    wanted = os.environ.get("QUETZAL_DEBUG", "").strip().lower() not in {"", "0", "false", "no"}
    return wanted or logging.getLogger().isEnabledFor(logging.DEBUG)


def configure_logging() -> None:
    """In debug mode, the package's DEBUG lines on standard error; other libraries stay quiet."""
    if not debugging():
        return
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("quetzal_deploy").setLevel(logging.DEBUG)
    for name in LOUD:
        logging.getLogger(name).setLevel(logging.WARNING)


def bug_line(command: str, ex: BaseException) -> str:
    """What the user reads when the package itself failed."""
    shown = f"{type(ex).__name__}: {ex}" if str(ex) else type(ex).__name__
    see = ("the traceback is above" if debugging()
           else "re-run with --debug (or QUETZAL_DEBUG=1) for the traceback")
    return (f"ERROR: `invoke {command}` stopped on an unexpected {shown}. This is a bug in quetzal-deploy "
            f"{quetzal_deploy.__version__}, not in your model: please report it at {ISSUES} ({see}).")


def show_help(made, command: str) -> None:
    """Print the task's ``--help`` exactly as ``invoke --help <task>`` does, and exit 0."""
    from invoke import Collection, Program

    Program(namespace=Collection(made), binary="inv[oke]").run(["invoke", "--help", command])


def quetzal_task(*args, aws: bool = False, **kwargs):
    """``@task`` (same keyword arguments) at the task boundary; ``aws=True`` adds --profile/--region.

    The body's leading ``settings`` / ``aws`` parameters are handed the repo's ``Settings`` /
    ``Aws``; its other parameters are the task's options."""

    def decorate(body: Callable):
        options = [p for p in inspect.signature(body).parameters.values() if p.name not in HANDED]
        wants = [name for name in HANDED if name in inspect.signature(body).parameters]
        if "aws" in wants and not aws:
            raise TypeError(f"{body.__name__} takes aws: decorate it with @quetzal_task(aws=True)")
        if aws:
            options += [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)
                        for name in AWS_HELP]
        context = inspect.Parameter("c", inspect.Parameter.POSITIONAL_OR_KEYWORD)
        signature = inspect.Signature([context, *options])
        positional = [p.name for p in options if p.default is inspect.Parameter.empty]

        @functools.wraps(body)
        def wrapper(c, *a, **kw):
            given = signature.bind(c, *a, **kw).arguments
            given.pop("c")
            command = made.name.replace("_", "-")
            if any(given.get(name) in HELP_WORDS for name in positional):
                show_help(made, command)
            configure_logging()
            log.debug("quetzal-deploy %s: invoke %s %s", quetzal_deploy.__version__, command, given)
            try:
                return body(**hand(wants, given, aws), **given)
            except Exit:
                raise
            except Cancelled as ex:
                raise Exit(str(ex), code=1) from ex
            except (QuetzalError, ParamsError) as ex:
                log.debug("%s", type(ex).__name__, exc_info=ex)
                raise Exit(f"ERROR: {ex}", code=1) from ex
            except KeyboardInterrupt:
                raise Exit("Interrupted.", code=130) from None
            except Exception as ex:
                log.debug("Traceback of the bug:", exc_info=ex)
                raise Exit(bug_line(command, ex), code=1) from ex

        wrapper.__signature__ = signature
        made = task(help={**(AWS_HELP if aws else {}), **kwargs.pop("help", {})}, **kwargs)(wrapper)
        return made

    if len(args) == 1 and callable(args[0]) and not kwargs and not aws:  # bare @quetzal_task
        return decorate(args[0])
    return decorate


def hand(wants: list[str], given: dict, aws: bool) -> dict:
    """The ``settings`` / ``aws`` a body asked for; pops --profile/--region from ``given``."""
    profile, region = (given.pop("profile", None), given.pop("region", None)) if aws else (None, None)
    if not wants:
        return {}
    settings = load_settings(profile=profile, region=region)
    log.debug("settings: %s", settings)
    handed = {"settings": settings}
    if "aws" in wants:
        from quetzal_deploy.aws import Aws  # boto3 loads here, for the tasks that call AWS

        handed["aws"] = Aws(settings)
    return {name: handed[name] for name in wants}
