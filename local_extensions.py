"""Jinja extension of the template: guards that must hold before cookiecutter makes any folder.

cookiecutter creates the project folder (named after ``model_name``) before the pre-gen hook
runs, so a name with a path separator would create folders the hook cannot clean up. The
``folder_name`` filter, rendered while the answers are read, stops such a bake
(``ERROR: ...``, exit 1) before anything is written; every other rule is checked by
``hooks/pre_gen_project.py``.
"""

import os
import re
import sys
from pathlib import Path

from jinja2.ext import Extension

UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f]")


def folder_name(value):
    """Return ``value`` if it can name one folder inside the output folder, else stop the bake.

    The whole answer counts: a trailing newline is refused, not trimmed away.
    """
    text = str(value)
    if UNSAFE.search(text) or text.strip() in {"", ".", ".."} or len(text.encode()) > 255:  # 255: name limit
        print(
            f"ERROR: model_name {value!r} cannot name the project folder: use 3-57 lowercase "
            "letters, digits and hyphens (it becomes the S3 bucket name)",
            file=sys.stderr,
        )
        sys.exit(1)
    return value


VERSION = re.compile(r'^__version__ = "([^"]+)"$', re.MULTILINE)


def package_root() -> Path:
    """The folder holding the quetzal_deploy package this template belongs to: ``src/`` in a
    checkout, the folder around ``quetzal_deploy/template/`` in an installed wheel."""
    here = Path(__file__).resolve().parent
    for root in (here / "src", here.parents[1]):
        if (root / "quetzal_deploy" / "__init__.py").is_file():
            return root
    raise RuntimeError(f"no quetzal_deploy package next to the template in {here}")


def package_version() -> str:
    init = package_root() / "quetzal_deploy" / "__init__.py"
    return VERSION.search(init.read_text(encoding="utf-8")).group(1)


class TemplateExtension(Extension):
    """Registers ``folder_name``, ``absolute_path`` (hooks render with the template as cwd,
    so ``cookiecutter._repo_dir | absolute_path`` locates the template even when it was given
    as a relative path such as ``.``) and the globals ``quetzal_deploy_version`` and
    ``quetzal_deploy_path`` (where the hooks import the package from)."""

    def __init__(self, environment):
        super().__init__(environment)
        environment.filters["folder_name"] = folder_name
        environment.filters["absolute_path"] = os.path.abspath
        environment.globals["quetzal_deploy_version"] = package_version()
        environment.globals["quetzal_deploy_path"] = str(package_root())
