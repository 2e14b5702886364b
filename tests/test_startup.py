"""Start-up cost of the invoke tasks: every command a modeller runs (``invoke --list`` too) imports
the whole collection before any work, so a task module imports its concern inside the task body."""

import ast
import importlib
import importlib.util
import json
import subprocess
import sys

from fixtures.bake import SRC

TASKS = SRC / "quetzal_deploy" / "tasks"
# Libraries only some tasks need: Docker, Terraform files, plugins, AWS, transfer progress bars,
# ASL linting, JSONPath, notebooks, the template engine, HTTP, version parsing.
HEAVY = {"docker", "hcl2", "lark", "pluggy", "cookiecutter", "jsonpath_ng", "statelint", "nbclient",
         "nbformat", "tqdm", "boto3", "botocore", "s3transfer", "requests", "packaging"}
# What the collection itself needs: the settings (tasks.common reads .env) and the domain errors,
# with the run contract's params errors (standard library only) that the boundary also shows.
SHARED = {"quetzal_deploy", "quetzal_deploy.errors", "quetzal_deploy.settings", "quetzal_deploy.rules",
          "quetzal_deploy.sizing", "quetzal_deploy.contract", "quetzal_deploy.contract.params"}


def modules_loaded_by(statement: str) -> set[str]:
    """``sys.modules`` of a fresh interpreter after ``statement``."""
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(done.stdout))


def test_loading_the_tasks_loads_no_concern():
    """What a baked repo's tasks.py imports loads neither a heavy library nor a concern's module:
    their import time would be paid by every invoke command, ``invoke --list`` included."""
    loaded = modules_loaded_by("from quetzal_deploy.tasks import ns")
    assert sorted({name.split(".")[0] for name in loaded} & HEAVY) == []
    ours = {name for name in loaded if name.split(".")[0] == "quetzal_deploy"}
    assert sorted(name for name in ours - SHARED if not name.startswith("quetzal_deploy.tasks")) == []


def package_imports() -> set[tuple[str, str]]:
    """(module, name) of every ``from quetzal_deploy... import name`` in the task modules."""
    found = set()
    for path in TASKS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("quetzal_deploy."):
                found |= {(node.module, alias.name) for alias in node.names}
    return found


def resolves(module: str, name: str) -> bool:
    """``from module import name`` would work: a name in the module, or a submodule of a package."""
    found = importlib.import_module(module)
    return hasattr(found, name) or (hasattr(found, "__path__")
                                    and importlib.util.find_spec(f"{module}.{name}") is not None)


def test_every_import_a_task_defers_exists():
    """A deferred import fails only when its task runs: each one must resolve now."""
    imports = package_imports()
    assert ("quetzal_deploy.sync.scenarios", "ScenarioStore") in imports  # deferred ones are seen
    assert sorted(f"{module}.{name}" for module, name in imports if not resolves(module, name)) == []


def test_a_sync_loads_no_library_of_another_concern():
    """``invoke upload-scenarios`` / ``download-scenario`` load AWS and the plugin hooks, not the
    libraries of images, infra, ASL linting or notebooks; the progress bar loads once files move
    (an unchanged re-sync, the most frequent, moves none)."""
    loaded = modules_loaded_by("import quetzal_deploy.plugins, quetzal_deploy.sync.scenarios")
    others = HEAVY - {"pluggy", "boto3", "botocore", "s3transfer"}
    assert sorted({name.split(".")[0] for name in loaded} & others) == []
