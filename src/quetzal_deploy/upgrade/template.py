"""The template this package ships, the record a bake leaves in the repo, and rendering it again."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from unittest.mock import patch

from packaging.version import InvalidVersion, Version

import quetzal_deploy
from quetzal_deploy.errors import QuetzalError

RECORD = ".quetzal-template.json"
RENDER_ONLY_ENV = "QUETZAL_TEMPLATE_RENDER_ONLY"  # the post-gen hook then skips git


class UpgradeError(QuetzalError):
    """The scaffolding cannot be upgraded as asked; the message says what to do."""


def template_dir() -> Path:
    """The installed version's template: ``quetzal_deploy/template`` in a wheel, the repository
    root in a checkout (an editable install)."""
    package = Path(quetzal_deploy.__file__).resolve().parent
    for candidate in (package / "template", package.parents[1]):
        if (candidate / "cookiecutter.json").is_file():
            return candidate
    raise UpgradeError(f"quetzal-deploy {quetzal_deploy.__version__} at {package} carries no template "
                       "(no cookiecutter.json): reinstall it (`pip install -r requirements-dev.txt`).")


def parse_version(text: str, where: str) -> Version:
    try:
        return Version(text)
    except (InvalidVersion, TypeError) as ex:
        raise UpgradeError(f"{where} has no valid version ({text!r}).") from ex


@dataclass(frozen=True)
class Record:
    """What a bake recorded: the template version and the answers."""

    version: Version
    answers: dict


def read_record(root: Path) -> Record:
    path = root / RECORD
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Record(parse_version(data["version"], str(path)), dict(data["answers"]))
    except FileNotFoundError as ex:
        raise UpgradeError(f"{path} is missing: this repo was not baked by a quetzal-template that "
                           "records its version (or the file was deleted; git log shows it).") from ex
    except (ValueError, KeyError, TypeError) as ex:
        raise UpgradeError(f"{path} is not a template record (JSON with 'version' and 'answers'): "
                           f"{ex}. Restore it from git history.") from ex


def installed_version() -> Version:
    return parse_version(quetzal_deploy.__version__, "the installed quetzal-deploy")


def render(answers: dict, into: Path) -> Path:
    """Bake the installed template with ``answers`` into ``into`` (no git); returns the project."""
    from cookiecutter.exceptions import CookiecutterException
    from cookiecutter.main import cookiecutter

    try:
        with patch.dict(os.environ, {RENDER_ONLY_ENV: "1"}):  # read by the post-gen hook, a child process
            return Path(cookiecutter(str(template_dir()), no_input=True, extra_context=answers,
                                     output_dir=str(into)))
    except CookiecutterException as ex:
        raise UpgradeError(f"Rendering the template {quetzal_deploy.__version__} with this repo's answers "
                           f"failed ({ex}; see above). Fix the answers in {RECORD} (a new template may "
                           "refuse an old answer), commit, and run `invoke upgrade` again.") from ex
