"""The front end's model list and cognito_group_access.json, against IAM, Cognito and S3 in moto.

The front end's backend lists a user's models from the policies of the user's Cognito role:
for each policy (managed, default version, then inline) it reads the **second** statement and,
when it is an Allow, takes each resource ``arn:aws:s3:::<bucket>/*`` as the model ``<bucket>``
(a policy with fewer than two statements makes the listing fail). ``backend_models`` below
does the same (written from reading the backend, not copied), so a role made by
``invoke grant-access`` or by terraform/user_role.tf is checked the way the front end sees it.
The Terraform role's policies are rendered from the module's HCL (python-hcl2), in the order
``aws_iam_policy_document`` writes them; no ``terraform apply`` runs here.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import hcl2
import pytest
from test_access import CONFIG_BUCKET, MODEL, user_pool

from fixtures.tasks import run_task
from quetzal_deploy.access.cognito import ACCESS_KEY, AccessFile
from quetzal_deploy.errors import AwsError

MODULE = Path(__file__).resolve().parents[1] / "terraform"
# The config bucket names the reference backend leaves out of the list.
BACKEND_RESERVED = {"quetzal-api-bucket", "quetzal-api-bucket-dev"}


def backend_models(iam, role: str, reserved=BACKEND_RESERVED) -> list[str]:
    documents = []
    for attached in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]:
        policy = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]
        version = iam.get_policy_version(PolicyArn=attached["PolicyArn"],
                                         VersionId=policy["DefaultVersionId"])["PolicyVersion"]
        documents.append(version["Document"])
    for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        documents.append(iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"])
    models = []
    for document in documents:
        statements = (json.loads(document) if isinstance(document, str) else document)["Statement"]
        assert len(statements) >= 2, f"the backend fails on a policy of one statement: {statements}"
        second = statements[1]
        if second["Effect"] == "Allow":
            resources = second["Resource"] if isinstance(second["Resource"], list) else [second["Resource"]]
            models += [resource[len("arn:aws:s3:::"):-len("/*")] for resource in resources]
    return sorted(model for model in models if model not in reserved)


# ---- terraform/user_role.tf, rendered from its HCL --------------------------------------------

def policy_blocks() -> dict[str, dict]:
    blocks = {}
    for path in MODULE.glob("*.tf"):
        for data in hcl2.load(path.open()).get("data", []):
            for kind, named in data.items():
                if kind.strip('"') == "aws_iam_policy_document":
                    blocks.update({name.strip('"'): block for name, block in named.items()})
    return blocks


def interpolate(text: str, values: dict[str, str]) -> str:
    text = text.strip('"')
    return re.sub(r"\$\{([^}]+)\}", lambda m: values[m.group(1)], text)


def one_or_list(items: list[str]) -> str | list[str]:
    return items[0] if len(items) == 1 else items


def render_policy(name: str, values: dict[str, str], blocks: dict[str, dict]) -> dict:
    """An aws_iam_policy_document as IAM JSON: source documents' statements first, then its own."""
    block, statements = blocks[name], []
    for source in block.get("source_policy_documents", []):
        source_name = re.fullmatch(r"\$\{data\.aws_iam_policy_document\.(\w+)\.json\}", source).group(1)
        statements += render_policy(source_name, values, blocks)["Statement"]
    for statement in block.get("statement", []):
        statements.append({
            **({"Sid": interpolate(statement["sid"], values)} if "sid" in statement else {}),
            "Effect": interpolate(statement.get("effect", "Allow"), values),
            "Action": one_or_list([interpolate(a, values) for a in statement["actions"]]),
            "Resource": one_or_list([interpolate(r, values) for r in statement["resources"]]),
        })
    return {"Version": "2012-10-17", "Statement": statements}


def terraform_user_role(iam) -> None:
    """``<model>-user`` with the inline policies user_role.tf gives it."""
    values = {"local.bucket_arn": f"arn:aws:s3:::{MODEL}", "local.partition": "aws",
              "var.config_bucket_name": CONFIG_BUCKET, "var.name": MODEL}
    blocks = policy_blocks()
    iam.create_role(RoleName=f"{MODEL}-user", AssumeRolePolicyDocument="{}")
    for policy, block in ((f"{MODEL}-user", "user"), (f"{MODEL}-user-config", "user_config")):
        iam.put_role_policy(RoleName=f"{MODEL}-user", PolicyName=policy,
                            PolicyDocument=json.dumps(render_policy(block, values, blocks)))


def original_role(iam, role: str, bucket: str) -> None:
    """A user role as the front end's original Terraform made them: the model's S3 policy and
    the shared config-read policy, both attached (managed)."""
    iam.create_role(RoleName=role, AssumeRolePolicyDocument="{}")
    model = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{bucket}"},
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
         "Resource": f"arn:aws:s3:::{bucket}/*"},
        {"Effect": "Deny", "Action": ["s3:PutObject", "s3:DeleteObject"],
         "Resource": f"arn:aws:s3:::{bucket}/base/*"}]}
    config = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::quetzal-api-bucket"},
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::quetzal-api-bucket/*"}]}
    for name, document in ((f"{role}-s3", model), (f"{role}-config", config)):
        arn = iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(document))["Policy"]["Arn"]
        iam.attach_role_policy(RoleName=role, PolicyArn=arn)


@pytest.fixture
def pool(boto, baked_repo):
    return user_pool(boto, baked_repo)


def group_role(boto, pool: str, group: str) -> str:
    arn = boto.client("cognito-idp").get_group(GroupName=group, UserPoolId=pool)["Group"]["RoleArn"]
    return arn.rsplit("/", 1)[-1]


def test_original_role_is_what_the_backend_reference_lists(boto):
    original_role(boto.client("iam"), "other-model-user", "other-model")
    assert backend_models(boto.client("iam"), "other-model-user") == ["other-model"]


def test_terraform_user_role_lists_the_model_and_reads_the_config_bucket(baked_repo, boto, pool):
    iam = boto.client("iam")
    terraform_user_role(iam)
    done = run_task(baked_repo, "grant-access", "planners")
    assert done.returncode == 0, done.stderr

    role = group_role(boto, pool, "planners")
    assert role == f"{MODEL}-user"
    assert backend_models(iam, role) == [MODEL]
    assert backend_models(iam, role, reserved=set()) == [MODEL], "the config bucket is never a model"
    config = json.loads(json.dumps(iam.get_role_policy(RoleName=role, PolicyName=f"{MODEL}-user-config")
                                   ["PolicyDocument"]))
    read = config["Statement"][0]
    assert read["Effect"] == "Allow" and "s3:GetObject" in read["Action"]
    assert f"arn:aws:s3:::{CONFIG_BUCKET}/*" in read["Resource"]


def test_grant_to_a_group_with_an_original_role_adds_the_model_to_its_list(baked_repo, boto, pool):
    iam = boto.client("iam")
    terraform_user_role(iam)
    original_role(iam, "other-model-user", "other-model")
    other = iam.get_role(RoleName="other-model-user")["Role"]["Arn"]
    boto.client("cognito-idp").create_group(GroupName="ops", UserPoolId=pool, RoleArn=other)

    done = run_task(baked_repo, "grant-access", "ops")

    assert done.returncode == 0, done.stderr
    assert backend_models(iam, "other-model-user") == sorted(["other-model", MODEL])


# ---- two admins at once ------------------------------------------------------------------------

class Admin(AccessFile):
    """An admin's grant, paused after its first read until the other admin has read too, and
    (the second admin) writing only once the first admin's write is in."""

    def __init__(self, s3, both_read: threading.Barrier, first_written: threading.Event, first: bool):
        super().__init__(s3, CONFIG_BUCKET)
        self.both_read, self.first_written, self.first = both_read, first_written, first
        self.reads = self.refused = 0

    def read_tagged(self):
        found = super().read_tagged()
        self.reads += 1
        if self.reads == 1:
            self.both_read.wait(timeout=120)
        return found

    def write(self, groups, etag):
        if not self.first and self.reads == 1:
            self.first_written.wait(timeout=120)
        stored = super().write(groups, etag)
        if self.first:
            self.first_written.set()
        self.refused += not stored
        return stored


@pytest.mark.parametrize("existing", [None, {"guests": ["demo"]}], ids=["no-file-yet", "file-exists"])
def test_two_admins_granting_at_once_lose_no_group(boto, aws, existing):
    """Both read the same file, both write: S3 refuses the second write (If-Match on the ETag
    read, or If-None-Match: * when there was no file) and that admin reads again and re-applies.
    moto server checks the condition then stores, not atomically, so the test orders the two
    writes (the second starts when the first is stored) instead of firing them at the same
    instant; on S3 the check and the write are one step."""
    s3 = boto.client("s3")
    s3.create_bucket(Bucket=CONFIG_BUCKET, CreateBucketConfiguration={"LocationConstraint": "ca-central-1"})
    if existing is not None:
        s3.put_object(Bucket=CONFIG_BUCKET, Key=ACCESS_KEY, Body=json.dumps(existing).encode())
    both_read, first_written = threading.Barrier(2), threading.Event()
    admins = [Admin(boto.client("s3"), both_read, first_written, first=i == 0) for i in range(2)]
    results, errors = {}, []

    def grant(index: int) -> None:
        try:
            results[index] = admins[index].add(f"group-{index}", MODEL)
        except Exception as ex:  # reported below, with the other thread's outcome
            errors.append(ex)

    threads = [threading.Thread(target=grant, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)

    assert not errors and results == {0: True, 1: True}
    stored = json.loads(s3.get_object(Bucket=CONFIG_BUCKET, Key=ACCESS_KEY)["Body"].read())
    assert stored == {**(existing or {}), "group-0": [MODEL], "group-1": [MODEL]}
    assert [admin.refused for admin in admins] == [0, 1], "the second write was refused, then redone"
    assert [admin.reads for admin in admins] == [1, 2]


def test_a_write_refused_every_time_is_a_clear_error(boto, aws):
    s3 = boto.client("s3")
    s3.create_bucket(Bucket=CONFIG_BUCKET, CreateBucketConfiguration={"LocationConstraint": "ca-central-1"})

    class Busy(AccessFile):
        """Someone else changes the file between each read and write."""

        writes = 0

        def write(self, groups, etag):
            self.writes += 1
            other = json.dumps({"other": [self.writes]}).encode()
            s3.put_object(Bucket=CONFIG_BUCKET, Key=ACCESS_KEY, Body=other)
            return super().write(groups, etag)

    busy = Busy(boto.client("s3"), CONFIG_BUCKET, attempts=3)
    with pytest.raises(AwsError, match="kept changing while it was being updated .3 tries.: someone else"):
        busy.add("planners", MODEL)
    assert busy.writes == 3
    assert json.loads(s3.get_object(Bucket=CONFIG_BUCKET, Key=ACCESS_KEY)["Body"].read()) == {"other": [3]}
