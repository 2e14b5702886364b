"""Proof: a model written the way existing quetzal models are (tests/support/real_model) runs.

``notebooks/<group>/`` folders; a preparation step printing a Python-literal ``RETURN`` with
``exec_id``; a Map over ``$.launcher_arg.params.exec_id`` whose ``Iterator`` Task rebuilds
``launcher_arg`` from ``$.launcher_arg.training_folder``, the params and ``$$.Map.Item.Value``;
a merge step reading ``$[0]`` that stops early with a bare ``end_of_notebook``; ``%matplotlib``
and ``%autoreload`` magics; every notebook branching on ``AWS_EXECUTION_ENV`` (off it, they
would write into the repo's ``scenarios/base``); a model-wide ``inputs/zones.csv``.
"""

import json
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
from test_run_local import invoke, run_folder, tree_hash
from test_test_lambda import BUCKET, keys, upload_scenario
from test_update_steps import deployed

from fixtures.tasks import run_task

REAL_MODEL = Path(__file__).parent / "support" / "real_model"
MERGED = ["exec_id,zone,trips", "0,north,360", "1,centre,90", "2,south,270"]


@pytest.fixture
def real_model(baked_repo):
    """The default bake with the real model's notebooks, state machine and model-wide inputs."""
    shutil.rmtree(baked_repo / "notebooks")
    for name in ("notebooks", "inputs"):
        shutil.copytree(REAL_MODEL / name, baked_repo / name)
    shutil.copy(REAL_MODEL / "step-functions.json", baked_repo / "step-functions.json")
    return baked_repo


def add_cell(notebook: Path, source: str) -> None:
    content = nbformat.read(notebook, as_version=4)
    content.cells.append(nbformat.v4.new_code_cell(source))
    nbformat.write(content, notebook)


def test_real_model_runs_locally_without_touching_the_repo(real_model, tmp_path):
    before = tree_hash(real_model / "scenarios" / "base")

    done = invoke(real_model, tmp_path, "run", "--local", "base")

    assert done.returncode == 0, done.stdout + done.stderr
    scenario = run_folder(real_model) / "bucket" / "base"
    outputs = scenario / "outputs"
    assert (outputs / "zones_speed.csv").read_text().splitlines() == [
        "zone,length_km,time_min", "north,12,36.0", "centre,3,9.0", "south,9,27.0"]
    assert sorted(p.name for p in outputs.glob("simulation_*.csv")) == [
        "simulation_0.csv", "simulation_1.csv", "simulation_2.csv"]
    assert (outputs / "merged.csv").read_text().splitlines() == MERGED
    logs = scenario / "logs"
    prep = (logs / "prep" / "preparation.txt").read_text()
    assert "on_lambda: True AWS_Lambda_python3.12" in prep
    assert "3 zones, 2 params.json entries, speed 20" in prep
    assert "RETURN: {'launcher_arg': {'params': {'exec_id': [0, 1, 2]}}}" in prep
    merge = (logs / "sim" / "merge.txt").read_text()
    assert "merged 3 simulations from 0" in merge and "NameError" in merge
    assert "RuntimeError" not in merge
    for index in range(3):
        assert any(line.split()[:2] == [f"Simulations[{index}]", ">"] and "ok" in line.split()
                   for line in done.stdout.splitlines()), done.stdout
    assert not (scenario / "inputs" / "zones.csv").exists()  # model-wide inputs are not uploaded
    assert tree_hash(real_model / "scenarios" / "base") == before
    assert not (real_model / "scenarios" / "base" / "outputs").exists()
    ignored_too = subprocess.run(["git", "status", "--porcelain", "--ignored", "--", "scenarios"],
                                 cwd=real_model, capture_output=True, text=True, check=True)
    assert ignored_too.stdout == ""


def test_execution_env_follows_the_python_of_the_bake(real_model, tmp_path):
    env_file = real_model / ".env"
    env_file.write_text(env_file.read_text().replace("PYTHON_VERSION=3.12", "PYTHON_VERSION=3.13"))

    done = invoke(real_model, tmp_path, "run", "--local", "base")

    assert done.returncode == 0, done.stdout + done.stderr
    log = run_folder(real_model) / "bucket" / "base" / "logs" / "sim" / "merge.txt"
    assert "on_lambda: True AWS_Lambda_python3.13" in log.read_text()


def test_shell_escape_stops_a_local_run_before_any_step(real_model, tmp_path):
    add_cell(real_model / "notebooks" / "sim" / "simulation.ipynb", "!pip install geopandas")

    done = invoke(real_model, tmp_path, "run", "--local", "base")

    assert done.returncode == 1
    assert ("notebooks/sim/simulation.ipynb, cell 6, line 1: `!pip install geopandas` is IPython "
            "syntax a script cannot run. Fix: add the package to requirements.txt") in done.stderr
    assert "Traceback" not in done.stderr
    assert not (real_model / ".quetzal" / "runs").exists()


def test_update_steps_takes_nested_notebooks_and_refuses_a_missing_one(real_model, boto):
    boto.client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={
        "LocationConstraint": boto.region_name})
    role = boto.client("iam").create_role(RoleName="sfn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    placeholder = {"StartAt": "wait", "States": {"wait": {"Type": "Pass", "End": True}}}
    machine = boto.client("stepfunctions").create_state_machine(
        name=BUCKET, roleArn=role, definition=json.dumps(placeholder))["stateMachineArn"]
    done = run_task(real_model, "update-steps")
    assert done.returncode == 0, done.stdout + done.stderr
    iterator = deployed(boto, machine)["States"]["Simulations"]["Iterator"]["States"]["Simulation"]
    assert iterator["Parameters"]["Payload"]["notebook_path"] == "notebooks/sim/simulation.ipynb"

    (real_model / "notebooks" / "sim" / "merge.ipynb").rename(real_model / "notebooks" / "merge.ipynb")
    refused = run_task(real_model, "update-steps")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "notebooks/sim/merge.ipynb" in refused.stderr and "do not exist" in refused.stderr


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.xdist_group("docker")
def test_real_model_in_the_image(real_model, tmp_path, boto, docker_engine, lambda_base_image,
                                 monkeypatch):
    """test-lambda on the first step against S3, the whole pipeline in the image, a refused build."""
    monkeypatch.setenv("QUETZAL_BASE_IMAGE", lambda_base_image)
    s3 = boto.client("s3")
    upload_scenario(s3, real_model)

    done = run_task(real_model, "test-lambda", timeout=900)

    assert done.returncode == 0, done.stdout + done.stderr
    response = json.loads(done.stdout.split("--- response ---", 1)[1])
    assert response["launcher_arg"] == {"training_folder": "/tmp", "params": {
        "general": {"pt_speed_kmh": 20, "road_speed_kmh": 40, "scenario_label": "base",
                    "include_od": True}, "exec_id": [0, 1, 2]}}
    assert "zones_speed.csv" in keys(s3, "base/outputs/")
    log = s3.get_object(Bucket=BUCKET, Key="base/logs/prep/preparation.txt")["Body"].read().decode()
    assert "on_lambda: True AWS_Lambda_python3.12" in log and "3 zones" in log
    assert not any(key.startswith("inputs/zones") for key in keys(s3, "base/"))

    local = invoke(real_model, tmp_path, "run", "--local", "--docker", "base")

    assert local.returncode == 0, local.stdout + local.stderr
    scenario = run_folder(real_model) / "bucket" / "base"
    assert (scenario / "outputs" / "merged.csv").read_text().splitlines() == MERGED
    assert "on_lambda: True AWS_Lambda_python3.12" in (scenario / "logs/sim/simulation.txt").read_text()
    assert not (real_model / "scenarios" / "base" / "outputs").exists()

    add_cell(real_model / "notebooks" / "prep" / "preparation.ipynb", "%cd /data\n!ls")
    build = run_task(real_model, "build", "--tag", "refused", timeout=900)

    assert build.returncode == 1
    assert "RUN cd \"${LAMBDA_TASK_ROOT}\" && python -m quetzal_deploy.runtime.convert" in build.stderr
    assert ("notebooks/prep/preparation.ipynb, cell 8, line 1: `%cd /data` is IPython syntax a "
            "script cannot run. Fix: use os.chdir") in build.stderr
    assert "cell 8, line 2: `!ls`" in build.stderr and "Fix the notebook(s)" in build.stderr
    assert "Traceback" not in build.stderr
