"""Run parameters: the front end's ``inputs/params.json`` and the ``--params`` overrides.

The file's shape and how a run's params come from it are the runtime's
(``quetzal_deploy.runtime.params``, which notebooks use too); here each file is checked first:
every wrong shape is a ``RunError`` naming the file and what is wrong.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from quetzal_deploy.errors import QuetzalError
from quetzal_deploy.runtime.params import DEFAULT_CHOICE, front_end_params

PARAMS_FILE = "inputs/params.json"  # in a scenario folder
ENTRY_KINDS = ("category", "info", "variants")
SHAPE = ('an array of entries [{"category": name, "params": [{"name": ..., "value": ...}]}, '
         '{"info": text}, {"variants": [...]}], as the front end writes it')


class RunError(QuetzalError):
    """A run cannot start: missing scenario, bad parameters."""


def read_json(path: Path, what: str) -> Any:
    """A local JSON file, every failure a ``RunError`` naming it (``what``: how the user knows it)."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise RunError(f"{what} {path} not found.") from None
    except IsADirectoryError:
        raise RunError(f"{what} {path} is a folder; name a JSON file.") from None
    except UnicodeDecodeError as ex:
        raise RunError(f"{what} {path} is not UTF-8 text (byte {ex.start}): save it as UTF-8 JSON.") from ex
    except OSError as ex:
        raise RunError(f"{what} {path} cannot be read: {ex.strerror or ex}.") from ex
    return parse_json(text, f"{what} {path}")


def parse_json(text: str | bytes, where: str) -> Any:
    try:
        return json.loads(text)
    except UnicodeDecodeError as ex:
        raise RunError(f"{where} is not UTF-8 text (byte {ex.start}): save it as UTF-8 JSON.") from ex
    except json.JSONDecodeError as ex:
        raise RunError(f"{where} is not valid JSON (line {ex.lineno}, column {ex.colno}: {ex.msg}).") from ex
    except RecursionError:
        raise RunError(f"{where} nests objects or arrays too deeply for Python to read: keep "
                       '{"category": {"name": value}} a few levels deep.') from None


def checked_entries(entries: Any, where: str) -> list[dict]:
    """The entries of a params.json, each checked: ``RunError`` saying which one is wrong."""
    if not isinstance(entries, list):
        raise RunError(f"{where} must be {SHAPE}; it is a JSON {type(entries).__name__}.")
    for index, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or not any(kind in entry for kind in ENTRY_KINDS):
            raise RunError(f"{where}: entry {index} ({json.dumps(entry)[:80]}) is not a category, "
                           f"info or variants object. It must be {SHAPE}.")
        model = entry.get("model", DEFAULT_CHOICE)
        names = model if isinstance(model, list) else [model]
        if not all(isinstance(name, str) for name in names):
            raise RunError(f"{where}: entry {index} has a 'model' that is not a name or a list of names.")
        if "category" in entry:
            check_category(entry, f"{where}: entry {index} (category {entry['category']!r})")
        elif "variants" in entry and not isinstance(entry["variants"], list):
            raise RunError(f"{where}: entry {index} has 'variants' that is not a list.")
    return entries


def check_category(entry: dict, where: str) -> None:
    if not isinstance(entry["category"], str):
        raise RunError(f"{where}: 'category' must be a name.")
    params = entry.get("params")
    if not isinstance(params, list):
        raise RunError(f"{where} needs 'params': a list of {{\"name\": ..., \"value\": ...}}.")
    for param in params:
        if not isinstance(param, dict) or not isinstance(param.get("name"), str):
            raise RunError(f"{where}: {json.dumps(param)[:80]} is not a parameter "
                           '{"name": ..., "value": ...}.')


def params_file_entries(path: Path) -> list[dict]:
    """A scenario's ``inputs/params.json`` (none when the scenario has no such file)."""
    if not path.exists():
        return []
    return checked_entries(read_json(path, "Parameters file"), str(path))


def scenario_params(scenario: Path, choice: str) -> tuple[dict, list]:
    """The ``params`` and ``variants`` a run of the local ``scenario`` folder sends for ``choice``."""
    return front_end_params(params_file_entries(scenario / PARAMS_FILE), choice)


def load_overrides(path: Path | str) -> dict[str, Any]:
    """A ``--params`` file: a JSON object, ``{category: {name: value}}`` or flat ``{name: value}``."""
    params = read_json(Path(path), "--params file")
    if not isinstance(params, dict):
        raise RunError(f'--params file {path} must be a JSON object: {{"category": {{"name": value}}}} '
                       f'or flat {{"name": value}}; it is a JSON {type(params).__name__}.')
    return params
