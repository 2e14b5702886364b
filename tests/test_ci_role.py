"""The Terraform module's CI part, applied by `invoke infra` with the real terraform on moto: the
OIDC provider and the deploy role exist only when ci_repository is set; the role is trusted for
that repository's deploy ref only, and its policy allows the calls of `invoke push`, `update-steps`
and `publish-config` on this model and denies them on another model.

moto has no IAM policy simulator (simulate_principal_policy): the role's trust and inline policy,
as terraform created them in moto, are evaluated with moto's own policy evaluator (the one moto
applies to requests when it enforces IAM: actions, resources, StringEquals). That evaluator skips
StringLike conditions, so this test applies them first, with glob matching as IAM does
(``fnmatchcase``: ``*`` and ``?``, case-sensitive): a statement whose StringLike fails is dropped."""

import json
import os
import subprocess
import uuid
from fnmatch import fnmatchcase

import boto3
import pytest
from moto.iam.access_control import IAMPolicy, PermissionResult

from fixtures.aws import REGION
from fixtures.bake import bake
from fixtures.tasks import run_task
from fixtures.terraform import write_emulator_override

pytestmark = [pytest.mark.terraform, pytest.mark.slow, pytest.mark.xdist_group("terraform")]
ISSUER = "token.actions.githubusercontent.com"
REPOSITORY = "systragroup/quetzal-ci-test"
GITLAB_PROJECT = "systragroup/models/quetzal-ci-test"  # GitLab: a project path may hold subgroups


def deploy_calls(model: str, account: str) -> list[tuple[str, str, dict]]:
    """(action, resource, condition values) of one deployment of ``model`` by the workflow."""
    arn = {"ecr": f"arn:aws:ecr:{REGION}:{account}:repository/{model}",
           "function": f"arn:aws:lambda:{REGION}:{account}:function:{model}",
           "machine": f"arn:aws:states:{REGION}:{account}:stateMachine:{model}",
           "bucket": f"arn:aws:s3:::{model}"}
    image = [(action, arn["ecr"], {}) for action in (
        "ecr:DescribeRepositories", "ecr:DescribeImages", "ecr:BatchCheckLayerAvailability",
        "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage")]
    return [*image,
            ("lambda:GetFunction", arn["function"], {}), ("lambda:UpdateFunctionCode", arn["function"], {}),
            ("states:DescribeStateMachine", arn["machine"], {}),
            ("states:UpdateStateMachine", arn["machine"], {}),
            ("s3:ListBucket", arn["bucket"], {"s3:prefix": "_common/"}),
            ("s3:PutObject", f"{arn['bucket']}/_common/modelConfig.json", {}),
            ("s3:PutObject", f"{arn['bucket']}/_common/steps.json", {}),
            ("s3:DeleteObject", f"{arn['bucket']}/_common/docs/old.md", {})]


def string_like_holds(statement: dict, values: dict) -> bool:
    patterns = statement.get("Condition", {}).get("StringLike", {})
    as_list = {key: [p] if isinstance(p, str) else p for key, p in patterns.items()}
    return all(key in values and any(fnmatchcase(values[key], p) for p in ps) for key, ps in as_list.items())


def allowed(document: dict, action: str, resource: str, values: dict) -> bool:
    statements = document["Statement"]
    statements = statements if isinstance(statements, list) else [statements]
    kept = [statement for statement in statements if string_like_holds(statement, values)]
    policy = IAMPolicy(json.dumps({**document, "Statement": kept}))
    return policy.is_action_permitted(action, resource, incoming_condition_values=values) \
        == PermissionResult.PERMITTED


@pytest.fixture
def ci_repo(terraform_aws, tmp_path):
    repo = bake(tmp_path, model_name=f"qci-{uuid.uuid4().hex[:10]}", terraform_state_bucket="local")
    write_emulator_override(repo)
    tfvars = repo / "infra" / f"{repo.name}.tfvars"
    tfvars.write_text(tfvars.read_text() + f'ci_repository = "{REPOSITORY}"\n')
    return repo


def test_the_ci_role_deploys_this_model_only_from_its_repository_tags(ci_repo):
    done = run_task(ci_repo, "infra", "--yes", timeout=900, input="")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ci_deploy_role_arn" in done.stdout  # what `invoke ci-bootstrap` says to copy to GitHub
    model, iam = ci_repo.name, boto3.Session(region_name=REGION).client("iam")
    account = boto3.Session(region_name=REGION).client("sts").get_caller_identity()["Account"]
    (provider,) = iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]
    assert provider["Arn"].endswith(f":oidc-provider/{ISSUER}")

    role = iam.get_role(RoleName=f"{model}-ci-deploy")["Role"]
    trust = role["AssumeRolePolicyDocument"]
    claims = {f"{ISSUER}:aud": "sts.amazonaws.com"}
    assume = "sts:AssumeRoleWithWebIdentity"
    def token(sub: str) -> dict:
        return {**claims, f"{ISSUER}:sub": sub}

    assert allowed(trust, assume, "*", token(f"repo:{REPOSITORY}:ref:refs/tags/v1.2.0"))
    assert not allowed(trust, assume, "*", token(f"repo:{REPOSITORY}:ref:refs/heads/main"))
    assert not allowed(trust, assume, "*", token(f"repo:{REPOSITORY}:pull_request"))
    assert not allowed(trust, assume, "*", token("repo:someone/else:ref:refs/tags/v1.2.0"))
    assert not allowed(trust, assume, "*", {**token(f"repo:{REPOSITORY}:ref:refs/tags/v1.2.0"),
                                            f"{ISSUER}:aud": "another-audience"})

    (name,) = iam.list_role_policies(RoleName=role["RoleName"])["PolicyNames"]
    policy = iam.get_role_policy(RoleName=role["RoleName"], PolicyName=name)["PolicyDocument"]
    assert allowed(policy, "ecr:GetAuthorizationToken", "*", {})
    for action, resource, values in deploy_calls(model, account):
        assert allowed(policy, action, resource, values), f"{action} on {resource} is refused"
    for action, resource, values in deploy_calls("quetzal-other-model", account):
        assert not allowed(policy, action, resource, values), f"{action} on another model's {resource}"
    outside_common = [("s3:PutObject", f"arn:aws:s3:::{model}/base/inputs/pt/links.geojson", {}),
                      ("s3:ListBucket", f"arn:aws:s3:::{model}", {"s3:prefix": "base/"}),
                      ("iam:CreateRole", f"arn:aws:iam::{account}:role/anything", {})]
    for action, resource, values in outside_common:
        assert not allowed(policy, action, resource, values), f"{action} on {resource}"

    # The same stack with ci_provider = gitlab, planned (not applied): the role trusts GitLab's issuer,
    # audience and subject, for that project's v* tags only.
    tfvars = ci_repo / "infra" / f"{model}.tfvars"
    gitlab = f'ci_repository = "{GITLAB_PROJECT}"\nci_provider = "gitlab"'
    tfvars.write_text(tfvars.read_text().replace(f'ci_repository = "{REPOSITORY}"', gitlab))
    planned = run_task(ci_repo, "infra", "--plan-only", timeout=900, input="")
    assert planned.returncode == 0, planned.stdout + planned.stderr
    shown = subprocess.run(["terraform", "show", "-json", f"{model}.tfplan"], cwd=ci_repo / "infra",
                           env=os.environ, capture_output=True, text=True, check=True)
    changes = {c["address"]: c["change"]["after"] for c in json.loads(shown.stdout)["resource_changes"]}
    gitlab_trust = json.loads(changes["module.model.aws_iam_role.ci[0]"]["assume_role_policy"])
    provider_change = changes["module.model.aws_iam_openid_connect_provider.ci[0]"]
    assert provider_change["url"] == "https://gitlab.com"
    lab = "gitlab.com"
    def gitlab_token(sub: str, aud: str = "https://gitlab.com") -> dict:
        return {f"{lab}:aud": aud, f"{lab}:sub": sub}

    tag = f"project_path:{GITLAB_PROJECT}:ref_type:tag:ref:v1.2.0"
    assert allowed(gitlab_trust, assume, "*", gitlab_token(tag))
    for sub in (f"project_path:{GITLAB_PROJECT}:ref_type:branch:ref:main",
                "project_path:someone/else:ref_type:tag:ref:v1.2.0"):
        assert not allowed(gitlab_trust, assume, "*", gitlab_token(sub))
    assert not allowed(gitlab_trust, assume, "*", gitlab_token(tag, aud="sts.amazonaws.com"))
    assert not allowed(gitlab_trust, assume, "*", token(f"repo:{REPOSITORY}:ref:refs/tags/v1.2.0"))
