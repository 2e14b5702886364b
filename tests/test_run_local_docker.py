"""``invoke run --local --docker`` on a real Docker engine: each Task runs in the model's image
(built on the stand-in Lambda base image) behind its Lambda emulator, with no AWS account."""

import json
import re

import pytest
from test_fargate_steps import fargate_task
from test_run_local import invoke, lambda_task, run_folder, step_payload, tree_hash, write_notebook
from test_run_local_limits import set_env

pytestmark = [pytest.mark.xdist_group("docker"), pytest.mark.docker, pytest.mark.slow]


def test_pipeline_runs_in_the_image_and_a_failing_step_reports_its_traceback(
        baked_repo, tmp_path, docker_engine, lambda_base_image, monkeypatch):
    monkeypatch.setenv("QUETZAL_BASE_IMAGE", lambda_base_image)
    before = tree_hash(baked_repo / "scenarios" / "base")

    done = invoke(baked_repo, tmp_path, "run", "--local", "--docker", "base")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "Built quetzal-test:local" in done.stdout
    assert "preparation | START RequestId" in done.stdout  # the emulator's own log lines
    # the handler's import (Lambda's init; the emulator's first invocation) started the warm process
    assert "preparation | [quetzal] warm start:" in done.stdout, done.stdout
    scenario = run_folder(baked_repo) / "bucket" / "base"
    for step in ("preparation", "assignment"):
        assert (scenario / "outputs" / f"{step}_summary.csv").is_file()
        assert "wrote 3 layer(s) to /tmp/outputs" in (scenario / "logs" / f"{step}.txt").read_text()
    assert json.loads((scenario / "info.json").read_text())["model_tag"] == "local"
    assert tree_hash(baked_repo / "scenarios" / "base") == before

    write_notebook(baked_repo, "broken", 'raise ValueError("the demand matrix is empty")\n')
    definition = json.loads((baked_repo / "step-functions.json").read_text())
    definition["States"]["assignment"].pop("End")
    definition["States"]["assignment"]["Next"] = "broken"
    definition["States"]["broken"] = lambda_task(step_payload("broken"), End=True)
    (baked_repo / "step-functions.json").write_text(json.dumps(definition))
    for old in (baked_repo / ".quetzal" / "runs").iterdir():
        old.rename(tmp_path / old.name)

    failed = invoke(baked_repo, tmp_path, "run", "--local", "--docker", "base")

    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "Failed state: broken" in failed.stdout and "Error: NotebookError" in failed.stdout
    assert "ValueError: the demand matrix is empty" in failed.stdout
    assert any(line.split()[:2] == ["broken", "failed"] for line in failed.stdout.splitlines())
    assert (run_folder(baked_repo) / "bucket" / "base" / "logs" / "broken.txt").is_file()


def test_docker_without_local_is_refused(baked_repo, tmp_path):
    done = invoke(baked_repo, tmp_path, "run", "--docker", "base")
    assert done.returncode == 2 and "add --local" in done.stderr


BIG_STEP = """block = bytearray(300 * 2**20)  # 300 MB held while the step runs
for offset in range(0, len(block), 4096):
    block[offset] = 1
(outputs / "big.bin").write_bytes(bytes(80 * 2**20))  # 80 MB left in the working folder
print("held", len(block))
"""


def test_docker_steps_report_peak_memory_and_tmp_measured_in_the_container(
        baked_repo, tmp_path, docker_engine, lambda_base_image, monkeypatch):
    """Each Lambda step runs in a fresh container: the table's memory and /tmp come from it."""
    monkeypatch.setenv("QUETZAL_BASE_IMAGE", lambda_base_image)
    write_notebook(baked_repo, "big", BIG_STEP)
    (baked_repo / "step-functions.json").write_text(json.dumps(
        {"StartAt": "big", "States": {"big": lambda_task(step_payload("big"), End=True)}}))

    done = invoke(baked_repo, tmp_path, "run", "--local", "--docker", "base")

    assert done.returncode == 0, done.stdout + done.stderr
    (row,) = [line.split("  ") for line in done.stdout.splitlines() if line.startswith("big ")]
    cells = [cell.strip() for cell in row if cell.strip()]
    memory, tmp = cells[3], cells[4]
    assert memory.endswith(" MB") and float(memory.split()[0]) >= 300, cells
    assert tmp.endswith(" MB") and float(tmp.split()[0]) >= 80, cells
    # the step's resident memory, as without --docker: not the container's cgroup peak, which adds
    # the page cache of the 80 MB it wrote and of their copy to the bucket
    assert float(memory.split()[0]) < 300 + 80, cells
    logged = [line for line in done.stdout.splitlines() if "big | [quetzal] figures: " in line]
    assert len(logged) == 1, done.stdout


OVER_LAMBDA = {  # what each step uses (.env: LAMBDA_MEMORY_SIZE=256, LAMBDA_STORAGE_SIZE=512)
    "hungry": ('ballast = b"\\1" * (600 * 2**20)  # touched: resident\nprint("held", len(ballast))\n',
               "Runtime.OutOfMemory", "LAMBDA_MEMORY_SIZE=256 MB"),
    "filler": ('with open(Path(argv["training_folder"]) / "inputs" / "big.bin", "wb") as big:\n'
               '    big.truncate(700 * 2**20)  # sparse: 700 MB counted, nothing written nor uploaded\n',
               "NotebookError", "No space left on device"),
}


@pytest.mark.parametrize("step", sorted(OVER_LAMBDA))
def test_docker_lambda_step_over_its_limits_fails_as_lambda_would(
        baked_repo, tmp_path, docker_engine, lambda_base_image, monkeypatch, step):
    """Measured in its container by the handler, a Lambda step over LAMBDA_MEMORY_SIZE or
    LAMBDA_STORAGE_SIZE fails with the error a run without --docker gives (the emulator has no
    memory limit nor a sized /tmp: the step runs to its end first, then the runner checks it)."""
    monkeypatch.setenv("QUETZAL_BASE_IMAGE", lambda_base_image)
    body, error, message = OVER_LAMBDA[step]
    set_env(baked_repo, LAMBDA_MEMORY_SIZE=256, LAMBDA_STORAGE_SIZE=512)
    write_notebook(baked_repo, step, body)
    (baked_repo / "step-functions.json").write_text(json.dumps(
        {"StartAt": step, "States": {step: lambda_task(step_payload(step), End=True)}}))

    done = invoke(baked_repo, tmp_path, "run", "--local", "--docker", "base")

    assert done.returncode == 1, done.stdout + done.stderr
    assert f"Error: {error}" in done.stdout and message in done.stdout, done.stdout
    assert "the Lambda has" in done.stdout
    assert any(line.split()[:2] == [step, "failed"] for line in done.stdout.splitlines()), done.stdout


OVER_FARGATE = {  # what each step uses, the .env that makes it too much, the error ECS's would be
    "hungry": ('ballast = b"\\1" * (600 * 2**20)  # touched: resident\nprint("held", len(ballast))\n',
               {"FARGATE_MEMORY": 512}, "Runtime.OutOfMemory", "FARGATE_MEMORY=512 MB"),
    "filler": ('with open(Path(argv["training_folder"]) / "inputs" / "big.bin", "wb") as big:\n'
               '    big.truncate(22 * 2**30)  # sparse: 22 GiB counted, nothing written nor uploaded\n',
               {}, "NotebookError", "No space left on device"),
}


def test_docker_fargate_steps_report_figures_measured_in_their_container(
        baked_repo, tmp_path, docker_engine, lambda_base_image, monkeypatch):
    """A Fargate step's container exits with the step: the entry point measures it inside."""
    monkeypatch.setenv("QUETZAL_BASE_IMAGE", lambda_base_image)
    write_notebook(baked_repo, "big", BIG_STEP)
    (baked_repo / "step-functions.json").write_text(json.dumps(
        {"StartAt": "big", "States": {"big": fargate_task(step_payload("big"), TimeoutSeconds=600,
                                                          End=True)}}))

    done = invoke(baked_repo, tmp_path, "run", "--local", "--docker", "base")

    assert done.returncode == 0, done.stdout + done.stderr
    (row,) = [line.split("  ") for line in done.stdout.splitlines() if line.startswith("big ")]
    cells = [cell.strip() for cell in row if cell.strip()]
    assert "Fargate" in cells, cells
    memory, tmp = cells[3], cells[4]
    assert memory.endswith(" MB") and float(memory.split()[0]) >= 300, cells
    assert tmp.endswith(" MB") and float(tmp.split()[0]) >= 80, cells
    report = (run_folder(baked_repo) / "report.html").read_text()
    html_row = report.split('data-step="big"')[1].split("</tr>")[0]  # gauges against the task's sizes
    assert re.search(r">\d+ of 16384 MB", html_row) and re.search(r">\d+ of 21504 MB", html_row), html_row


@pytest.mark.parametrize("step", sorted(OVER_FARGATE))
def test_docker_fargate_step_over_its_task_fails_as_ecs_would(
        baked_repo, tmp_path, docker_engine, lambda_base_image, monkeypatch, step):
    """Measured in its container, a Fargate step over the task's memory or ephemeral storage fails
    with the error a run without --docker gives (the step runs to its end first: see container.py)."""
    monkeypatch.setenv("QUETZAL_BASE_IMAGE", lambda_base_image)
    body, env, error, message = OVER_FARGATE[step]
    set_env(baked_repo, **env)
    write_notebook(baked_repo, step, body)
    (baked_repo / "step-functions.json").write_text(json.dumps(
        {"StartAt": step, "States": {step: fargate_task(step_payload(step), TimeoutSeconds=600, End=True)}}))

    done = invoke(baked_repo, tmp_path, "run", "--local", "--docker", "base")

    assert done.returncode == 1, done.stdout + done.stderr
    assert f"Error: {error}" in done.stdout and message in done.stdout, done.stdout
    assert "Fargate task" in done.stdout
    assert any(line.split()[:2] == [step, "failed"] for line in done.stdout.splitlines()), done.stdout
