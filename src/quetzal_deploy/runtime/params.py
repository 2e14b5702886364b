"""What a run's parameters are, from the front end's ``params.json`` and the run's own ``params``.

``params.json`` is a JSON array of entries, each one of ``{"category": name, "params": [{"name": n,
"value": v, ...}], "model"?: ...}``, ``{"info": text, "model"?: ...}`` or ``{"variants": [...],
"model"?: ...}``; an entry without ``model`` belongs to the ``default`` variant. A run sends the
chosen variant's categories as ``launcher_arg.params = {category: {name: value}}``, with its
overrides (``{category: {name: value}}`` or flat ``{name: value}``) merged in deeply.

The tools check the file first (``quetzal_deploy.contract.params``); a notebook reads it with
:func:`run_params`, so a step run by hand sees what a run would send.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from quetzal_deploy.runtime.notebook import deep_merge

DEFAULT_CHOICE = "default"


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


def merge_params(defaults: dict, overrides: Mapping[str, Any]) -> dict:
    """The defaults with the overrides merged deeply (a flat name is set at the top level)."""
    return deep_merge(defaults, dict(overrides))


def run_params(params_file: Path, overrides: Mapping[str, Any] | None = None,
               choice: str = DEFAULT_CHOICE) -> dict:
    """The ``params`` a run of ``choice`` sends: ``params_file``'s (none when absent), then ``overrides``."""
    path = Path(params_file)
    entries = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    return merge_params(front_end_params(entries, choice)[0], overrides or {})
