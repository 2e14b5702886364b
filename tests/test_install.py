"""A new user's first commands: bake from the template's git URL (or with the installed wheel), then
the bake's own "Next steps", unedited, in a fresh venv whose dependencies come from PyPI.

Slow (pip installs the package's dependencies into one venv shared by both checks)."""

import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

import quetzal_deploy
from fixtures.bake import TEMPLATE

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("install")]
TAG = f"v{quetzal_deploy.__version__}"


def run(command: list[str], cwd: Path, env: dict | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def next_steps(bake_output: str) -> list[str]:
    """The commands the bake printed under "Next steps:", comments dropped; ``cd`` is the cwd and
    ``invoke deploy`` needs AWS, so both are left to the user."""
    block = bake_output.split("Next steps:", 1)[1].strip().split("\n\n")[0]
    commands = [line.split("#")[0].strip() for line in block.splitlines()]
    return [c for c in commands if c and not c.startswith("cd ") and c != "invoke deploy"]


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory) -> dict:
    """A venv with nothing but pip, as a user's activated one: its bin/ first on PATH."""
    root = tmp_path_factory.mktemp("venv") / "venv"
    venv.create(root, with_pip=True)
    return {"PATH": f"{root / 'bin'}{os.pathsep}{os.environ['PATH']}", "VIRTUAL_ENV": str(root),
            "PYTHONPATH": "", "QUETZAL_DEBUG": ""}


@pytest.fixture(scope="module")
def tagged_clone(tmp_path_factory) -> Path:
    """This working tree (uncommitted changes too) as a git repository tagged at the version."""
    clone = tmp_path_factory.mktemp("origin") / "quetzal-template"
    listed = run(["git", "ls-files", "-co", "--exclude-standard", "-z"], TEMPLATE).split("\0")
    for name in filter(None, listed):
        if (TEMPLATE / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(TEMPLATE / name, clone / name)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "release"], ["tag", TAG]):
        run(["git", "-c", "user.name=t", "-c", "user.email=t@localhost", *args], clone)
    return clone


def follow_next_steps(bake_output: str, repo: Path, env: dict) -> dict[str, str]:
    return {command: run(command.split(), repo, env) for command in next_steps(bake_output)}


def test_a_bake_from_the_git_url_at_a_tag_installs_and_runs_with_its_next_steps(
        tagged_clone, fresh_venv, tmp_path):
    url = f"git+{tagged_clone.as_uri()}"
    home = {"HOME": str(tmp_path)}  # cookiecutter clones into $HOME/.cookiecutters
    baked = run([sys.executable, "-m", "cookiecutter", url, "--checkout", TAG, "--no-input",
                 "-o", str(tmp_path)], tmp_path, home)
    repo = tmp_path / "quetzal-test"
    commit = run(["git", "rev-parse", TAG], tagged_clone).strip()
    pin = f"quetzal-deploy @ git+file://localhost{tagged_clone}@{commit}"  # pip 23 needs a host
    assert pin in (repo / "requirements-dev.txt").read_text().splitlines()
    assert f"({TAG})" in baked and pin in baked  # the bake says what it pinned and why

    outputs = follow_next_steps(baked, repo, fresh_venv)

    assert list(outputs) == ["python -m pip install -r requirements-dev.txt", "invoke --list",
                             "invoke run --local base"]
    assert {"run", "push", "upgrade"} <= set(outputs["invoke --list"].split())
    assert "Run SUCCEEDED" in outputs["invoke run --local base"]
    where = run(["python", "-c", "import quetzal_deploy; print(quetzal_deploy.__file__)"], repo, fresh_venv)
    assert where.startswith(fresh_venv["VIRTUAL_ENV"])  # installed from the tag, not this checkout
    checked = run(["invoke", "upgrade", "--check"], repo, fresh_venv)
    assert re.search(r"^OK: scaffolding at quetzal-template", checked, re.MULTILINE)


def test_a_bake_by_the_installed_wheel_installs_and_runs_with_its_next_steps(fresh_venv, tmp_path):
    wheels = tmp_path / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels),
         str(TEMPLATE)], TEMPLATE)
    (wheel,) = wheels.glob("quetzal_deploy-*.whl")
    # As `pip install quetzal-deploy` would: its dependencies, then this wheel whatever was installed.
    for flags in ([], ["--force-reinstall", "--no-deps"]):
        run(["python", "-m", "pip", "install", "-q", *flags, str(wheel)], tmp_path, fresh_venv)
    template = run(["python", "-c", "from quetzal_deploy.upgrade.template import template_dir; "
                    "print(template_dir())"], tmp_path, fresh_venv).strip()
    baked = run(["python", "-m", "cookiecutter", template, "--no-input", "-o", str(tmp_path)], tmp_path,
                fresh_venv)
    repo = tmp_path / "quetzal-test"
    pin = f"quetzal-deploy @ {wheel.as_uri()}"
    assert pin in (repo / "requirements-dev.txt").read_text().splitlines()
    assert "installs on this machine only" in baked

    outputs = follow_next_steps(baked, repo, fresh_venv)

    assert {"run", "push", "upgrade"} <= set(outputs["invoke --list"].split())
    assert "Run SUCCEEDED" in outputs["invoke run --local base"]
