"""What a plugin may implement: the hook specifications, their markers and the types they pass.

A plugin implements any subset of a hook's arguments (pluggy passes only those it names)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pluggy

from quetzal_deploy.settings import Settings

PROJECT = "quetzal_deploy"  # the hook markers' name and the entry point group
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclass(frozen=True)
class Verdict:
    """A ``quetzal_check_scenario`` answer: ``Refuse(message)`` or ``Warn(message)``."""

    message: str


class Refuse(Verdict):
    """Do not upload: ``message`` says why and how to fix it."""


class Warn(Verdict):
    """Upload, but print ``message``."""


@dataclass(frozen=True)
class RunSummary:
    """What ``quetzal_after_local_run`` gets about a finished local run.

    ``status`` is ``SUCCEEDED`` or ``FAILED``; each step has ``label``, ``notebook``, ``status``
    (ok, failed, skipped), ``seconds``, ``peak_memory_mb``; ``outputs`` and ``logs`` are the run's
    copies of the scenario's folders, absent when no step wrote any (``scenarios/<name>/`` itself
    is never written by a run).
    """

    scenario: str
    status: str
    steps: tuple[Any, ...]
    folder: Path
    outputs: Path
    logs: Path
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCEEDED"


class Specs:
    """The hooks a plugin may implement (each with any subset of the arguments)."""

    @hookspec
    def quetzal_check_scenario(self, name: str, folder: Path, settings: Settings) -> Verdict | list | None:
        """Check ``scenarios/<name>/`` (``folder``) before an upload: return ``Refuse(message)``,
        ``Warn(message)``, a list of them, or None when all is well."""

    @hookspec
    def quetzal_image_files(self, root: Path, settings: Settings) -> dict[str, str | Path] | None:
        """Files or folders to add to the image: ``{path under LAMBDA_TASK_ROOT: path on disk}``
        (a relative path on disk is from the repo's root)."""

    @hookspec
    def quetzal_after_local_run(self, scenario: str, summary: RunSummary, settings: Settings) -> None:
        """Act after ``invoke run --local`` (write a report, check outputs); raise to fail the task."""


HOOKS = tuple(sorted(name for name in vars(Specs) if name.startswith("quetzal_")))
