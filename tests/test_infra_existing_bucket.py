"""A model on an existing bucket (EXISTING_BUCKET_NAME): the real terraform on moto server.

The backend's microservices share one bucket the front end uploads to: the module creates no
bucket of the model's name, scopes the roles to the existing one, and destroy deletes nothing of it.
"""

import json
import uuid

import boto3
import pytest
from test_infra_terraform import missing, ok

from fixtures.aws import REGION
from fixtures.bake import bake
from fixtures.tasks import run_task
from fixtures.terraform import write_emulator_override

pytestmark = [pytest.mark.terraform, pytest.mark.slow, pytest.mark.xdist_group("terraform")]


def role_policies(iam, role: str) -> str:
    """Every inline policy of ``role``, as one JSON text."""
    names = iam.list_role_policies(RoleName=role)["PolicyNames"]
    return json.dumps([iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
                       for name in names])


def test_a_model_on_an_existing_bucket_creates_and_deletes_nothing_of_it(terraform_aws, tmp_path):
    shared = f"shared-{uuid.uuid4().hex[:10]}"
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=shared, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(Bucket=shared, Key="3f2b8c1e/inputs/links.geojson", Body=b"{}")
    repo = bake(tmp_path, model_name=f"qtf-{uuid.uuid4().hex[:10]}")
    write_emulator_override(repo)
    model = repo.name
    env = repo / ".env"
    env.write_text(env.read_text().replace("EXISTING_BUCKET_NAME=\n", f"EXISTING_BUCKET_NAME={shared}\n"))

    infra = ok(run_task(repo, "infra", "--yes", timeout=900, input=""))

    assert missing(lambda: s3.head_bucket(Bucket=model), "404", "NoSuchBucket"), "a bucket was created"
    assert f'bucket_name = "{shared}"' in infra.stdout or shared in infra.stdout
    iam = boto3.client("iam", region_name=REGION)
    lambda_role = next(r["RoleName"] for r in iam.list_roles()["Roles"]
                       if r["RoleName"].startswith(model) and "lambda" in r["RoleName"])
    policies = role_policies(iam, lambda_role)
    assert f"arn:aws:s3:::{shared}/*" in policies and f"arn:aws:s3:::{model}" not in policies

    destroy = ok(run_task(repo, "destroy", "--confirm-name", model, timeout=900, input=""))

    assert f"Kept s3://{shared}" in destroy.stdout
    kept = [o["Key"] for o in s3.list_objects_v2(Bucket=shared)["Contents"]]
    assert kept == ["3f2b8c1e/inputs/links.geojson"]
    assert s3.get_bucket_location(Bucket=shared)  # the bucket itself is still there
