"""``invoke run --local --docker`` on a real Docker engine: each Task runs in the model's image
(built on the stand-in Lambda base image) behind its Lambda emulator, with no AWS account."""

import json

import pytest
from test_run_local import invoke, lambda_task, run_folder, step_payload, tree_hash, write_notebook

pytestmark = [pytest.mark.xdist_group("docker"), pytest.mark.docker, pytest.mark.slow]


def test_pipeline_runs_in_the_image_and_a_failing_step_reports_its_traceback(
        baked_repo, tmp_path, docker_engine, lambda_base_image, monkeypatch):
    monkeypatch.setenv("QUETZAL_BASE_IMAGE", lambda_base_image)
    before = tree_hash(baked_repo / "scenarios" / "base")

    done = invoke(baked_repo, tmp_path, "run", "--local", "--docker", "base")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "Built quetzal-test:local" in done.stdout
    assert "preparation | START RequestId" in done.stdout  # the emulator's own log lines
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
