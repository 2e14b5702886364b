"""A run's parameters, all in one place: the front end's ``inputs/params.json``, a run's overrides
(``--params``, or what the front end sends), what a run sends, and how a notebook reads them.

``params.json`` is a JSON array of entries, each one of ``{"category": name, "params": [{"name": n,
"value": v, ...}], "model"?: ...}``, ``{"info": text, "model"?: ...}`` or ``{"variants": [...],
"model"?: ...}``; an entry without ``model`` belongs to the ``default`` variant. A run sends the
chosen variant's categories as ``launcher_arg.params = {category: {name: value}}``, with its
overrides (``{category: {name: value}}`` or flat ``{name: value}``) merged in deeply.

Every file is checked before it is used: a wrong shape is a ``ParamsError`` naming the file and
what is wrong. Standard library only: the image ships this module next to the runtime, so a
notebook reads its params with :func:`run_params` as a run would send them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULT_CHOICE = "default"
PARAMS_FILE = "inputs/params.json"  # in a scenario folder
ENTRY_KINDS = ("category", "info", "variants")
SHAPE = ('an array of entries [{"category": name, "params": [{"name": ..., "value": ...}]}, '
         '{"info": text}, {"variants": [...]}], as the front end writes it')


class ParamsError(ValueError):
    """A params file a run cannot use; the message names it and says what to fix. Not a
    ``QuetzalError`` (the image ships no ``errors.py``): the task boundary shows both alike."""


def read_json(path: Path, what: str) -> Any:
    """A local JSON file, every failure a ``ParamsError`` naming it (``what``: how the user knows it)."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ParamsError(f"{what} {path} not found.") from None
    except IsADirectoryError:
        raise ParamsError(f"{what} {path} is a folder; name a JSON file.") from None
    except UnicodeDecodeError as ex:
        raise ParamsError(f"{what} {path} is not UTF-8 text (byte {ex.start}): "
                          "save it as UTF-8 JSON.") from ex
    except OSError as ex:
        raise ParamsError(f"{what} {path} cannot be read: {ex.strerror or ex}.") from ex
    return parse_json(text, f"{what} {path}")


def parse_json(text: str | bytes, where: str) -> Any:
    try:
        return json.loads(text)
    except UnicodeDecodeError as ex:
        raise ParamsError(f"{where} is not UTF-8 text (byte {ex.start}): save it as UTF-8 JSON.") from ex
    except json.JSONDecodeError as ex:
        raise ParamsError(f"{where} is not valid JSON (line {ex.lineno}, column {ex.colno}: "
                          f"{ex.msg}).") from ex
    except RecursionError:
        raise ParamsError(f"{where} nests objects or arrays too deeply for Python to read: keep "
                          '{"category": {"name": value}} a few levels deep.') from None


def checked_entries(entries: Any, where: str) -> list[dict]:
    """The entries of a params.json, each checked: ``ParamsError`` saying which one is wrong."""
    if not isinstance(entries, list):
        raise ParamsError(f"{where} must be {SHAPE}; it is a JSON {type(entries).__name__}.")
    for index, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or not any(kind in entry for kind in ENTRY_KINDS):
            raise ParamsError(f"{where}: entry {index} ({json.dumps(entry)[:80]}) is not a category, "
                              f"info or variants object. It must be {SHAPE}.")
        model = entry.get("model", DEFAULT_CHOICE)
        names = model if isinstance(model, list) else [model]
        if not all(isinstance(name, str) for name in names):
            raise ParamsError(f"{where}: entry {index} has a 'model' that is not a name or a list of names.")
        if "category" in entry:
            check_category(entry, f"{where}: entry {index} (category {entry['category']!r})")
        elif "variants" in entry and not isinstance(entry["variants"], list):
            raise ParamsError(f"{where}: entry {index} has 'variants' that is not a list.")
    return entries


def check_category(entry: dict, where: str) -> None:
    if not isinstance(entry["category"], str):
        raise ParamsError(f"{where}: 'category' must be a name.")
    params = entry.get("params")
    if not isinstance(params, list):
        raise ParamsError(f"{where} needs 'params': a list of {{\"name\": ..., \"value\": ...}}.")
    for param in params:
        if not isinstance(param, dict) or not isinstance(param.get("name"), str):
            raise ParamsError(f"{where}: {json.dumps(param)[:80]} is not a parameter "
                              '{"name": ..., "value": ...}.')


def params_file_entries(path: Path) -> list[dict]:
    """A scenario's ``inputs/params.json``, checked (none when the scenario has no such file)."""
    path = Path(path)
    if not path.exists():
        return []
    return checked_entries(read_json(path, "Parameters file"), str(path))


def load_overrides(path: Path | str) -> dict[str, Any]:
    """A ``--params`` file: a JSON object, ``{category: {name: value}}`` or flat ``{name: value}``."""
    params = read_json(Path(path), "--params file")
    if not isinstance(params, dict):
        raise ParamsError(f'--params file {path} must be a JSON object: {{"category": {{"name": value}}}} '
                          f'or flat {{"name": value}}; it is a JSON {type(params).__name__}.')
    return params


def applies_to(entry: Mapping[str, Any], choice: str) -> bool:
    """Whether a params.json entry belongs to the pipeline variant ``choice`` (no model: default)."""
    model = entry.get("model", DEFAULT_CHOICE)
    return choice in model if isinstance(model, list) else model == choice


def front_end_params(entries: list[Mapping[str, Any]], choice: str) -> tuple[dict, list]:
    """The ``params`` and ``variants`` the front end sends for ``choice``, from checked entries."""
    params, variants = {}, []
    for entry in entries:
        if not applies_to(entry, choice):
            continue
        if "category" in entry:
            params[entry["category"]] = {p["name"]: p.get("value") for p in entry["params"]}
        elif "variants" in entry and not variants:
            variants = list(entry["variants"])
    return params, variants


def scenario_params(scenario: Path, choice: str) -> tuple[dict, list]:
    """The ``params`` and ``variants`` a run of the local ``scenario`` folder sends for ``choice``."""
    return front_end_params(params_file_entries(scenario / PARAMS_FILE), choice)


def deep_merge(base: dict, update: Mapping[str, Any]) -> dict:
    """``base`` with ``update`` merged in: nested objects key by key, other values replaced. The one
    merge of a run: its overrides over the file's params, and (in the runtime) a step's
    ``RETURN:`` lines over its event."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            value = deep_merge(merged[key], value)
        merged[key] = value
    return merged


def merge_params(defaults: dict, overrides: Mapping[str, Any]) -> dict:
    """The defaults with the overrides merged deeply (a flat name is set at the top level)."""
    return deep_merge(defaults, overrides)


def run_params(params_file: Path, overrides: Mapping[str, Any] | None = None,
               choice: str = DEFAULT_CHOICE) -> dict:
    """What a notebook reads: the ``params`` a run of ``choice`` sends, ``params_file``'s (checked;
    none when absent), then ``overrides``."""
    return merge_params(front_end_params(params_file_entries(Path(params_file)), choice)[0], overrides or {})
