"""The package's layout is its architecture: each concern's subpackage imports only the ones the
ARCHITECTURE.md's picture draws; the image ships the two bottom layers, the run contract (which
imports nothing of the package) and the runtime (which imports only the contract)."""

import ast
import re
from pathlib import Path

import pytest

from fixtures.bake import SRC

PACKAGE = SRC / "quetzal_deploy"
SHARED = {"settings", "rules", "aws", "errors", "output", "sizing", "doctor", "plugins", "git"}
ALLOWED = {  # concern -> the concerns it may import (itself and the package root always)
    "contract": set(),  # what a run is: its input, params, output layers (standard library only)
    "runtime": {"contract"},
    "sync": {"runtime", "shared"},
    "images": {"runtime", "pipeline", "shared"},
    "pipeline": {"contract", "sync", "runtime", "shared"},
    "infra": {"images", "pipeline", "sync", "access", "shared"},
    "access": {"shared"},
    "local": {"contract", "pipeline", "sync", "images", "runtime", "report", "shared"},
    "report": {"contract", "pipeline", "sync", "runtime", "shared"},
    "upgrade": {"pipeline", "shared"},
    "adopt": {"upgrade", "pipeline", "infra", "shared"},
    "__main__": {"adopt", "shared"},  # python -m quetzal_deploy: commands outside a model repo
    "tasks": {"contract", "runtime", "sync", "images", "pipeline", "infra", "access", "local", "upgrade",
              "adopt", "report", "shared"},
    "shared": {"runtime", "images", "pipeline"},  # doctor checks Docker and the state machine
}


def concern(module: str) -> str:
    """``quetzal_deploy.sync.s3sync`` -> ``sync``; a top-level module -> ``shared``."""
    parts = module.split(".")
    if len(parts) < 2 or parts[1] == "__init__":
        return "root"
    return "shared" if parts[1] in SHARED else parts[1]


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {name for name in found if name.startswith("quetzal_deploy.")}


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[p.relative_to(PACKAGE).as_posix() for p in MODULES])
def test_a_module_imports_only_the_concerns_it_may(path):
    module = ".".join(("quetzal_deploy", *path.relative_to(PACKAGE).with_suffix("").parts))
    mine = concern(module)
    if mine == "root":
        assert not imports(path), "the package's __init__ imports nothing (the image ships it)"
        return
    wrong = {name for name in imports(path) if concern(name) not in ALLOWED[mine] | {mine, "root"}}
    assert not wrong, f"{module} ({mine}) imports {sorted(wrong)}"


def test_every_concern_of_the_readme_is_a_subpackage():
    for name in ALLOWED.keys() - {"shared", "__main__"}:
        assert (PACKAGE / name / "__init__.py").is_file(), name
    assert {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"} <= SHARED


def test_the_architecture_picture_draws_the_allowed_imports():
    """ARCHITECTURE.md's diagram: one arrow per allowed import between concerns (shared and tasks,
    which may import all, are said in words), so the picture cannot drift from the rules."""
    text = (PACKAGE.parents[1] / "ARCHITECTURE.md").read_text(encoding="utf-8")
    drawn = set(re.findall(r"^\s+(\w+) --> (\w+)$", text, flags=re.MULTILINE))
    allowed = {(mine, other) for mine, others in ALLOWED.items() if mine not in {"tasks", "shared"}
               for other in others - {"shared"}}
    assert drawn == allowed


def test_one_output_callback():
    """A function that prints takes ``out`` typed ``Out``, defined once (``output.py``): no ``echo``,
    no other spelling of its type."""
    found = []
    for path in MODULES:
        text = path.read_text(encoding="utf-8")
        if path.name != "output.py" and "Callable[[str], None]" in text:
            found.append(f"{path.name}: Callable[[str], None] (use output.Out)")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names = [a.arg for a in (*node.args.args, *node.args.kwonlyargs)]
                found += [f"{path.name}: {node.name}({name}=...)" for name in names if name == "echo"]
    assert found == []
