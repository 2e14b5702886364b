"""`invoke doctor` in a baked repo against moto server: every check passes, or fails with its fix."""

import json
import os
import sys
import uuid

import pytest

from fixtures.tasks import run_task

MODEL = "quetzal-test"
NO_DOCKER = "unix:///nonexistent/docker.sock"


def lines_of(done):
    """{check name: the ✓/✗ line}, from the report."""
    return {line.split()[1]: line for line in done.stdout.splitlines() if line[:1] in "✓✗"}


def bare_path(tmp_path):
    """A PATH holding only this Python (no terraform)."""
    return os.pathsep.join([os.path.dirname(sys.executable), str(tmp_path / "bin")])


def create_stack(boto, architecture="x86_64", tag="initial"):
    """What `invoke infra` and `invoke push --initial` leave behind (the image URI is not pulled)."""
    boto.client("s3").create_bucket(Bucket=MODEL,
                                    CreateBucketConfiguration={"LocationConstraint": "ca-central-1"})
    repo = boto.client("ecr").create_repository(repositoryName=MODEL)["repository"]["repositoryUri"]
    role = boto.client("iam").create_role(RoleName=f"{MODEL}-lambda", AssumeRolePolicyDocument="{}")
    boto.client("lambda").create_function(FunctionName=MODEL, PackageType="Image", Role=role["Role"]["Arn"],
                                          Architectures=[architecture], Code={"ImageUri": f"{repo}:{tag}"})
    boto.client("stepfunctions").create_state_machine(
        name=MODEL, roleArn=role["Role"]["Arn"],
        definition=json.dumps({"StartAt": "a", "States": {"a": {"Type": "Pass", "End": True}}}))


def test_empty_account_fails_each_missing_part_with_its_fix(baked_repo, boto, tmp_path):
    done = run_task(baked_repo, "doctor", env={"PATH": bare_path(tmp_path), "DOCKER_HOST": NO_DOCKER})

    assert done.returncode == 1
    checks = lines_of(done)
    account = boto.client("sts").get_caller_identity()["Account"]
    assert checks[".env"].startswith("✓") and checks["region"].startswith("✓")
    assert checks["credentials"].startswith("✓") and f"account {account}" in checks["credentials"]
    for name in ("bucket", "ECR", "Lambda", "state", "Docker", "terraform"):
        assert checks[name].startswith("✗"), checks[name]
    assert done.stdout.count("fix: run `invoke infra`") == 3
    assert "fix: install Terraform" in done.stdout and "fix: start Docker" in done.stdout
    assert "6 check(s) failed" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.docker
def test_ready_machine_and_account_pass_every_check(baked_repo, boto, docker_engine, tmp_path):
    """terraform is a stand-in executable on PATH (no binary here); Docker is the real daemon."""
    create_stack(boto)
    stand_in = tmp_path / "bin" / "terraform"
    stand_in.parent.mkdir()
    stand_in.write_text("#!/bin/sh\necho \"$@\" >> \"$0.calls\"\n")
    stand_in.chmod(0o755)

    done = run_task(baked_repo, "doctor", env={"PATH": bare_path(tmp_path)})

    assert done.returncode == 0, done.stdout + done.stderr
    checks = lines_of(done)
    assert len(checks) == 10 and all(line.startswith("✓") for line in checks.values()), done.stdout
    assert "x86_64 (image quetzal-test:initial is not on this machine)" in checks["architecture"]
    assert str(stand_in) in checks["terraform"]
    assert f"Docker {docker_engine.version()['Version']}" in checks["Docker"]
    assert "Everything is ready." in done.stdout


def test_missing_credentials_and_bad_region_are_reported(baked_repo, aws, tmp_path):
    env = {"PATH": bare_path(tmp_path), "DOCKER_HOST": NO_DOCKER, "AWS_ACCESS_KEY_ID": "",
           "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": ""}
    done = run_task(baked_repo, "doctor", "--region", "mars-north-1", env=env)

    assert done.returncode == 1
    checks = lines_of(done)
    assert checks["region"].startswith("✗ region") and "mars-north-1" in checks["region"]
    assert checks["credentials"].startswith("✗") and "No AWS credentials found" in checks["credentials"]
    assert "bucket" not in checks, "resources cannot be checked without credentials"


def test_missing_env_is_the_first_failure(baked_repo, aws, tmp_path):
    (baked_repo / ".env").unlink()
    done = run_task(baked_repo, "doctor", env={"PATH": bare_path(tmp_path), "DOCKER_HOST": NO_DOCKER})

    assert done.returncode == 1
    checks = lines_of(done)
    assert list(checks) == [".env", "Docker", "terraform"]
    assert "No .env found" in checks[".env"]


def test_function_on_another_architecture_than_env_is_refused_with_the_fix(baked_repo, boto, tmp_path):
    create_stack(boto, architecture="arm64")
    done = run_task(baked_repo, "doctor", env={"PATH": bare_path(tmp_path), "DOCKER_HOST": NO_DOCKER})
    line = lines_of(done)["architecture"]
    assert line.startswith("✗") and "runs on arm64, LAMBDA_ARCHITECTURE is x86_64" in line
    assert "fix: set LAMBDA_ARCHITECTURE=arm64 in .env, or run `invoke infra`" in done.stdout


@pytest.mark.docker
def test_local_image_of_the_deployed_tag_on_another_architecture_is_refused(
        baked_repo, boto, docker_engine, lambda_base_image, tmp_path):
    """The function runs arm64 (as .env says) but the image of its tag here is x86_64."""
    tag = f"doctor-{uuid.uuid4().hex[:8]}"
    env = baked_repo / ".env"
    env.write_text(env.read_text().replace("LAMBDA_ARCHITECTURE=x86_64", "LAMBDA_ARCHITECTURE=arm64"))
    create_stack(boto, architecture="arm64", tag=tag)
    docker_engine.images.get(lambda_base_image).tag(MODEL, tag)
    try:
        done = run_task(baked_repo, "doctor", env={"PATH": bare_path(tmp_path)})
    finally:
        docker_engine.images.remove(f"{MODEL}:{tag}", noprune=True)
    line = lines_of(done)["architecture"]
    assert line.startswith("✗")
    assert f"Image {MODEL}:{tag} is built for x86_64 but Lambda function {MODEL} runs on arm64" in line
    assert done.returncode == 1
