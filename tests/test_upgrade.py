"""`invoke upgrade` on real bakes, real git and real invoke processes.

Version N is a copy of this checkout; the repo is baked from it. Version N+1 is another copy the
test edits (a new version, a handler fix in the runtime, a Dockerfile and a .env change): running
the baked repo's invoke with N+1's ``src`` first on PYTHONPATH is "N+1 installed".
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures.bake import TEMPLATE
from fixtures.tasks import run_task

IGNORED = shutil.ignore_patterns(".git", "build", "__pycache__", ".pytest_cache", ".ruff_cache", ".terraform",
                                 ".hypothesis", ".benchmarks", "*.tfstate*")
ENV_LINE = "    PIP_DISABLE_PIP_VERSION_CHECK=1\n"
ENV_LINES_N1 = "    PIP_DISABLE_PIP_VERSION_CHECK=1 \\\n    QUETZAL_UPGRADED=yes\n"
HANDLER_FIX = "\nHANDLER_FIX = 'the N+1 handler'\n"
NEW_SETTING = "# Added by the template N+1.\nQUETZAL_NEW_SETTING=on\n"


def git(repo, *args):
    identity = ["-c", "user.name=Model Author", "-c", "user.email=author@example.com"]
    return subprocess.run(["git", *identity, *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


def set_version(template: Path, version: str) -> None:
    init = template / "src" / "quetzal_deploy" / "__init__.py"
    text = init.read_text(encoding="utf-8")
    old = next(line for line in text.splitlines() if line.startswith("__version__ = "))
    init.write_text(text.replace(old, f'__version__ = "{version}"'), encoding="utf-8")


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def make_next_version(template: Path) -> None:
    """N+1: a new version, a handler fix, a Dockerfile change, a new .env setting at its end."""
    set_version(template, "1.1.0")
    handler = template / "src" / "quetzal_deploy" / "runtime" / "handler.py"
    handler.write_text(handler.read_text(encoding="utf-8") + HANDLER_FIX, encoding="utf-8")
    scaffold = template / "{{cookiecutter.model_name}}"
    edit(scaffold / "Dockerfile", ENV_LINE, ENV_LINES_N1)
    with (scaffold / ".env").open("a", encoding="utf-8") as env:
        env.write(NEW_SETTING)


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    """{"n": template N, "n1": template N+1, "baked": the repo baked from N}, N at 1.0.0."""
    root = tmp_path_factory.mktemp("versions")
    old, new = root / "n", root / "n1"
    shutil.copytree(TEMPLATE, old, ignore=IGNORED)
    set_version(old, "1.0.0")
    shutil.copytree(old, new)
    make_next_version(new)
    baked = root / "baked"
    subprocess.run([sys.executable, "-m", "cookiecutter", str(old), "--no-input", "-o", str(baked)],
                   env={"PATH": "/usr/bin:/bin", "HOME": str(root), "PYTHONPATH": str(old / "src")},
                   check=True, capture_output=True, text=True)
    return {"n": old, "n1": new, "baked": baked / "quetzal-test"}


@pytest.fixture
def repo(versions, tmp_path) -> Path:
    target = tmp_path / "quetzal-test"
    shutil.copytree(versions["baked"], target, symlinks=True)
    return target


@pytest.fixture
def installed(versions) -> dict:
    """The environment in which N+1 is the installed quetzal-deploy."""
    return {"PYTHONPATH": str(versions["n1"] / "src")}


def model_edits(repo: Path) -> None:
    """The model's own work: a notebook cell, a .env value, an extra task; committed."""
    notebook = repo / "notebooks" / "preparation.ipynb"
    cells = json.loads(notebook.read_text(encoding="utf-8"))
    code = next(cell for cell in cells["cells"] if cell["cell_type"] == "code")
    code["source"] = [*code["source"], "\n# the model's own edit\n"]
    notebook.write_text(json.dumps(cells, indent=1) + "\n", encoding="utf-8")
    edit(repo / ".env", "LAMBDA_MEMORY_SIZE=4016", "LAMBDA_MEMORY_SIZE=3008")
    with (repo / "tasks.py").open("a", encoding="utf-8") as tasks:
        tasks.write("\n\nfrom invoke import task  # noqa: E402\n\n\n@task\ndef hello(c):\n"
                    "    \"\"\"The model's own task.\"\"\"\n    print('hello from the model')\n\n\n"
                    "ns.add_task(hello)  # noqa: F821\n")
    edit(repo / "tasks.py", "import ns  # noqa: F401", "import ns")
    git(repo, "commit", "-qam", "The model's own edits")


def test_baked_repo_records_its_template_and_keeps_the_pristine_bake(repo):
    record = json.loads((repo / ".quetzal-template.json").read_text(encoding="utf-8"))
    assert record["version"] == "1.0.0" and record["answers"]["model_name"] == "quetzal-test"
    assert not [key for key in record["answers"] if key.startswith("_")]
    assert git(repo, "rev-parse", "quetzal-template") == git(repo, "rev-parse", "main")


def test_upgrade_brings_the_template_changes_and_keeps_the_model_edits(repo, installed):
    model_edits(repo)
    behind = run_task(repo, "upgrade", "--check", env=installed)
    assert behind.returncode == 1 and "BEHIND" in behind.stdout and "1.0.0" in behind.stdout, behind.stdout

    done = run_task(repo, "upgrade", "--yes", env=installed)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "Template changes from 1.0.0 to 1.1.0:" in done.stdout
    assert "+QUETZAL_NEW_SETTING=on" in done.stdout and "+    QUETZAL_UPGRADED=yes" in done.stdout
    assert "QUETZAL_UPGRADED=yes" in (repo / "Dockerfile").read_text()  # the template's changes came
    env_file = (repo / ".env").read_text()
    assert "LAMBDA_MEMORY_SIZE=3008" in env_file and NEW_SETTING in env_file  # both edits in one file
    assert "the model's own edit" in (repo / "notebooks" / "preparation.ipynb").read_text()
    assert "quetzal-deploy==1.1.0" in (repo / "requirements-dev.txt").read_text()
    assert json.loads((repo / ".quetzal-template.json").read_text())["version"] == "1.1.0"
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "log", "-1", "--format=%P", "HEAD").count(" ") == 1  # a merge, reviewable
    assert run_task(repo, "upgrade", "--check", env=installed).stdout.startswith("OK: scaffolding at")
    again = run_task(repo, "upgrade", "--yes", env=installed)
    assert again.returncode == 0 and "Up to date" in again.stdout

    hello = run_task(repo, "hello", env=installed)
    assert hello.returncode == 0 and "hello from the model" in hello.stdout, hello.stderr
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=repo,
                           env={**os.environ, **installed}, capture_output=True, text=True, timeout=900)
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-3000:]
    run = run_task(repo, "run", "--local", "base", env=installed, timeout=900)
    assert run.returncode == 0 and "Run SUCCEEDED" in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]


def test_both_changing_the_same_lines_is_a_conflict_nothing_overwritten(repo, installed):
    edit(repo / "Dockerfile", ENV_LINE, "    PIP_DISABLE_PIP_VERSION_CHECK=0\n")
    model_edits(repo)
    before = git(repo, "rev-parse", "HEAD")

    done = run_task(repo, "upgrade", "--yes", env=installed)

    assert done.returncode == 1
    assert "changed the same lines in:\n  Dockerfile\n" in done.stderr, done.stderr
    assert "git merge --abort" in done.stderr and "Traceback" not in done.stderr
    dockerfile = (repo / "Dockerfile").read_text()
    assert "<<<<<<<" in dockerfile and "PIP_DISABLE_PIP_VERSION_CHECK=0" in dockerfile
    assert "QUETZAL_UPGRADED=yes" in dockerfile
    assert "LAMBDA_MEMORY_SIZE=3008" in (repo / ".env").read_text()
    git(repo, "merge", "--abort")
    assert git(repo, "rev-parse", "HEAD") == before and git(repo, "status", "--porcelain") == ""
    assert "PIP_DISABLE_PIP_VERSION_CHECK=0\n" in (repo / "Dockerfile").read_text()


def test_upgrade_refuses_a_dirty_tree_and_asks_before_merging(repo, installed):
    (repo / "Dockerfile").write_text("# uncommitted\n", encoding="utf-8")
    dirty = run_task(repo, "upgrade", "--yes", env=installed)
    assert dirty.returncode == 1 and "Commit or stash your changes first" in dirty.stderr
    git(repo, "checkout", "--", "Dockerfile")
    before = git(repo, "rev-parse", "HEAD", "quetzal-template")

    declined = run_task(repo, "upgrade", env=installed, input="n\n")
    unanswered = run_task(repo, "upgrade", env=installed, input="")

    assert declined.returncode == 1 and "Nothing changed." in declined.stdout
    assert "[y/N]" in declined.stdout and "+    QUETZAL_UPGRADED=yes" in declined.stdout
    assert unanswered.returncode == 1 and "re-run with --yes" in unanswered.stderr
    assert git(repo, "rev-parse", "HEAD", "quetzal-template") == before


def test_a_clone_without_the_template_branch_gets_the_command_that_fixes_it(repo, installed, tmp_path):
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    done = run_task(clone, "upgrade", "--yes", env=installed)
    assert done.returncode == 1
    assert "git fetch origin quetzal-template:quetzal-template" in done.stderr, done.stderr
    git(clone, "fetch", "-q", "origin", "quetzal-template:quetzal-template")
    assert run_task(clone, "upgrade", "--yes", env=installed).returncode == 0


def test_check_is_ok_at_the_installed_version(repo, versions):
    done = run_task(repo, "upgrade", "--check", env={"PYTHONPATH": str(versions["n"] / "src")})
    assert done.returncode == 0 and done.stdout == "OK: scaffolding at quetzal-template 1.0.0.\n"
