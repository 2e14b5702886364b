"""`python -m quetzal_deploy adopt`: an old-layout repo, and one baked before the template recorded
its version, become ours in one commit; the model's files stay; our tasks and the repo's tests run."""

import json
import os
import subprocess
import sys

import pytest
from dotenv import dotenv_values
from test_upgrade import (
    ENV_LINES_N1,
    NEW_SETTING,
    versions,  # noqa: F401 (a fixture)
)

from fixtures.bake import bake
from fixtures.legacy import NOTEBOOKS, commit_all, old_layout_repo
from fixtures.tasks import run_task

MODEL = "quetzal-lyon"
MODEL_FILES = ("step-functions.json", "requirements.txt", "README.md", *NOTEBOOKS,
               "scenarios/base/inputs/params.json", "scenarios/base/inputs/pt/links.geojson")


def adopt(repo, *args, env=None):
    return subprocess.run([sys.executable, "-m", "quetzal_deploy", "adopt", *args], cwd=repo,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True, input="",
                          timeout=300)


def git(repo, *args) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def blobs(repo, ref, paths) -> dict:
    return {path: git(repo, "rev-parse", f"{ref}:{path}").strip() for path in paths}


@pytest.mark.slow
def test_an_old_layout_repo_becomes_ours_in_one_commit(tmp_path):
    repo = old_layout_repo(tmp_path, MODEL)
    (tmp_path / "quetzal-lyon.tfvars").write_text(
        f'quetzal_model_name = "{MODEL}"\naws_region = "ca-central-1"\nlambda_memory_size = 8032\n'
        "lambda_time_limit = 600\nlambda_storage_size = 8032\n", encoding="utf-8")
    before = git(repo, "rev-parse", "HEAD").strip()
    kept = blobs(repo, "HEAD", MODEL_FILES)

    asked = adopt(repo, "--tfvars", str(tmp_path / "quetzal-lyon.tfvars"))
    assert asked.returncode == 1 and "re-run with --yes" in asked.stderr
    assert git(repo, "rev-parse", "HEAD").strip() == before and not git(repo, "status", "--porcelain")

    done = adopt(repo, "--yes", "--tfvars", str(tmp_path / "quetzal-lyon.tfvars"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "'8032'" in done.stdout and "quetzal-lyon.tfvars" in done.stdout
    assert "A10_preparation,A20_assignment" in done.stdout  # the notebooks' order
    parents = git(repo, "rev-list", "--parents", "-n", "1", "HEAD").split()[1:]
    assert parents[0] == before and parents[1] == git(repo, "rev-parse", "quetzal-template").strip()
    assert blobs(repo, "HEAD", MODEL_FILES) == kept
    assert "KEPT" in done.stdout and "README.md" in done.stdout.split("KEPT")[1]
    assert "CMD [\"quetzal_deploy.runtime.handler.handler\"]" in (repo / "Dockerfile").read_text()
    env = dotenv_values(repo / ".env")
    assert (env["MODEL_NAME"], env["LAMBDA_MEMORY_SIZE"], env["LAMBDA_TIME_LIMIT"]) == (MODEL, "8032", "600")
    assert env["AUTH_FUNCTION_NAME"] == "quetzal-api-auth" and "AWS_BUCKET_NAME" not in env
    assert ".ipynb_checkpoints/" in (repo / ".gitignore").read_text()  # theirs and ours
    tfvars = (repo / "infra" / f"{MODEL}.tfvars").read_text()
    assert f'lambda_role           = "lambda-{MODEL}-role"' in tfvars
    assert 'admin_role_name            = "Cognito_quetzal_pool_admin"' in tfvars
    record = json.loads((repo / ".quetzal-template.json").read_text())
    assert record["answers"]["has_od"] == "no" and record["answers"]["has_pt_network"] == "yes"
    assert not (repo / "notebooks" / "A10_preparation.ipynb").exists(), "a template sample was added"
    assert not git(repo, "status", "--porcelain")

    assert run_task(repo, "--list").returncode == 0
    local = run_task(repo, "run", "--local", "base", timeout=600)
    assert local.returncode == 0 and "Run SUCCEEDED" in local.stdout, local.stdout[-3000:] + local.stderr
    assert "skipped locally" in local.stdout  # the shared auth function
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                           cwd=repo, capture_output=True, text=True, timeout=600)
    assert tests.returncode == 0, tests.stdout[-3000:]
    upgrade = run_task(repo, "upgrade", "--yes")
    assert upgrade.returncode == 0 and "Up to date" in upgrade.stdout, upgrade.stdout + upgrade.stderr

    again = adopt(repo, "--yes")
    assert again.returncode == 1 and "already has .quetzal-template.json" in again.stderr


def test_an_adopted_repo_upgrades_to_the_next_template_and_keeps_the_model(tmp_path, versions):  # noqa: F811
    """Adopted with the template N installed, upgraded by N+1 (test_upgrade's two versions)."""
    repo = old_layout_repo(tmp_path, MODEL)
    done = adopt(repo, "--yes", env={"PYTHONPATH": str(versions["n"] / "src")})
    assert done.returncode == 0, done.stderr
    kept = blobs(repo, "HEAD", MODEL_FILES)

    upgrade = run_task(repo, "upgrade", "--yes", env={"PYTHONPATH": str(versions["n1"] / "src")})

    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
    assert "Template changes from 1.0.0 to 1.1.0:" in upgrade.stdout
    assert ENV_LINES_N1 in (repo / "Dockerfile").read_text()
    env = (repo / ".env").read_text()
    assert NEW_SETTING in env and f"MODEL_NAME={MODEL}" in env
    assert "resource_names" in (repo / "infra" / f"{MODEL}.tfvars").read_text()
    assert blobs(repo, "HEAD", MODEL_FILES) == kept
    assert not (repo / "notebooks" / "A10_preparation.ipynb").exists()
    assert not git(repo, "status", "--porcelain")


def test_a_repo_baked_before_the_record_is_adopted_with_its_answers(tmp_path):
    repo = bake(tmp_path, model_name="quetzal-nice", lambda_memory_size="2048", steps="prep,run")
    (repo / ".quetzal-template.json").unlink()
    git(repo, "branch", "-D", "quetzal-template")
    (repo / "tasks.py").write_text((repo / "tasks.py").read_text() + "# our own line\n")
    commit_all(repo, "A bake of an earlier version")
    answers = json.loads(git(repo, "show", "HEAD~1:.quetzal-template.json"))["answers"]

    conflicted = adopt(repo, "--yes")
    assert conflicted.returncode == 0, conflicted.stderr
    assert "tasks.py" in conflicted.stdout.split("KEPT")[1]
    assert "# our own line" in (repo / "tasks.py").read_text()
    record = json.loads((repo / ".quetzal-template.json").read_text())["answers"]
    assert {key: record[key] for key in ("model_name", "lambda_memory_size", "steps")} == {
        key: answers[key] for key in ("model_name", "lambda_memory_size", "steps")}
    assert "resource_names" not in (repo / "infra" / "quetzal-nice.tfvars").read_text()


def test_force_takes_the_template_version(tmp_path):
    repo = old_layout_repo(tmp_path, MODEL)
    done = adopt(repo, "--yes", "--force")
    assert done.returncode == 0, done.stderr
    assert "README.md" in done.stdout.split("replaced")[1] and "KEPT" not in done.stdout
    assert "Our model's own notes" not in (repo / "README.md").read_text()
    assert "Our model's own notes" in git(repo, "show", "HEAD~1:README.md")
    assert blobs(repo, "HEAD", NOTEBOOKS) == blobs(repo, "HEAD~1", NOTEBOOKS)  # never the model's content


@pytest.mark.parametrize(("env", "tfvars", "message"), [
    ("AWS_BUCKET_NAME=quetzal-a\nAWS_LAMBDA_FUNCTION_NAME=quetzal-b\n", None,
     ".env names different resources"),
    ("# nothing\n", None, ".env names no model"),
    (None, 'quetzal_model_name = "quetzal-lyon"\necs_memory_size = 4096\necs_cpu_units = 1024\n',
     "whole-model ECS mode"),
    (None, 'quetzal_model_name = "quetzal-lyon"\nlambda_memory_size = 99999\n', "lambda_memory_size"),
])
def test_bad_input_stops_before_anything_is_written(tmp_path, env, tfvars, message):
    repo = old_layout_repo(tmp_path, MODEL)
    if env is not None:
        (repo / ".env").write_text(env, encoding="utf-8")
        commit_all(repo, "names")
    args = ["--yes"]
    if tfvars is not None:
        (tmp_path / "model.tfvars").write_text(tfvars, encoding="utf-8")
        args += ["--tfvars", str(tmp_path / "model.tfvars")]
    before = git(repo, "rev-parse", "HEAD")
    done = adopt(repo, *args)
    assert done.returncode == 1 and done.stderr.startswith("ERROR:") and message in done.stderr, done.stderr
    assert git(repo, "rev-parse", "HEAD") == before and not git(repo, "status", "--porcelain")
    assert "quetzal-template" not in git(repo, "branch")


def test_infra_adopt_refuses_before_terraform_what_it_cannot_keep(boto, tmp_path):
    """A user role whose identity pool .env lacks, then a model in the backend's whole-model ECS
    mode: both stop before any terraform command, with the fix."""
    pool = "ca-central-1:0a1b2c3d-1111-2222-3333-444455556666"
    boto.client("s3").create_bucket(Bucket=MODEL,
                                    CreateBucketConfiguration={"LocationConstraint": "ca-central-1"})
    trust = {"Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity",
             "Principal": {"Federated": "cognito-identity.amazonaws.com"},
             "Condition": {"StringEquals": {"cognito-identity.amazonaws.com:aud": pool}}}
    document = json.dumps({"Version": "2012-10-17", "Statement": [trust]})
    iam = boto.client("iam")
    iam.create_role(RoleName=f"Cognito_quetzal_pool_{MODEL}", AssumeRolePolicyDocument=document)
    repo = old_layout_repo(tmp_path, MODEL)
    assert adopt(repo, "--yes").returncode == 0
    unset = run_task(repo, "infra", "--adopt", "--yes", input="")
    assert unset.returncode == 1, unset.stderr
    assert f"set COGNITO_IDENTITY_POOL_ID={pool} in .env" in unset.stderr
    assert not (repo / "infra" / ".terraform").exists()
    assert not (repo / "infra" / "adopt_imports.tf").exists()

    env = (repo / ".env").read_text()
    env = env.replace("COGNITO_IDENTITY_POOL_ID=\n", f"COGNITO_IDENTITY_POOL_ID={pool}\n")
    (repo / ".env").write_text(env)
    boto.client("ecs").register_task_definition(family=f"{MODEL}-task", containerDefinitions=[
        {"name": MODEL, "image": f"{MODEL}:v1", "memory": 4096}])
    ecs = run_task(repo, "infra", "--adopt", "--yes", input="")
    assert ecs.returncode == 1 and "whole-model ECS mode" in ecs.stderr, ecs.stderr
    assert not (repo / "infra" / ".terraform").exists()
