"""quetzal-deploy as a built wheel: it carries the tooling, the runtime, the template and the
Terraform module, and a model baked from the wheel alone (no checkout) works with it."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import quetzal_deploy
from fixtures.bake import TEMPLATE

SHIPPED_TEMPLATE = ("cookiecutter.json", "local_extensions.py", "hooks", "terraform",
                    "{{cookiecutter.model_name}}")


def tracked(*paths: str) -> set[str]:
    listing = subprocess.run(["git", "ls-files", "--", *paths], cwd=TEMPLATE, check=True,
                             capture_output=True, text=True).stdout
    return set(listing.split())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel pip builds from this checkout (hatchling, offline: no build isolation)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(out), str(TEMPLATE)], check=True, capture_output=True, text=True)
    (built,) = out.glob("quetzal_deploy-*.whl")
    return built


@pytest.fixture(scope="module")
def unpacked(wheel, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(root)
    return root


def test_the_wheel_is_named_after_the_package_version(wheel):
    assert wheel.name.startswith(f"quetzal_deploy-{quetzal_deploy.__version__}-py3-none-any")


def test_the_wheel_carries_the_package_and_the_whole_template(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    package = {f"quetzal_deploy/{p.removeprefix('src/quetzal_deploy/')}" for p in tracked("src")}
    template = {f"quetzal_deploy/template/{p}" for p in tracked(*SHIPPED_TEMPLATE)}
    assert package <= names and template <= names, sorted((package | template) - names)
    assert not [n for n in names if "__pycache__" in n or n.startswith(("tests/", "benchmarks/"))]


def test_a_model_baked_from_the_wheel_alone_works(unpacked, tmp_path):
    """Bake with the wheel's own template (as ``quetzal-deploy`` installed from an index would),
    then list the baked repo's tasks with only the wheel's package importable."""
    env = {**os.environ, "PYTHONPATH": str(unpacked)}
    template = unpacked / "quetzal_deploy" / "template"
    subprocess.run([sys.executable, "-m", "cookiecutter", str(template), "--no-input", "-o", str(tmp_path)],
                   cwd=tmp_path, env=env, check=True, capture_output=True, text=True)
    repo = tmp_path / "quetzal-test"
    assert f"quetzal-deploy=={quetzal_deploy.__version__}" in (repo / "requirements-dev.txt").read_text()
    assert (repo / "infra" / "modules" / "quetzal-model" / "main.tf").is_file()
    where = subprocess.run([sys.executable, "-c", "import quetzal_deploy; print(quetzal_deploy.__file__)"],
                           cwd=repo, env=env, check=True, capture_output=True, text=True).stdout
    assert where.startswith(str(unpacked))
    tasks = subprocess.run([sys.executable, "-m", "invoke", "--list"], cwd=repo, env=env,
                           check=True, capture_output=True, text=True).stdout
    assert {"upload-scenarios", "update-steps", "run", "push", "doctor"} <= set(tasks.split())


def test_the_pre_gen_hook_takes_its_rules_from_the_package_beside_the_template(unpacked, tmp_path):
    """The hook imports quetzal_deploy.rules from the folder holding quetzal_deploy/template/ (two
    levels up), ahead of any other install: a copy whose rule differs shows which one ran."""
    site = tmp_path / "site"
    shutil.copytree(unpacked / "quetzal_deploy", site / "quetzal_deploy")
    rules = site / "quetzal_deploy" / "rules.py"
    stricter = rules.read_text().replace('"lambda_memory_size": (128,', '"lambda_memory_size": (256,')
    rules.write_text(stricter)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    out = tmp_path / "out"
    out.mkdir()
    done = subprocess.run([sys.executable, "-m", "cookiecutter", str(site / "quetzal_deploy" / "template"),
                           "--no-input", "-o", str(out), "lambda_memory_size=200"],
                          cwd=out, env=env, capture_output=True, text=True)
    assert done.returncode != 0 and not list(out.iterdir())
    assert "ERROR: lambda_memory_size: '200' must be from 256 to 10240" in done.stderr, done.stderr


def test_the_wheel_installs_the_quetzal_deploy_command(wheel, unpacked):
    """``quetzal-deploy adopt`` is the wheel's console script (``python -m quetzal_deploy`` too)."""
    (info,) = [n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".dist-info/entry_points.txt")]
    scripts = zipfile.ZipFile(wheel).read(info).decode()
    assert "quetzal-deploy = quetzal_deploy.__main__:main" in scripts
    env = {**os.environ, "PYTHONPATH": str(unpacked)}
    done = subprocess.run([sys.executable, "-c", "import sys; from quetzal_deploy.__main__ import main; "
                           "sys.exit(main(['adopt', '--help']))"], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and "--tfvars" in done.stdout and "--force" in done.stdout, done.stderr
