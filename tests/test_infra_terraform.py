"""`invoke infra`, `deploy` and `destroy` with the real terraform and AWS provider, on moto server.

Real Docker builds the image and pushes it to the local registry; ECR, Lambda, Step Functions
and S3 are moto's, checked with boto3 after each phase. Each test bakes its own model name so
images and tags never meet another test's. They run once, on the default bake.
"""

import json
import subprocess
import sys
import time
import uuid

import boto3
import pytest
from botocore.exceptions import ClientError

from fixtures.aws import REGION
from fixtures.bake import bake
from fixtures.tasks import run_task
from fixtures.terraform import write_emulator_override

pytestmark = [pytest.mark.terraform, pytest.mark.slow, pytest.mark.xdist_group("terraform")]
COLOUR = "\x1b["
STATE_BUCKET = "quetzal-terraform-state"  # the default bake's


@pytest.fixture
def model_repo(terraform_aws, tmp_path):
    """A fresh bake with a model name of its own, and the harness's provider override."""
    repo = bake(tmp_path, model_name=f"qtf-{uuid.uuid4().hex[:10]}")
    write_emulator_override(repo)
    return repo


def ok(done):
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-4000:]
    assert COLOUR not in done.stdout + done.stderr, "colour codes in output that is not a terminal"
    return done


def missing(call, *codes: str) -> bool:
    try:
        call()
    except ClientError as ex:
        return ex.response["Error"]["Code"] in codes
    return False


def stack_state(model: str) -> dict:
    """What of the model's stack exists in the emulated account."""
    session = boto3.Session(region_name=REGION)
    s3, ecr, functions = session.client("s3"), session.client("ecr"), session.client("lambda")
    machines = session.client("stepfunctions").list_state_machines()["stateMachines"]
    roles = session.client("iam").list_roles()["Roles"]
    groups = session.client("logs").describe_log_groups()["logGroups"]
    return {
        "bucket": not missing(lambda: s3.head_bucket(Bucket=model), "404", "NoSuchBucket"),
        "repository": not missing(lambda: ecr.describe_repositories(repositoryNames=[model]),
                                  "RepositoryNotFoundException"),
        "function": not missing(lambda: functions.get_function(FunctionName=model),
                                "ResourceNotFoundException"),
        "state machine": any(m["name"] == model for m in machines),
        "roles": sorted(r["RoleName"] for r in roles if r["RoleName"].startswith(model)),
        "log groups": sorted(g["logGroupName"] for g in groups if model in g["logGroupName"]),
    }


def in_order(text: str, *needles: str) -> None:
    position = 0
    for needle in needles:
        found = text.find(needle, position)
        assert found >= 0, f"{needle!r} missing (or out of order) in:\n{text[-6000:]}"
        position = found + len(needle)


@pytest.mark.docker
def test_infra_then_deploy_then_destroy(model_repo, docker_engine, lambda_base_image, registry):
    model, session = model_repo.name, boto3.Session(region_name=REGION)
    started = time.monotonic()

    infra = ok(run_task(model_repo, "infra", "--yes", timeout=900, input=""))
    assert "Apply complete! Resources: 18 added" in infra.stdout
    assert f"Created the Terraform state bucket {STATE_BUCKET}" in infra.stdout
    after_infra = stack_state(model)
    assert {key: after_infra[key] for key in ("bucket", "repository", "function", "state machine")} == {
        "bucket": True, "repository": True, "function": False, "state machine": True}
    assert after_infra["roles"] == [f"{model}-lambda", f"{model}-states"]
    iam = session.client("iam")
    (policy,) = iam.list_role_policies(RoleName=f"{model}-lambda")["PolicyNames"]
    granted = json.dumps(iam.get_role_policy(RoleName=f"{model}-lambda", PolicyName=policy)["PolicyDocument"])
    assert "s3:DeleteObjectVersion" in granted  # runtime/transfer.py deletes a version sent changing
    s3 = session.client("s3")
    assert s3.get_bucket_versioning(Bucket=model)["Status"] == "Enabled"
    assert s3.get_public_access_block(Bucket=model)["PublicAccessBlockConfiguration"]["BlockPublicAcls"]
    assert "infra/.terraform.lock.hcl records the provider versions" in infra.stdout
    ignored = subprocess.run(["git", "check-ignore", "-q", "infra/.terraform.lock.hcl"], cwd=model_repo)
    assert ignored.returncode == 1, ".terraform.lock.hcl must be committable"
    status = subprocess.run(["git", "status", "--porcelain", "--", "infra"], cwd=model_repo,
                            capture_output=True, text=True, check=True).stdout
    assert status.strip() == "?? infra/.terraform.lock.hcl", status  # the override is ignored

    env = {"QUETZAL_BASE_IMAGE": lambda_base_image, "QUETZAL_REGISTRY": registry}
    deploy = ok(run_task(model_repo, "deploy", "--yes", "--email", "modeller@example.com", env=env,
                         timeout=1200, input=""))
    in_order(deploy.stdout, "1/5", f"{model}: the stack is up to date, nothing to apply.", "2/5",
             "3/5 Terraform: Lambda function from image", "Apply complete! Resources: 1 added", "4/5",
             "5/5", f"{model} is deployed.")
    (image,) = session.client("ecr").describe_images(repositoryName=model)["imageDetails"]
    (tag,) = image["imageTags"]
    function = session.client("lambda").get_function(FunctionName=model)["Configuration"]
    assert function["PackageType"] == "Image" and function["MemorySize"] == 4016
    assert function["Architectures"] == ["x86_64"]
    assert session.client("lambda").get_function(FunctionName=model)["Code"]["ImageUri"].endswith(
        f"/{model}:{tag}")
    sfn = session.client("stepfunctions")
    (machine,) = [m for m in sfn.list_state_machines()["stateMachines"] if m["name"] == model]
    definition = sfn.describe_state_machine(stateMachineArn=machine["stateMachineArn"])["definition"]
    assert f":function:{model}" in definition and "notebooks/preparation.ipynb" in definition
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=model, Prefix="base/")["Contents"]]
    assert "base/inputs/params.json" in keys
    assert stack_state(model)["function"]

    destroy = ok(run_task(model_repo, "destroy", "--confirm-name", model, timeout=900, input=""))
    assert "Destroy complete! Resources: 19 destroyed" in destroy.stdout
    assert stack_state(model) == {"bucket": False, "repository": False, "function": False,
                                  "state machine": False, "roles": [], "log groups": []}
    state = boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=STATE_BUCKET, Prefix="models/")
    assert state.get("KeyCount") == 0, "the model's state is left in the state bucket"
    print(f"real terraform infra + deploy + destroy: {time.monotonic() - started:.0f} s")


def wait_for_apply_lock(lock_key: str, holder: subprocess.Popen) -> dict:
    """The lock file the S3 backend writes next to the state, once an apply holds it."""
    s3 = boto3.client("s3", region_name=REGION)
    while holder.poll() is None:
        try:
            lock = json.loads(s3.get_object(Bucket=STATE_BUCKET, Key=lock_key)["Body"].read())
        except ClientError:
            lock = {}
        if lock.get("Operation") == "OperationTypeApply":
            return lock
        time.sleep(0.2)
    pytest.fail(f"the first apply ended before its lock was seen: {holder.communicate()}")


def test_two_clones_share_the_state_and_never_apply_at_once(model_repo, tmp_path):
    """A teammate's clone of the same model, with the same S3 state (no local state at all).

    While the first clone's apply holds the lock (S3 conditional writes, ``use_lockfile``), the
    teammate's `invoke infra` stops at its plan; once the apply is done, the teammate's plan is
    empty. The comparison is made before the function exists: moto's GetFunction leaves out
    LoggingConfig, so any plan after the function exists shows a change on moto (never on AWS).
    """
    model = model_repo.name
    teammate = tmp_path / "teammate" / model
    subprocess.run(["git", "clone", "-q", str(model_repo), str(teammate)], check=True)
    write_emulator_override(teammate)
    first = subprocess.Popen([sys.executable, "-m", "invoke", "infra", "--yes"], cwd=model_repo,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        lock = wait_for_apply_lock(f"models/{model}/terraform.tfstate.tflock", first)
        blocked = run_task(teammate, "infra", "--yes", timeout=900, input="")
    finally:
        stdout, stderr = first.communicate(timeout=900)
    assert first.returncode == 0, stdout[-4000:] + stderr[-4000:]
    assert blocked.returncode == 1, blocked.stdout[-4000:]
    assert "Error acquiring the state lock" in blocked.stderr and lock["ID"] in blocked.stderr
    assert "Apply complete" not in blocked.stdout

    again = ok(run_task(teammate, "infra", "--yes", timeout=900, input=""))
    assert f"{model}: the stack is up to date, nothing to apply." in again.stdout
    assert "Apply complete" not in again.stdout
    assert not (teammate / "infra" / "terraform.tfstate.d").exists(), "the teammate has local state"
