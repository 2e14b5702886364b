"""Loading the plugins and calling their hooks; whatever a plugin does wrong is a ``PluginError``
that names it (an installed one by distribution and entry point), the hook and the line."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import sys
import traceback
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

import pluggy

from quetzal_deploy.errors import QuetzalError
from quetzal_deploy.output import Out
from quetzal_deploy.plugins.spec import HOOKS, PROJECT, RunSummary, Specs, Verdict, Warn
from quetzal_deploy.settings import Settings

MODULE_FILE = "quetzal_plugins.py"  # at the model repo's root


class PluginError(QuetzalError):
    """A plugin could not be loaded, or one of its hooks raised or answered nonsense."""


class ScenarioRefused(QuetzalError):
    """A plugin's check refused a scenario: nothing was uploaded."""


def where(ex: BaseException, source: str | Path | None = None) -> str:
    """`` at file:line``: the innermost frame of ``ex``'s traceback in the file ``source`` (the
    plugin's code, not the library it called), else the innermost one outside the import machinery
    (none: ``""``)."""
    frames = traceback.extract_tb(ex.__traceback__)
    frames = ([f for f in frames if f.filename == str(source)]
              or [f for f in frames if not machinery(f.filename)])
    return f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""


def machinery(filename: str) -> bool:
    """Frames of Python's import system and of this module, which say nothing about the plugin."""
    return filename.startswith("<") or filename == __file__ or "importlib" in Path(filename).parts


def exited(ex: SystemExit, source: str | Path | None = None) -> str:
    """What a plugin calling ``sys.exit()`` did, and what it should do instead."""
    return (f"called sys.exit({ex.code!r}){where(ex, source)}, which would end the command without a "
            "word: a plugin returns, or raises an exception saying what is wrong")


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
    except SystemExit as ex:
        raise PluginError(f"plugin {MODULE_FILE} ({path}), while loading, {exited(ex, path)}.") from ex
    except Exception as ex:
        raise PluginError(f"plugin {MODULE_FILE} failed while loading{where(ex, path)}: "
                          f"{type(ex).__name__}: {ex} ({path}).") from ex
    finally:
        del sys.modules[name]
    return module


def plugin_manager(root: Path) -> pluggy.PluginManager:
    """The hooks of the installed plugins (entry points) and of ``<root>/quetzal_plugins.py``."""
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(Specs)
    for entry in importlib.metadata.entry_points(group=PROJECT):
        if manager.get_plugin(entry.name) is None and not manager.is_blocked(entry.name):
            register(manager, load_installed(entry), entry.name)
    path = root / MODULE_FILE
    if path.is_file():
        register(manager, load_module(path), MODULE_FILE)
    check_hook_names(manager)
    return manager


def load_installed(entry: importlib.metadata.EntryPoint) -> Any:
    """An installed plugin; one that does not import is named by its distribution and entry point."""
    dist = entry.dist  # set for every entry point that entry_points() finds
    named = (f"the installed plugin {entry.name!r} (entry point `{entry.name} = {entry.value}` in group "
             f"{PROJECT!r}, distribution {dist.name} {dist.version})")
    fix = f"Fix it, or uninstall it: pip uninstall {dist.name}."
    try:
        return entry.load()
    except SystemExit as ex:
        raise PluginError(f"{named}, while loading, {exited(ex)}. {fix}") from ex
    except Exception as ex:
        raise PluginError(f"{named} failed to load{where(ex)}: "
                          f"{type(ex).__name__}: {ex}. {fix}") from ex


def register(manager: pluggy.PluginManager, plugin: Any, name: str) -> None:
    """Add a loaded plugin; pluggy's refusal (a hook with an argument no spec has) names it."""
    try:
        manager.register(plugin, name=name)
    except pluggy.PluginValidationError as ex:
        raise PluginError(f"plugin {name}: {ex}") from ex


def check_hook_names(manager: pluggy.PluginManager) -> None:
    """A ``@hookimpl`` whose name is no hook (a typo) would never be called: refuse it."""
    for name, caller in vars(manager.hook).items():
        if name not in HOOKS and not name.startswith("_"):
            for impl in caller.get_hookimpls():
                if impl.optionalhook:  # meant for a hook another plugin may declare
                    continue
                raise PluginError(f"plugin {impl.plugin_name} implements {name!r}, which is not a hook: "
                                  f"the hooks are {', '.join(HOOKS)}.")


def call_each(manager: pluggy.PluginManager, hook: str, **kwargs) -> list[tuple[str, Any]]:
    """``(plugin name, answer)`` for each plugin implementing ``hook``, in pluggy's calling order;
    an exception in a hook becomes a PluginError naming the plugin and the hook."""
    answers = []
    for impl in reversed(getattr(manager.hook, hook).get_hookimpls()):
        others = [plugin for plugin in manager.get_plugins() if plugin is not impl.plugin]
        source = impl.function.__code__.co_filename
        try:
            results = manager.subset_hook_caller(hook, remove_plugins=others)(**kwargs)
        except SystemExit as ex:
            raise PluginError(f"plugin {impl.plugin_name}, hook {hook}, {exited(ex, source)}.") from ex
        except Exception as ex:
            raise PluginError(f"plugin {impl.plugin_name}, hook {hook}, raised{where(ex, source)}: "
                              f"{type(ex).__name__}: {ex}") from ex
        answers.extend((impl.plugin_name, result) for result in results)
    return answers


def check_scenarios(manager: pluggy.PluginManager, settings: Settings, names: list[str],
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


def image_files(manager: pluggy.PluginManager, settings: Settings) -> dict[str, Path]:
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


def after_local_run(manager: pluggy.PluginManager, settings: Settings, summary: RunSummary) -> None:
    """Call every ``quetzal_after_local_run`` (a raising one stops with a PluginError)."""
    call_each(manager, "quetzal_after_local_run", scenario=summary.scenario, summary=summary,
              settings=settings)
