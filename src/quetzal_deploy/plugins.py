"""Plugin hooks: a model extends the tools without forking them.

Hooks are implemented in the model repo's ``quetzal_plugins.py`` (loaded by path, never put in
``sys.modules``) or in an installed package that declares an entry point in the group
``quetzal_deploy``. The package calls them through pluggy:

- ``quetzal_check_scenario``: before ``invoke upload-scenarios`` sends anything; may refuse or warn;
- ``quetzal_image_files``: files or folders to add to the image under ``LAMBDA_TASK_ROOT``;
- ``quetzal_after_local_run``: after ``invoke run --local``, with the run's summary.

An error in a plugin becomes a ``PluginError`` naming the plugin and the hook.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

import pluggy

from quetzal_deploy.errors import QuetzalError
from quetzal_deploy.output import Out

PROJECT = "quetzal_deploy"  # the hook markers' name and the entry point group
MODULE_FILE = "quetzal_plugins.py"  # at the model repo's root
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class PluginError(QuetzalError):
    """A plugin could not be loaded, or one of its hooks raised or answered nonsense."""


class ScenarioRefused(QuetzalError):
    """A plugin's check refused a scenario: nothing was uploaded."""


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
    def quetzal_check_scenario(self, name: str, folder: Path, settings) -> Verdict | list | None:
        """Check ``scenarios/<name>/`` (``folder``) before an upload: return ``Refuse(message)``,
        ``Warn(message)``, a list of them, or None when all is well."""

    @hookspec
    def quetzal_image_files(self, root: Path, settings) -> dict[str, str | Path] | None:
        """Files or folders to add to the image: ``{path under LAMBDA_TASK_ROOT: path on disk}``
        (a relative path on disk is from the repo's root)."""

    @hookspec
    def quetzal_after_local_run(self, scenario: str, summary: RunSummary, settings) -> None:
        """Act after ``invoke run --local`` (write a report, check outputs); raise to fail the task."""


def where(ex: BaseException, source: str | None = None) -> str:
    """`` at file:line``: the innermost frame of ``ex``'s traceback in the file ``source`` (the
    plugin's code, not the library it called), else the innermost one."""
    frames = traceback.extract_tb(ex.__traceback__)
    frames = [f for f in frames if f.filename == source] or frames
    return f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""


def load_module(path: Path) -> ModuleType:
    """The model's plugin module, executed under a private name that is in ``sys.modules`` only
    while it runs (a ``@dataclass`` needs its module there), so nothing else sees it."""
    path = path.resolve()
    name = f"quetzal_plugins_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as ex:
        raise PluginError(f"plugin {MODULE_FILE} does not load: line {ex.lineno}: {ex.msg} "
                          f"({path}). Fix the syntax, or move the file away to run without it.") from ex
    except Exception as ex:
        raise PluginError(f"plugin {MODULE_FILE} failed while loading{where(ex, str(path))}: "
                          f"{type(ex).__name__}: {ex} ({path}).") from ex
    finally:
        del sys.modules[name]
    return module


def plugin_manager(root: Path) -> pluggy.PluginManager:
    """The hooks of the installed plugins (entry points) and of ``<root>/quetzal_plugins.py``."""
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(Specs)
    try:
        manager.load_setuptools_entrypoints(PROJECT)
    except Exception as ex:
        raise PluginError(f"an installed plugin (entry point group {PROJECT!r}) failed to load{where(ex)}: "
                          f"{type(ex).__name__}: {ex}. Fix or uninstall it.") from ex
    path = root / MODULE_FILE
    if path.is_file():
        try:
            manager.register(load_module(path), name=MODULE_FILE)
        except pluggy.PluginValidationError as ex:
            raise PluginError(f"plugin {MODULE_FILE}: {ex}") from ex
    check_hook_names(manager)
    return manager


def check_hook_names(manager: pluggy.PluginManager) -> None:
    """A ``@hookimpl`` whose name is no hook (a typo) would never be called: refuse it."""
    hooks = sorted(name for name in vars(Specs) if name.startswith("quetzal_"))
    for name, caller in vars(manager.hook).items():
        if name not in hooks and not name.startswith("_"):
            for impl in caller.get_hookimpls():
                if impl.optionalhook:  # meant for a hook another plugin may declare
                    continue
                raise PluginError(f"plugin {impl.plugin_name} implements {name!r}, which is not a hook: "
                                  f"the hooks are {', '.join(hooks)}.")


def call_each(manager: pluggy.PluginManager, hook: str, **kwargs) -> list[tuple[str, Any]]:
    """``(plugin name, answer)`` for each plugin implementing ``hook``, in pluggy's calling order;
    an exception in a hook becomes a PluginError naming the plugin and the hook."""
    answers = []
    for impl in reversed(getattr(manager.hook, hook).get_hookimpls()):
        others = [plugin for plugin in manager.get_plugins() if plugin is not impl.plugin]
        try:
            results = manager.subset_hook_caller(hook, remove_plugins=others)(**kwargs)
        except Exception as ex:
            source = impl.function.__code__.co_filename
            raise PluginError(f"plugin {impl.plugin_name}, hook {hook}, raised{where(ex, source)}: "
                              f"{type(ex).__name__}: {ex}") from ex
        answers.extend((impl.plugin_name, result) for result in results)
    return answers


def check_scenarios(manager: pluggy.PluginManager, settings, names: list[str],
                    out: Out = print) -> None:
    """Run every check on every scenario: warnings are printed, any refusal raises
    ``ScenarioRefused`` listing them all (call it before uploading anything)."""
    refusals = []
    for name in names:
        folder = settings.scenarios_dir / name
        for plugin, answer in call_each(manager, "quetzal_check_scenario", name=name, folder=folder,
                                        settings=settings):
            for verdict in answer if isinstance(answer, (list, tuple)) else [answer]:
                if not isinstance(verdict, Verdict):
                    raise PluginError(f"plugin {plugin}, hook quetzal_check_scenario, returned {verdict!r} "
                                      f"for {name}: return Refuse(message), Warn(message), a list, or None.")
                if isinstance(verdict, Warn):
                    out(f"WARNING: plugin {plugin} on scenario {name}: {verdict.message}")
                else:
                    refusals.append(f"plugin {plugin} refused scenario {name}: {verdict.message}")
    if refusals:
        raise ScenarioRefused("\n".join(refusals) + "\nNothing was uploaded.")


def image_files(manager: pluggy.PluginManager, settings) -> dict[str, Path]:
    """``{path under LAMBDA_TASK_ROOT: file or folder on disk}`` that the plugins add to the image."""
    chosen: dict[str, tuple[str, Path]] = {}
    for plugin, answer in call_each(manager, "quetzal_image_files", root=settings.root, settings=settings):
        if not isinstance(answer, dict):
            raise PluginError(f"plugin {plugin}, hook quetzal_image_files, returned {answer!r}: return "
                              "{'path in the image': 'path on disk'} or None.")
        for name, source in answer.items():
            target = image_path(plugin, name)
            path = settings.root / source
            if not path.exists():
                raise PluginError(f"plugin {plugin}, hook quetzal_image_files: {path} (for {target}) "
                                  "does not exist.")
            if target in chosen and chosen[target][0] != plugin:
                raise PluginError(f"plugins {chosen[target][0]} and {plugin} both add {target} to the image: "
                                  "keep one.")
            chosen[target] = (plugin, path)
    return {target: path for target, (_, path) in chosen.items()}


def image_path(plugin: str, name: Any) -> str:
    """A path under LAMBDA_TASK_ROOT: relative, inside it, in POSIX form."""
    path = PurePosixPath(str(name))
    if not str(name) or path.is_absolute() or ".." in path.parts or path == PurePosixPath("."):
        raise PluginError(f"plugin {plugin}, hook quetzal_image_files: {name!r} is not a path inside "
                          "LAMBDA_TASK_ROOT: give a relative one such as 'mylib' or 'inputs/zones.csv'.")
    return path.as_posix()


def after_local_run(manager: pluggy.PluginManager, settings, summary: RunSummary) -> None:
    """Call every ``quetzal_after_local_run`` (a raising one stops with a PluginError)."""
    call_each(manager, "quetzal_after_local_run", scenario=summary.scenario, summary=summary,
              settings=settings)
