"""Taking over a stack deployed the production way, on moto server with the real terraform.

tests/support/legacy_stack/ deploys a model as the backend's Terraform does (S3 state in
quetzal-tf-state, one workspace per model, production names, the shared admin role and config
policy made beforehand). Data is seeded, then the old-layout repo is adopted as a user would
(`python -m quetzal_deploy adopt`, `invoke infra --adopt`), and nothing may be replaced or lost;
then `invoke push` builds the adopted model for real and points the production function at it.
moto's ECR keeps no layers: the legacy image is a manifest put through the ECR API (its digest is
what the test follows); the pushed image's layers go to the local registry (QUETZAL_REGISTRY), as
in the other push tests, and the test checks ECR lists, under the tag the function now runs, the
very manifest the registry holds (moto digests manifests its own way and derives a function's
CodeSha256 from its ImageUri, so neither is the manifest's sha256 as on AWS). The emulator gap
this meets: moto's GetFunction omits LoggingConfig, so the function shows one in-place change in
every plan after it exists (never on AWS).
"""

import hashlib
import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import boto3
import pytest

from fixtures.aws import REGION
from fixtures.legacy import old_layout_repo
from fixtures.tasks import run_task
from fixtures.terraform import OVERRIDE, write_emulator_override
from quetzal_deploy.adopt.stack import refusals

pytestmark = [pytest.mark.terraform, pytest.mark.slow, pytest.mark.xdist_group("terraform")]
LEGACY = Path(__file__).resolve().parent / "support" / "legacy_stack"
MODEL = "quetzal-lyon"
POOL = "ca-central-1:0a1b2c3d-1111-2222-3333-444455556666"
OLD_STATE = f"env:/{MODEL}/terraform/remote-state/terraform.tfstate"
OBJECTS = {"base/inputs/params.json": b"[]", "base/inputs/pt/links.geojson": b'{"features": []}',
           "s1/inputs/params.json": b'[{"category": "a"}]', "s1/outputs/flows.geojson": b"{}",
           "s2/logs/A10_preparation.txt": b"done", "_common/lock.json": b'["base"]'}
MANIFEST = json.dumps({"schemaVersion": 2,
                       "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                       "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2,
                                  "digest": "sha256:" + "a" * 64}, "layers": []})


def terraform(folder: Path, *args: str, ok=(0,)) -> subprocess.CompletedProcess:
    done = subprocess.run(["terraform", *args], cwd=folder, capture_output=True, text=True, timeout=900)
    assert done.returncode in ok, done.stdout[-4000:] + done.stderr[-4000:]
    return done


def deploy_legacy(session, folder: Path) -> None:
    """The shared parts production made by hand, then the model's stack from its own workspace."""
    iam = session.client("iam")
    iam.create_role(RoleName="Cognito_quetzal_pool_admin", AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": []}))
    iam.create_policy(PolicyName="s3_read_quetzal_config", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject",
                                                "Resource": "arn:aws:s3:::quetzal-config/*"}]}))
    session.client("s3").create_bucket(Bucket="quetzal-tf-state",
                                       CreateBucketConfiguration={"LocationConstraint": REGION})
    folder.mkdir()
    shutil.copy(LEGACY / "main.tf", folder / "main.tf")
    (folder / "emulator_override.tf").write_text(OVERRIDE, encoding="utf-8")
    (folder / f"{MODEL}.tfvars").write_text(
        f'quetzal_model_name = "{MODEL}"\naws_region = "{REGION}"\nlambda_memory_size = 8032\n'
        f'lambda_time_limit = 600\nlambda_storage_size = 4016\ncognito_identity_pool_id = "{POOL}"\n',
        encoding="utf-8")
    terraform(folder, "init", "-input=false", "-backend-config=use_path_style=true")  # moto: no subdomains
    terraform(folder, "workspace", "new", MODEL)
    tfvars = f"-var-file={MODEL}.tfvars"
    terraform(folder, "apply", "-input=false", "-auto-approve", tfvars,
              "-target=aws_ecr_repository.repository")
    session.client("ecr").put_image(repositoryName=MODEL, imageManifest=MANIFEST, imageTag="v1")
    terraform(folder, "apply", "-input=false", "-auto-approve", tfvars, "-var=image_tag=v1")


def seed(session) -> str:
    """Objects in several scenarios, and a Cognito group whose role is the model's user role."""
    s3 = session.client("s3")
    for key, body in OBJECTS.items():
        s3.put_object(Bucket=MODEL, Key=key, Body=body, Metadata={"user_email": "modeller@example.com"})
    role = session.client("iam").get_role(RoleName=f"Cognito_quetzal_pool_{MODEL}")["Role"]["Arn"]
    cognito = session.client("cognito-idp")
    pool = cognito.create_user_pool(PoolName="quetzal")["UserPool"]["Id"]
    cognito.create_group(GroupName="lyon-team", UserPoolId=pool, RoleArn=role)
    return pool


def snapshot(session, user_pool: str) -> dict:
    """What must survive the adoption unchanged."""
    iam, s3 = session.client("iam"), session.client("s3")
    roles = {name: (role["RoleId"], role["CreateDate"]) for name in
             (f"lambda-{MODEL}-role", f"sfn-{MODEL}-role", f"Cognito_quetzal_pool_{MODEL}")
             for role in [iam.get_role(RoleName=name)["Role"]]}
    function = session.client("lambda").get_function(FunctionName=MODEL)
    sfn = session.client("stepfunctions")
    (machine,) = [m for m in sfn.list_state_machines()["stateMachines"] if m["name"] == MODEL]
    images = session.client("ecr").describe_images(repositoryName=MODEL)["imageDetails"]
    (repository,) = session.client("ecr").describe_repositories(repositoryNames=[MODEL])["repositories"]
    (bucket,) = [b for b in s3.list_buckets()["Buckets"] if b["Name"] == MODEL]
    logs = session.client("logs")
    (group,) = logs.describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{MODEL}")["logGroups"]
    return {
        "roles": roles,
        "function": (function["Configuration"]["FunctionArn"], function["Configuration"]["CodeSha256"],
                     function["Code"]["ImageUri"]),
        "state machine": (machine["stateMachineArn"], machine["creationDate"]),
        "images": sorted((i["imageDigest"], tuple(i.get("imageTags", []))) for i in images),
        "repository": (repository["repositoryArn"], repository["createdAt"]),
        "bucket": bucket["CreationDate"],
        "log group": (group["arn"], group["creationTime"]),
        "objects": {key: s3.head_object(Bucket=MODEL, Key=key)["ETag"] for key in OBJECTS},
        "group role": session.client("cognito-idp").get_group(GroupName="lyon-team", UserPoolId=user_pool)[
            "Group"]["RoleArn"],
        "admin policy": iam.get_role_policy(RoleName="Cognito_quetzal_pool_admin",
                                            PolicyName=f"inline_s3_read_put_{MODEL}")["PolicyName"],
    }


def pushed_digest(registry: str, tag: str) -> str:
    """The digest the local registry gives the manifest `invoke push` sent."""
    request = urllib.request.Request(
        f"http://{registry}/v2/{MODEL}/manifests/{tag}", method="HEAD",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json, "
                           "application/vnd.oci.image.manifest.v1+json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.headers["Docker-Content-Digest"]


def push_adopted(session, repo: Path, base_image: str, registry: str) -> None:
    """`invoke push` on the adopted repo: the production function runs the new image, from the
    production repository, and nothing else about the function or the repository changes."""
    lam, ecr = session.client("lambda"), session.client("ecr")
    before = lam.get_function(FunctionName=MODEL)
    (repository,) = ecr.describe_repositories(repositoryNames=[MODEL])["repositories"]
    listed = ecr.describe_images(repositoryName=MODEL)["imageDetails"]
    old = {i["imageDigest"]: i["imageTags"] for i in listed}
    push = run_task(repo, "push", env={"QUETZAL_BASE_IMAGE": base_image, "QUETZAL_REGISTRY": registry},
                    timeout=1800, input="")
    assert push.returncode == 0, push.stdout[-6000:] + push.stderr[-4000:]
    after = lam.get_function(FunctionName=MODEL)
    uri = after["Code"]["ImageUri"]
    repository_uri, tag = uri.rsplit(":", 1)
    assert repository_uri == repository["repositoryUri"] and repository_uri.endswith(f"/{MODEL}")
    assert uri != before["Code"]["ImageUri"] and f"Lambda {MODEL} now runs {tag}" in push.stdout
    (image,) = ecr.batch_get_image(repositoryName=MODEL, imageIds=[{"imageTag": tag}])["images"]
    manifest = image["imageManifest"].encode()
    assert "sha256:" + hashlib.sha256(manifest).hexdigest() == pushed_digest(registry, tag)
    digest = image["imageId"]["imageDigest"]  # moto's own digest for it (not the manifest's sha256)
    assert after["Configuration"]["CodeSha256"] != before["Configuration"]["CodeSha256"]
    kept = ("FunctionArn", "Role", "PackageType", "MemorySize", "Timeout", "Architectures")
    assert {k: after["Configuration"][k] for k in kept} == {k: before["Configuration"][k] for k in kept}
    (still,) = ecr.describe_repositories(repositoryNames=[MODEL])["repositories"]
    assert still == repository  # same ARN, same creation: the production-named repository
    images = {i["imageDigest"]: i.get("imageTags", []) for i in
              ecr.describe_images(repositoryName=MODEL)["imageDetails"]}
    assert images == {**old, digest: [tag]}  # the old image (v1) is still there to roll back to


@pytest.mark.docker
def test_a_production_stack_is_adopted_without_replacing_or_losing_anything(
        terraform_aws, tmp_path, lambda_base_image, registry):
    session = boto3.Session(region_name=REGION)
    legacy = tmp_path / "legacy"
    deploy_legacy(session, legacy)
    user_pool = seed(session)
    before = snapshot(session, user_pool)

    repo = old_layout_repo(tmp_path / "repos", MODEL)
    adopted = subprocess.run([sys.executable, "-m", "quetzal_deploy", "adopt", "--yes", "--live",
                              "--tfvars", str(legacy / f"{MODEL}.tfvars")], cwd=repo, capture_output=True,
                             text=True, timeout=300)
    assert adopted.returncode == 0, adopted.stdout + adopted.stderr
    assert f"'{POOL}'" in adopted.stdout and "the live stack" in adopted.stdout
    write_emulator_override(repo)
    s3 = session.client("s3")

    def old_resources(key: str = OLD_STATE) -> list:
        state = json.loads(s3.get_object(Bucket="quetzal-tf-state", Key=key)["Body"].read())
        return [r for r in state["resources"] if r["mode"] == "managed"]

    looked = run_task(repo, "infra", "--adopt", "--plan-only", timeout=1800, input="")
    assert looked.returncode == 0, looked.stdout[-6000:] + looked.stderr[-4000:]
    assert "17 to import" in looked.stdout and "Plan only: nothing was applied" in looked.stdout
    assert "Detached" not in looked.stdout and len(old_resources()) == 17
    assert not (repo / "infra" / "adopt_imports.tf").exists()

    infra = run_task(repo, "infra", "--adopt", "--yes", timeout=1800, input="")
    assert infra.returncode == 0, infra.stdout[-8000:] + infra.stderr[-4000:]
    assert "17 to import" in infra.stdout and "0 to destroy" in infra.stdout, infra.stdout[-6000:]
    assert "Detached from the old state" in infra.stdout
    print(next(line for line in infra.stdout.splitlines() if line.startswith("Plan:")))
    assert f"module.model.aws_iam_role.user[0] <- Cognito_quetzal_pool_{MODEL}" in infra.stdout
    assert not (repo / "infra" / "adopt_imports.tf").exists()

    assert snapshot(session, user_pool) == before
    download = run_task(repo, "download-scenario", "s1", timeout=600, input="")
    assert download.returncode == 0, download.stdout[-3000:] + download.stderr[-3000:]
    downloaded = repo / "scenarios" / "s1" / "inputs" / "params.json"
    assert downloaded.read_bytes() == OBJECTS["s1/inputs/params.json"]
    assert old_resources() == []
    backups = s3.list_objects_v2(Bucket="quetzal-tf-state", Prefix=f"{OLD_STATE}.before-adoption-")
    (backup,) = backups["Contents"]
    assert len(old_resources(backup["Key"])) == 17
    # The old configuration cannot destroy anything any more.
    gone = terraform(legacy, "plan", "-destroy", "-input=false", "-no-color", f"-var-file={MODEL}.tfvars",
                     "-var=image_tag=v1")
    assert "No objects need to be destroyed" in gone.stdout, gone.stdout[-3000:]

    again = run_task(repo, "infra", "--plan-only", timeout=900, input="")
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
    # moto's GetFunction omits LoggingConfig: the one change left, an emulator gap.
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in again.stdout, again.stdout[-4000:]
    assert "module.model.aws_lambda_function.this[0] will be updated in-place" in again.stdout

    push_adopted(session, repo, lambda_base_image, registry)


def test_a_plan_that_replaces_or_destroys_what_others_hold_is_refused():
    plan = {"resource_changes": [
        {"address": "module.model.aws_iam_role.user[0]", "type": "aws_iam_role",
         "change": {"actions": ["delete", "create"]}},
        {"address": "module.model.aws_s3_bucket.this", "type": "aws_s3_bucket",
         "change": {"actions": ["delete"]}},
        {"address": "module.model.aws_iam_role_policy.user[0]", "type": "aws_iam_role_policy",
         "change": {"actions": ["delete"]}},
        {"address": "module.model.aws_lambda_function.this[0]", "type": "aws_lambda_function",
         "change": {"actions": ["update"]}},
    ]}
    assert refusals(plan) == ["replace module.model.aws_iam_role.user[0]",
                              "destroy module.model.aws_s3_bucket.this"]
