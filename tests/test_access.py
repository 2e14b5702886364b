"""`invoke grant-access` and `revoke_model` against Cognito, IAM and S3 in moto server.

The model's user role and its inline S3 policy are created here with boto3, as
terraform/user_role.tf creates them; an adopted model's (role Cognito_quetzal_pool_<m>, managed
policy s3_read_put_<m>) as the backend's Terraform did, its names in the tfvars `adopt` writes.
"""

import json

import pytest

from fixtures.tasks import run_task
from quetzal_deploy.access.cognito import revoke_model
from quetzal_deploy.adopt.production import CONFIG_POLICY, adopted_tfvars
from quetzal_deploy.aws import Aws
from quetzal_deploy.settings import load_settings

MODEL = "quetzal-test"
CONFIG_BUCKET = "quetzal-config"
ACCESS_KEY = "cognito_group_access.json"
USER_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": f"arn:aws:s3:::{MODEL}/*"}]}


def user_pool(boto, repo) -> str:
    """A user pool named in the repo's .env.local, and the config bucket."""
    pool_id = boto.client("cognito-idp").create_user_pool(PoolName="quetzal")["UserPool"]["Id"]
    (repo / ".env.local").write_text(f"COGNITO_USER_POOL_ID={pool_id}\n")
    boto.client("s3").create_bucket(Bucket=CONFIG_BUCKET,
                                    CreateBucketConfiguration={"LocationConstraint": "ca-central-1"})
    return pool_id


@pytest.fixture
def pool(boto, baked_repo):
    """A user pool named in the repo's .env.local, the config bucket, and the model's user role."""
    pool_id = user_pool(boto, baked_repo)
    iam = boto.client("iam")
    iam.create_role(RoleName=f"{MODEL}-user", AssumeRolePolicyDocument="{}")
    iam.put_role_policy(RoleName=f"{MODEL}-user", PolicyName=f"{MODEL}-user",
                        PolicyDocument=json.dumps(USER_POLICY))
    return pool_id


@pytest.fixture
def adopted(boto, baked_repo):
    """The repo as `quetzal-deploy adopt` leaves it and the production user role: no <m>-user role."""
    tfvars = baked_repo / "infra" / f"{MODEL}.tfvars"
    tfvars.write_text(adopted_tfvars(tfvars.read_text(), MODEL))
    pool_id = user_pool(boto, baked_repo)
    iam = boto.client("iam")
    role = f"Cognito_quetzal_pool_{MODEL}"
    iam.create_role(RoleName=role, AssumeRolePolicyDocument="{}")
    config_read = {**USER_POLICY, "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{CONFIG_BUCKET}/*"}]}
    for name, document in ((f"s3_read_put_{MODEL}", USER_POLICY), (CONFIG_POLICY, config_read)):
        arn = iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(document))["Policy"]["Arn"]
        iam.attach_role_policy(RoleName=role, PolicyArn=arn)
    return pool_id


def listing(boto):
    try:
        body = boto.client("s3").get_object(Bucket=CONFIG_BUCKET, Key=ACCESS_KEY)["Body"].read()
    except boto.client("s3").exceptions.NoSuchKey:
        return None
    return json.loads(body)


def group(boto, pool, name):
    try:
        return boto.client("cognito-idp").get_group(GroupName=name, UserPoolId=pool)["Group"]
    except boto.client("cognito-idp").exceptions.ResourceNotFoundException:
        return None


def grant(repo, *args):
    done = run_task(repo, "grant-access", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_new_group_gets_the_model_role_idempotently_and_revoke_undoes_it(baked_repo, boto, pool):
    role_arn = boto.client("iam").get_role(RoleName=f"{MODEL}-user")["Role"]["Arn"]

    grant(baked_repo, "planners")
    assert group(boto, pool, "planners")["RoleArn"] == role_arn
    assert listing(boto) == {"planners": [MODEL]}

    again = grant(baked_repo, "planners")
    assert "already uses role" in again and "already listed" in again
    assert group(boto, pool, "planners")["RoleArn"] == role_arn
    assert listing(boto) == {"planners": [MODEL]}

    grant(baked_repo, "planners", "--revoke")
    assert group(boto, pool, "planners") is None
    assert listing(boto) == {}


def test_existing_group_role_gets_the_model_policy_and_revoke_removes_it(baked_repo, boto, pool):
    iam, cognito = boto.client("iam"), boto.client("cognito-idp")
    other = iam.create_role(RoleName="other-model-user", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    cognito.create_group(GroupName="ops", UserPoolId=pool, RoleArn=other)
    boto.client("s3").put_object(Bucket=CONFIG_BUCKET, Key=ACCESS_KEY,
                                 Body=json.dumps({"ops": ["other-model"], "guests": ["demo"]}).encode())

    grant(baked_repo, "ops")
    grant(baked_repo, "ops")
    policy = iam.get_role_policy(RoleName="other-model-user", PolicyName=f"{MODEL}-user")["PolicyDocument"]
    assert (json.loads(policy) if isinstance(policy, str) else policy) == USER_POLICY
    assert group(boto, pool, "ops")["RoleArn"] == other
    assert listing(boto) == {"ops": ["other-model", MODEL], "guests": ["demo"]}

    grant(baked_repo, "ops", "--revoke")
    assert iam.list_role_policies(RoleName="other-model-user")["PolicyNames"] == []
    assert group(boto, pool, "ops")["RoleArn"] == other
    assert listing(boto) == {"ops": ["other-model"], "guests": ["demo"]}


def test_revoke_model_takes_the_model_from_every_group(baked_repo, boto, pool):
    """What `invoke destroy` calls before terraform removes the user role."""
    iam = boto.client("iam")
    other = iam.create_role(RoleName="shared-user", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    boto.client("cognito-idp").create_group(GroupName="shared", UserPoolId=pool, RoleArn=other)
    grant(baked_repo, "planners")
    grant(baked_repo, "shared")
    boto.client("s3").put_object(Bucket=CONFIG_BUCKET, Key=ACCESS_KEY, Body=json.dumps(
        {**listing(boto), "guests": ["demo"]}).encode())

    settings = load_settings(baked_repo)
    revoke_model(settings, Aws(settings), out=lambda line: None)

    assert listing(boto) == {"guests": ["demo"]}
    assert group(boto, pool, "planners") is None
    assert group(boto, pool, "shared")["RoleArn"] == other
    assert iam.list_role_policies(RoleName="shared-user")["PolicyNames"] == []


def test_adopted_model_grants_its_production_role_and_policy(baked_repo, boto, adopted):
    iam, cognito = boto.client("iam"), boto.client("cognito-idp")
    role_arn = iam.get_role(RoleName=f"Cognito_quetzal_pool_{MODEL}")["Role"]["Arn"]
    other = iam.create_role(RoleName="other-model-user", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    cognito.create_group(GroupName="ops", UserPoolId=adopted, RoleArn=other)

    assert f"with role Cognito_quetzal_pool_{MODEL}" in grant(baked_repo, "planners")
    grant(baked_repo, "ops")
    assert group(boto, adopted, "planners")["RoleArn"] == role_arn
    policy = iam.get_role_policy(RoleName="other-model-user",
                                 PolicyName=f"s3_read_put_{MODEL}")["PolicyDocument"]
    assert (json.loads(policy) if isinstance(policy, str) else policy) == USER_POLICY
    assert listing(boto) == {"planners": [MODEL], "ops": [MODEL]}

    grant(baked_repo, "planners", "--revoke")
    grant(baked_repo, "ops", "--revoke")
    assert group(boto, adopted, "planners") is None
    assert iam.list_role_policies(RoleName="other-model-user")["PolicyNames"] == []
    attached = iam.list_attached_role_policies(RoleName=f"Cognito_quetzal_pool_{MODEL}")["AttachedPolicies"]
    assert len(attached) == 2  # revoking a group leaves the model's own role as Terraform made it
    assert listing(boto) == {}


def test_broken_tfvars_is_a_config_error_and_changes_nothing(baked_repo, boto, pool):
    (baked_repo / "infra" / f"{MODEL}.tfvars").write_text("resource_names = {\n")

    done = run_task(baked_repo, "grant-access", "planners")

    assert done.returncode == 1
    assert done.stderr.startswith(f"ERROR: infra/{MODEL}.tfvars is not valid HCL")
    assert group(boto, pool, "planners") is None and listing(boto) is None


def test_missing_user_role_changes_nothing(baked_repo, boto, pool):
    iam = boto.client("iam")
    iam.delete_role_policy(RoleName=f"{MODEL}-user", PolicyName=f"{MODEL}-user")
    iam.delete_role(RoleName=f"{MODEL}-user")

    done = run_task(baked_repo, "grant-access", "planners")

    assert done.returncode == 1
    assert "run `invoke infra`" in done.stderr and "Traceback" not in done.stderr
    assert group(boto, pool, "planners") is None and listing(boto) is None


def test_missing_config_bucket_changes_nothing(baked_repo, boto, pool):
    boto.client("s3").delete_bucket(Bucket=CONFIG_BUCKET)

    done = run_task(baked_repo, "grant-access", "planners")

    assert done.returncode == 1
    assert f"Config bucket {CONFIG_BUCKET} does not exist" in done.stderr
    assert group(boto, pool, "planners") is None


def test_missing_user_pool_setting_is_a_config_error(baked_repo, aws):
    done = run_task(baked_repo, "grant-access", "planners")
    assert done.returncode == 1
    assert done.stderr.startswith("ERROR: Set COGNITO_USER_POOL_ID in .env")
