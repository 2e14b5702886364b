"""Bake the template on supported and unsupported answer sets and check what comes out."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cookiecutter.exceptions import FailedHookException

from fixtures.bake import bake

SUPPORTED = {
    "defaults": {},
    "pt-only": {"has_road_network": "no", "has_od": "no", "steps": "network"},
    "road-od-with-auth": {
        "has_pt_network": "no",
        "auth_function_name": "quetzal-auth",
        "cognito_identity_pool_id": "ca-central-1:0a1b2c3d-1111-2222-3333-444455556666",
        "steps": "prep,pathfinder,assignment,export",
    },
    "python313-small-lambda": {
        "python_version": "3.13", "lambda_memory_size": "128", "lambda_time_limit": "900",
        "lambda_storage_size": "512", "model_name": "abc", "aws_region": "eu-west-3",
    },
}


def files_of(repo: Path) -> set[str]:
    tracked = subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True, check=True)
    return set(tracked.stdout.split())


@pytest.mark.parametrize("answers", SUPPORTED.values(), ids=SUPPORTED.keys())
def test_supported_bake(answers, tmp_path):
    repo = bake(tmp_path, **answers)
    files = files_of(repo)
    steps = answers.get("steps", "preparation,assignment").split(",")
    assert {f"notebooks/{s}.ipynb" for s in steps} <= files
    for key, folder in (("has_pt_network", "pt"), ("has_road_network", "road"), ("has_od", "od")):
        present = any(f.startswith(f"scenarios/base/inputs/{folder}/") for f in files)
        assert present == (answers.get(key, "yes") == "yes"), folder
    for name in files:
        text = (repo / name).read_text(encoding="utf-8", errors="replace")
        assert "{{" not in text and "{%" not in text, f"leftover Jinja in {name}"
    definition = json.loads((repo / "step-functions.json").read_text())
    assert ("Authorization" in definition["States"]) == bool(answers.get("auth_function_name"))


def test_bake_rejects_bad_model_name(tmp_path, capfd):
    with pytest.raises(FailedHookException):
        bake(tmp_path, model_name="Bad_Name")
    assert "ERROR: model_name" in capfd.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_baked_repo_passes_its_own_tests(default_bake):
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                          cwd=default_bake, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
