"""`invoke infra` / `deploy` / `destroy` in a baked repo, against moto and a stand-in terraform.

The real terraform runs in tests/test_infra_terraform.py (apply, deploy, destroy, shared state).
What only a stand-in can show stays here: the exact argument lists, a terraform that fails
half-way through a flow, plan answers on demand, and what AWS holds at the moment each terraform
command starts. The stand-in (tests/support/fake_terraform/terraform) is a small Python script put
first on PATH: it records its arguments and working folder, keeps workspaces the way the local
backend does, writes and requires plan files, and fails on demand. AWS is moto in server mode;
its state is checked with boto3, independently of the code under test.
"""

import json
import os
import sys
import time
from pathlib import Path

import pytest

from fixtures.tasks import run_task

MODEL = "quetzal-test"
REGION = "ca-central-1"
STAND_IN = Path(__file__).parent / "support" / "fake_terraform" / "terraform"
VAR_FILE = f"-var-file={MODEL}.tfvars"
PLAN = f"{MODEL}.tfplan"
CONFIG_BUCKET = "quetzal-config"  # the default bake's shared config bucket
STATE_BUCKET = "quetzal-terraform-state"  # the default bake's shared Terraform state bucket
INIT = ["init", "-input=false", "-backend-config=backend.hcl"]
ACCESS_KEY = "cognito_group_access.json"


class FakeTerraform:
    """The stand-in on PATH and the calls it recorded."""

    def __init__(self, log: Path):
        self.log = log

    def calls(self) -> list[dict]:
        if not self.log.is_file():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def commands(self) -> list[list[str]]:
        return [call["args"] for call in self.calls()]

    def reset(self) -> None:
        self.log.unlink(missing_ok=True)


@pytest.fixture
def fake_terraform(tmp_path, monkeypatch) -> FakeTerraform:
    folder = tmp_path / "fake-bin"
    folder.mkdir()
    script = folder / "terraform"
    # Run the stand-in with this interpreter (it needs boto3 to observe moto).
    body = STAND_IN.read_text(encoding="utf-8").split("\n", 1)[1]
    script.write_text(f"#!{sys.executable}\n{body}", encoding="utf-8")
    script.chmod(0o755)
    log = tmp_path / "terraform-calls.jsonl"
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_TERRAFORM_LOG", str(log))
    for key in ("FAKE_TERRAFORM_FAIL", "FAKE_TERRAFORM_PLAN_EXIT",
                "FAKE_TERRAFORM_OBSERVE_BUCKET", "FAKE_TERRAFORM_OBSERVE_REPOSITORY", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    return FakeTerraform(log)


def invoke(repo: Path, *args: str, answer: str = "", **env: str):
    """`invoke <args>` in the repo; ``answer`` is typed on standard input ("" = closed input)."""
    return run_task(repo, *args, env=env, input=answer)


def manifest(number: int) -> str:
    config = {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1,
              "digest": f"sha256:{number:064x}"}
    return json.dumps({"schemaVersion": 2, "config": config, "layers": [],
                       "mediaType": "application/vnd.docker.distribution.manifest.v2+json"})


def push_images(boto, tags: list[str]) -> None:
    """Images in the model's ECR repository, pushed in ``tags`` order (one second apart)."""
    ecr = boto.client("ecr")
    ecr.create_repository(repositoryName=MODEL)
    for number, tag in enumerate(tags):
        if number:
            time.sleep(1.1)  # moto stamps pushes to the second
        ecr.put_image(repositoryName=MODEL, imageManifest=manifest(number + 1), imageTag=tag)


def env_variables(**changed: str) -> list[str]:
    """The -var arguments carrying .env's values (the default bake's, plus ``changed``)."""
    values = {"aws_region": REGION, "model_name": MODEL, "lambda_memory_size": "4016",
              "lambda_timeout": "300", "lambda_storage_size": "4016", "lambda_architecture": "x86_64",
              "auth_function_name": "", "cognito_identity_pool_id": "",
              "config_bucket_name": "quetzal-config", **changed}
    return [f"-var={name}={value}" for name, value in values.items()]


def bootstrap_plan(*variables: str, **changed: str) -> list[str]:
    return ["plan", "-input=false", "-detailed-exitcode", VAR_FILE, *env_variables(**changed),
            *variables, f"-out={PLAN}"]


def first_run() -> list[list[str]]:
    """A model's first apply: new workspace, everything but the function (no image yet)."""
    return [
        INIT,
        ["workspace", "select", MODEL],
        ["workspace", "new", MODEL],
        bootstrap_plan("-var=create_lambda=false"),
        ["apply", "-input=false", PLAN],
        ["output", "-json"],
    ]


def test_first_infra_creates_the_workspace_and_everything_but_the_function(
        aws, baked_repo, fake_terraform):
    done = invoke(baked_repo, "infra", "--yes")
    assert done.returncode == 0, done.stderr
    assert fake_terraform.commands() == first_run()
    assert {call["cwd"] for call in fake_terraform.calls()} == {str(baked_repo / "infra")}
    assert "invoke deploy" in done.stdout
    assert not (baked_repo / "infra" / PLAN).exists()


def test_infra_selects_the_workspace_and_creates_the_function_from_the_newest_image(
        aws, boto, baked_repo, fake_terraform):
    push_images(boto, ["older", "newer"])
    assert invoke(baked_repo, "infra", "--yes").returncode == 0
    fake_terraform.reset()
    done = invoke(baked_repo, "infra", "--yes")
    assert done.returncode == 0, done.stderr
    assert fake_terraform.commands() == [
        INIT,
        ["workspace", "select", MODEL],
        bootstrap_plan("-var=image_tag=newer"),
        ["apply", "-input=false", PLAN],
        ["output", "-json"],
    ]


def test_infra_refuses_to_drop_a_function_whose_images_are_gone(aws, boto, baked_repo, fake_terraform):
    iam = boto.client("iam")
    role = iam.create_role(RoleName=f"{MODEL}-lambda", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    boto.client("lambda").create_function(
        FunctionName=MODEL, Role=role, PackageType="Image",
        Code={"ImageUri": f"123456789012.dkr.ecr.{REGION}.amazonaws.com/{MODEL}:gone"})
    done = invoke(baked_repo, "infra", "--yes")
    assert done.returncode == 1
    assert "invoke push" in done.stderr
    assert not any(args[0] in {"plan", "apply"} for args in fake_terraform.commands())


@pytest.mark.parametrize(("answer", "applied"), [("y\n", True), ("yes\n", True), ("n\n", False),
                                                 ("\n", False)])
def test_infra_asks_before_applying(aws, baked_repo, fake_terraform, answer, applied):
    done = invoke(baked_repo, "infra", answer=answer)
    assert "Apply this plan to quetzal-test in ca-central-1? [y/N]" in done.stdout
    assert (done.returncode == 0) is applied, done.stderr
    assert any(args[0] == "apply" for args in fake_terraform.commands()) is applied
    if not applied:
        assert "Cancelled: nothing was applied" in done.stderr
    assert not (baked_repo / "infra" / PLAN).exists()


def test_infra_without_an_answer_fails_clearly(aws, baked_repo, fake_terraform):
    done = invoke(baked_repo, "infra", answer="")
    assert done.returncode == 1
    assert "--yes" in done.stderr
    assert "apply" not in [args[0] for args in fake_terraform.commands()]


def test_plan_only_applies_nothing_and_keeps_the_plan(aws, baked_repo, fake_terraform):
    done = invoke(baked_repo, "infra", "--plan-only")
    assert done.returncode == 0, done.stderr
    assert [args[0] for args in fake_terraform.commands()] == ["init", "workspace", "workspace", "plan"]
    assert (baked_repo / "infra" / PLAN).is_file()


def test_no_changes_means_no_question_and_no_apply(aws, baked_repo, fake_terraform):
    done = invoke(baked_repo, "infra", FAKE_TERRAFORM_PLAN_EXIT="0")
    assert done.returncode == 0, done.stderr
    assert "up to date" in done.stdout
    assert "apply" not in [args[0] for args in fake_terraform.commands()]


def test_terraform_uses_the_profile_of_the_repo_or_the_command_line(aws, baked_repo, fake_terraform):
    """AWS_PROFILE from .env.local, or --profile, reaches terraform (and boto3)."""
    config = Path(os.environ["AWS_CONFIG_FILE"])
    config.write_text("[profile modeller]\nregion = ca-central-1\n[profile other]\nregion = ca-central-1\n")
    Path(os.environ["AWS_SHARED_CREDENTIALS_FILE"]).write_text(
        "[modeller]\naws_access_key_id = a\naws_secret_access_key = b\n"
        "[other]\naws_access_key_id = a\naws_secret_access_key = b\n")
    (baked_repo / ".env.local").write_text("AWS_PROFILE=modeller\n")
    assert invoke(baked_repo, "infra", "--yes").returncode == 0
    assert {call["aws_profile"] for call in fake_terraform.calls()} == {"modeller"}
    fake_terraform.reset()
    assert invoke(baked_repo, "infra", "--yes", "--profile", "other").returncode == 0
    assert {call["aws_profile"] for call in fake_terraform.calls()} == {"other"}


def test_a_changed_env_value_reaches_terraform_and_the_local_runs(aws, baked_repo, fake_terraform):
    """.env is the one source: Terraform gets its values as -var, over the .tfvars."""
    from quetzal_deploy.aws import Aws
    from quetzal_deploy.local.lambda_emulator import lambda_environment
    from quetzal_deploy.settings import load_settings

    env = baked_repo / ".env"
    env.write_text(env.read_text().replace("LAMBDA_MEMORY_SIZE=4016", "LAMBDA_MEMORY_SIZE=2048")
                   .replace("LAMBDA_ARCHITECTURE=x86_64", "LAMBDA_ARCHITECTURE=arm64"))
    tfvars = baked_repo / "infra" / f"{MODEL}.tfvars"
    tfvars.write_text(tfvars.read_text() + "lambda_memory_size = 128\n")  # a stray second copy loses
    assert invoke(baked_repo, "infra", "--yes").returncode == 0
    plan = next(args for args in fake_terraform.commands() if args[0] == "plan")
    assert plan == bootstrap_plan("-var=create_lambda=false", lambda_memory_size="2048",
                                  lambda_architecture="arm64")
    assert plan.index("-var=lambda_memory_size=2048") > plan.index(VAR_FILE)  # later -var wins
    settings = load_settings(baked_repo)
    assert lambda_environment(settings, Aws(settings))["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "2048"
    names = (settings.bucket, settings.function_name, settings.ecr_repo, settings.state_machine)
    assert names == (MODEL,) * 4


def test_fargate_network_in_env_creates_the_modules_fargate_part(aws, baked_repo, fake_terraform):
    """FARGATE_SUBNETS switches the module's Fargate part on; its sizes come from .env too."""
    env = baked_repo / ".env"
    env.write_text(env.read_text().replace("FARGATE_SUBNETS=\n", "FARGATE_SUBNETS=subnet-0a,subnet-0b\n")
                   .replace("FARGATE_SECURITY_GROUPS=\n", "FARGATE_SECURITY_GROUPS=sg-01\n")
                   .replace("FARGATE_MEMORY=16384", "FARGATE_MEMORY=30720"))
    assert invoke(baked_repo, "infra", "--yes").returncode == 0
    plan = next(args for args in fake_terraform.commands() if args[0] == "plan")
    fargate = ["-var=create_fargate=true", "-var=fargate_cluster_name=", "-var=fargate_cpu=4096",
               "-var=fargate_memory=30720", "-var=fargate_ephemeral_storage=21",
               '-var=fargate_subnet_ids=["subnet-0a", "subnet-0b"]',
               '-var=fargate_security_group_ids=["sg-01"]']
    assert plan == bootstrap_plan(*fargate, "-var=create_lambda=false")


def test_outputs_read_back_after_apply_must_name_resources_after_the_model(
        aws, baked_repo, fake_terraform, monkeypatch):
    monkeypatch.setenv("FAKE_TERRAFORM_OUTPUTS", json.dumps({
        "bucket_name": {"value": f"{MODEL}-renamed"},
        "state_machine_arn": {"value": f"arn:aws:states:{REGION}:123456789012:stateMachine:{MODEL}"}}))
    done = invoke(baked_repo, "infra", "--yes")
    assert done.returncode == 1
    assert f"bucket_name = {MODEL}-renamed" in done.stderr and "state_machine_arn" not in done.stderr
    assert f"MODEL_NAME={MODEL}" in done.stderr and "infra/main.tf" in done.stderr


def test_shared_state_bucket_is_created_once_versioned_encrypted_and_private(
        aws, boto, baked_repo, fake_terraform):
    assert invoke(baked_repo, "infra", "--yes").returncode == 0
    s3 = boto.client("s3")
    assert s3.get_bucket_versioning(Bucket=STATE_BUCKET)["Status"] == "Enabled"
    (rule,) = s3.get_bucket_encryption(Bucket=STATE_BUCKET)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    blocked = s3.get_public_access_block(Bucket=STATE_BUCKET)["PublicAccessBlockConfiguration"]
    assert all(blocked.values()) and len(blocked) == 4
    assert s3.get_bucket_location(Bucket=STATE_BUCKET)["LocationConstraint"] == REGION
    again = invoke(baked_repo, "infra", "--yes")
    assert again.returncode == 0 and "Created the Terraform state bucket" not in again.stdout
    assert [args for args in fake_terraform.commands() if args[0] == "init"] == [INIT, INIT]


def test_local_state_needs_no_bucket_and_no_backend_settings(aws, boto, baked_repo, fake_terraform):
    (baked_repo / "infra" / "backend.hcl").unlink()  # what a bake with terraform_state_bucket=local has
    assert invoke(baked_repo, "infra", "--yes").returncode == 0
    assert fake_terraform.commands()[0] == ["init", "-input=false"]
    assert boto.client("s3").list_buckets()["Buckets"] == []


def test_destroy_without_the_state_bucket_has_nothing_for_terraform(aws, baked_repo, fake_terraform):
    done = invoke(baked_repo, "destroy", "--confirm-name", MODEL)
    assert done.returncode == 0, done.stderr
    assert f"No Terraform state bucket {STATE_BUCKET}: nothing left for Terraform to destroy" in done.stdout
    assert fake_terraform.commands() == []


@pytest.mark.parametrize("failing", ["init", "workspace new", "plan", "apply"])
def test_a_failing_terraform_step_stops_the_flow_with_its_message(
        aws, baked_repo, fake_terraform, failing):
    done = invoke(baked_repo, "infra", "--yes", FAKE_TERRAFORM_FAIL=failing)
    assert done.returncode == 1
    assert f"simulated failure of terraform {failing}" in done.stderr
    assert f"ERROR: `terraform {failing}" in done.stderr
    commands = [" ".join(args[:2]) if args[0] == "workspace" else args[0]
                for args in fake_terraform.commands()]
    assert commands[-1] == failing, "terraform ran again after a failed step"


def test_missing_terraform_is_a_clear_error(aws, baked_repo, tmp_path):
    empty = tmp_path / "empty-path"
    empty.mkdir()
    done = invoke(baked_repo, "infra", "--yes", PATH=str(empty))
    assert done.returncode == 1
    assert "terraform was not found on PATH" in done.stderr
    assert "Install Terraform" in done.stderr


def fill_bucket(boto, markers: int = 3) -> int:
    """A versioned bucket with several versions per key and ``markers`` delete markers."""
    s3 = boto.client("s3")
    s3.create_bucket(Bucket=MODEL, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_versioning(Bucket=MODEL, VersioningConfiguration={"Status": "Enabled"})
    for version in range(3):
        for key in ("base/inputs/params.json", "base/info.json", "copy/outputs/a.geojson"):
            s3.put_object(Bucket=MODEL, Key=key, Body=f"{version}".encode())
    # Deleting a key again adds a delete marker each time: many of them, cheaply.
    for start in range(0, markers, 1000):
        repeats = min(1000, markers - start)
        s3.delete_objects(Bucket=MODEL, Delete={
            "Objects": [{"Key": "copy/outputs/a.geojson"}] * repeats, "Quiet": True})
    return count_versions(boto)


def count_versions(boto) -> int:
    pages = boto.client("s3").get_paginator("list_object_versions").paginate(Bucket=MODEL)
    return sum(len(p.get("Versions", [])) + len(p.get("DeleteMarkers", [])) for p in pages)


def count_images(boto) -> int:
    return len(boto.client("ecr").list_images(repositoryName=MODEL)["imageIds"])


def test_destroy_needs_the_model_name_typed_back(aws, boto, baked_repo, fake_terraform):
    versions = fill_bucket(boto)
    for answer in ("quetzal\n", ""):
        done = invoke(baked_repo, "destroy", answer=answer)
        assert done.returncode == 1
    assert "nothing was deleted" in done.stderr or "--confirm-name" in done.stderr
    wrong = invoke(baked_repo, "destroy", "--confirm-name", "other-model")
    assert wrong.returncode == 1 and "nothing was deleted" in wrong.stderr
    assert count_versions(boto) == versions
    assert fake_terraform.commands() == []


def test_destroy_empties_bucket_and_repository_before_terraform_then_drops_the_workspace(
        aws, boto, baked_repo, fake_terraform, monkeypatch):
    assert invoke(baked_repo, "infra", "--yes").returncode == 0
    fake_terraform.reset()
    assert fill_bucket(boto, markers=1001) > 1000  # more than one listing page
    push_images(boto, ["v1", "v2"])
    s3 = boto.client("s3")
    s3.create_bucket(Bucket=CONFIG_BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(Bucket=CONFIG_BUCKET, Key=ACCESS_KEY,
                  Body=json.dumps({"planners": [MODEL, "quetzal-lyon"], "admins": [MODEL]}))
    monkeypatch.setenv("FAKE_TERRAFORM_OBSERVE_BUCKET", MODEL)
    monkeypatch.setenv("FAKE_TERRAFORM_OBSERVE_REPOSITORY", MODEL)
    done = invoke(baked_repo, "destroy", answer=f"{MODEL}\n")
    assert done.returncode == 0, done.stderr
    assert "Type the model name (quetzal-test) to confirm" in done.stdout
    calls = fake_terraform.calls()
    assert [call["args"] for call in calls] == [
        INIT,
        ["workspace", "select", MODEL],
        ["plan", "-destroy", "-input=false", VAR_FILE, *env_variables(), f"-out={PLAN}"],
        ["destroy", "-input=false", "-auto-approve", VAR_FILE, *env_variables()],
        ["workspace", "select", "default"],
        ["workspace", "delete", MODEL],
    ]
    checks, (destroy, *_) = calls[:3], calls[3:]  # the fake reads one listing page (1,000)
    assert all(call["bucket_versions"] == 1000 and call["repository_images"] == 2 for call in checks), calls
    assert destroy["bucket_versions"] == 0 and destroy["repository_images"] == 0, calls
    assert f"{MODEL} is destroyed." in done.stdout
    assert not (baked_repo / "infra" / PLAN).exists()
    assert not (baked_repo / "infra" / "terraform.tfstate.d" / MODEL).exists()
    listing = json.loads(s3.get_object(Bucket=CONFIG_BUCKET, Key=ACCESS_KEY)["Body"].read())
    assert listing == {"planners": ["quetzal-lyon"]}


@pytest.mark.parametrize("missing", ["terraform", "credentials", "init", "plan"])
def test_destroy_checks_every_prerequisite_before_deleting_anything(aws, boto, baked_repo, fake_terraform,
                                                                    tmp_path, missing):
    """No terraform on PATH, no credentials, a state that cannot be read, a destroy that cannot be
    planned: each stops destroy before the first object version or image is deleted, and it never
    says the model is destroyed."""
    assert invoke(baked_repo, "infra", "--yes").returncode == 0
    versions = fill_bucket(boto)
    push_images(boto, ["v1"])
    fake_terraform.reset()
    env = {"terraform": {"PATH": str(tmp_path)},
           "credentials": {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": ""},
           "init": {"FAKE_TERRAFORM_FAIL": "init"}, "plan": {"FAKE_TERRAFORM_FAIL": "plan"}}[missing]
    done = invoke(baked_repo, "destroy", "--confirm-name", MODEL, **env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "destroyed" not in done.stdout and "Deleted" not in done.stdout, done.stdout
    assert {"terraform": "terraform was not found on PATH", "credentials": "credentials",
            "init": "simulated failure of terraform init",
            "plan": "simulated failure of terraform plan"}[missing] in done.stderr.lower() + done.stderr
    assert count_versions(boto) == versions and count_images(boto) == 1
    assert "destroy" not in [args[0] for args in fake_terraform.commands()]


def test_destroy_refuses_a_bucket_terraform_has_no_state_for(aws, boto, baked_repo, fake_terraform):
    """The bucket exists but Terraform has no workspace for it (state lost, another backend):
    emptying it would leave an empty bucket behind and no way to delete it; refused, nothing deleted."""
    versions = fill_bucket(boto)
    boto.client("s3").create_bucket(Bucket=STATE_BUCKET,
                                    CreateBucketConfiguration={"LocationConstraint": REGION})
    done = invoke(baked_repo, "destroy", "--confirm-name", MODEL)
    assert done.returncode == 1 and "has no state" in done.stderr and "Nothing was deleted" in done.stderr
    assert count_versions(boto) == versions


def test_destroy_is_safe_to_rerun_after_a_failure(aws, boto, baked_repo, fake_terraform):
    assert invoke(baked_repo, "infra", "--yes").returncode == 0
    fill_bucket(boto)
    failed = invoke(baked_repo, "destroy", "--confirm-name", MODEL, FAKE_TERRAFORM_FAIL="destroy")
    assert failed.returncode == 1
    assert "simulated failure of terraform destroy" in failed.stderr
    assert ["workspace", "delete", MODEL] not in fake_terraform.commands()

    # What the real `terraform destroy` would then remove: the bucket itself.
    boto.client("s3").delete_bucket(Bucket=MODEL)
    fake_terraform.reset()
    again = invoke(baked_repo, "destroy", "--confirm-name", MODEL)
    assert again.returncode == 0, again.stderr
    assert ["workspace", "delete", MODEL] in fake_terraform.commands()

    fake_terraform.reset()
    third = invoke(baked_repo, "destroy", "--confirm-name", MODEL)
    assert third.returncode == 0, third.stderr
    assert "nothing left for Terraform to destroy" in third.stdout
    assert [args[0] for args in fake_terraform.commands()] == ["init", "workspace"]
