"""``invoke infra --adopt``: the stack the backend's Terraform deployed moves into the model's own
state without being replaced.

The live resources are found by their production names and imported with Terraform ``import``
blocks (a generated ``infra/adopt_imports.tf``, removed after the apply). The plan is refused
before any apply when it would destroy or replace a bucket, a repository, a function, a state
machine or a role (Cognito groups and the front end hold on to them). Once applied, the same
resources are removed from the old workspace's state (a copy of it kept beside it), so the old
configuration can no longer destroy what the model's state now manages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property

from quetzal_deploy.adopt import production
from quetzal_deploy.aws import Aws, translated, unless_absent
from quetzal_deploy.errors import QuetzalError
from quetzal_deploy.infra.stack import Confirm, Stack

IMPORTS_FILE = "adopt_imports.tf"
MODULE = "module.model."
# Never destroyed or replaced by an adoption: what holds data, images, ARNs others call, and
# roles (a Cognito group's role ARN is its users' access).
PROTECTED = {"aws_s3_bucket", "aws_ecr_repository", "aws_lambda_function", "aws_sfn_state_machine",
             "aws_iam_role"}
ABSENT = {"NoSuchEntity", "NoSuchBucket", "404", "NotFound", "ResourceNotFoundException",
          "RepositoryNotFoundException", "StateMachineDoesNotExist", "NoSuchCORSConfiguration",
          "NoSuchKey"}


class AdoptionRefused(QuetzalError):
    """The adoption would lose something, or cannot start: nothing was applied."""


@dataclass(frozen=True)
class Found:
    """A live resource: where it goes in our module, its import id, and how the old state names it."""

    address: str
    id: str
    kind: str
    identity: tuple[tuple[str, str], ...]  # attributes of its instance in a state file

    def hcl(self) -> str:
        return f"import {{\n  to = {MODULE}{self.address}\n  id = {json.dumps(self.id)}\n}}\n"

    def matches(self, kind: str, attributes: dict) -> bool:
        return kind == self.kind and all(attributes.get(key) == value for key, value in self.identity)


def found(address: str, kind: str, import_id: str, **identity: str) -> Found:
    return Found(address, import_id, kind, tuple((identity or {"id": import_id}).items()))


class LiveStack:
    """The production resources of one model that exist in the account."""

    def __init__(self, aws: Aws, model: str):
        self.aws, self.model = aws, model
        self.names = production.resource_names(model)
        self.iam = aws.client("iam")

    def exists(self, call) -> bool:
        return unless_absent(lambda: call() is not None, ABSENT, False, self.aws.settings.profile)

    @cached_property
    def caller(self) -> tuple[str, str]:
        """(partition, account id) of the credentials."""
        with translated(self.aws.settings.profile):
            caller = self.aws.client("sts").get_caller_identity()
        return caller["Arn"].split(":")[1], caller["Account"]

    @property
    def policy_prefix(self) -> str:
        partition, account = self.caller
        return f"arn:{partition}:iam::{account}:policy/"

    def attached(self, role: str, policy_arn: str) -> bool:
        listed = self.iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
        return any(p["PolicyArn"] == policy_arn for p in listed)

    def role_parts(self, role_key: str, address: str) -> list[Found]:
        role = self.names[role_key]
        if not self.exists(lambda: self.iam.get_role(RoleName=role)):
            return []
        return [found(f"aws_iam_role.{address}", "aws_iam_role", role)]

    def inline(self, address: str, role: str, policy: str) -> list[Found]:
        if not self.exists(lambda: self.iam.get_role_policy(RoleName=role, PolicyName=policy)):
            return []
        return [found(address, "aws_iam_role_policy", f"{role}:{policy}")]

    def managed(self, address: str, attachment: str, role: str, policy: str) -> list[Found]:
        """A managed policy (unless shared) and its attachment to ``role``."""
        arn = self.policy_prefix + policy
        parts = []
        if address and self.exists(lambda: self.iam.get_policy(PolicyArn=arn)):
            parts.append(found(address, "aws_iam_policy", arn))
        if self.exists(lambda: self.iam.get_role(RoleName=role)) and self.attached(role, arn):
            parts.append(found(attachment, "aws_iam_role_policy_attachment", f"{role}/{arn}",
                               role=role, policy_arn=arn))
        return parts

    def storage(self) -> list[Found]:
        s3, ecr, logs, m = self.aws.client("s3"), self.aws.client("ecr"), self.aws.client("logs"), self.model
        parts = []
        if self.exists(lambda: s3.head_bucket(Bucket=m)):
            parts.append(found("aws_s3_bucket.this[0]", "aws_s3_bucket", m))
            if self.exists(lambda: s3.get_bucket_cors(Bucket=m)):
                kind = "aws_s3_bucket_cors_configuration"
                parts.append(found(f"{kind}.this[0]", kind, m))
        if self.exists(lambda: ecr.describe_repositories(repositoryNames=[m])):
            parts.append(found("aws_ecr_repository.this", "aws_ecr_repository", m))
        group = f"/aws/lambda/{m}"
        listed = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
        if any(g["logGroupName"] == group for g in listed):
            parts.append(found("aws_cloudwatch_log_group.lambda", "aws_cloudwatch_log_group", group))
        return parts

    def function(self) -> list[Found]:
        n, m = self.names, self.model
        parts = self.role_parts("lambda_role", "lambda")
        parts += self.inline("aws_iam_role_policy.lambda", n["lambda_role"], n["lambda_policy"])
        key = json.dumps(n["lambda_logging_policy"])
        parts += self.managed(f"aws_iam_policy.lambda_logging[{key}]",
                              f"aws_iam_role_policy_attachment.lambda_logging[{key}]",
                              n["lambda_role"], n["lambda_logging_policy"])
        if self.exists(lambda: self.aws.client("lambda").get_function(FunctionName=m)):
            parts.append(found("aws_lambda_function.this[0]", "aws_lambda_function", m))
        return parts

    def pipeline(self) -> list[Found]:
        n = self.names
        parts = self.role_parts("states_role", "states")
        parts += self.inline("aws_iam_role_policy.states", n["states_role"], n["states_policy"])
        partition, account = self.caller
        machine = f"arn:{partition}:states:{self.aws.settings.region}:{account}:stateMachine:{self.model}"
        sfn = self.aws.client("stepfunctions")
        if self.exists(lambda: sfn.describe_state_machine(stateMachineArn=machine)):
            parts.append(found("aws_sfn_state_machine.this", "aws_sfn_state_machine", machine))
        return parts

    def users(self) -> list[Found]:
        n = self.names
        parts = self.role_parts("user_role", "user[0]")
        parts += self.managed("aws_iam_policy.user[0]", "aws_iam_role_policy_attachment.user[0]",
                              n["user_role"], n["user_policy"])
        config = json.dumps(production.CONFIG_POLICY)
        parts += self.managed("", f"aws_iam_role_policy_attachment.user_managed[{config}]",
                              n["user_role"], production.CONFIG_POLICY)
        parts += self.inline("aws_iam_role_policy.admin[0]", production.ADMIN_ROLE, n["admin_policy"])
        return parts

    def ecs_mode(self) -> bool:
        """The backend's whole-model ECS mode: a task definition family <model>-task."""
        ecs = self.aws.client("ecs")
        families = ecs.list_task_definition_families(familyPrefix=f"{self.model}-task", status="ACTIVE")
        return bool(families.get("families"))

    def find(self) -> list[Found]:
        with translated(self.aws.settings.profile):
            return [*self.storage(), *self.function(), *self.pipeline(), *self.users()]


def user_role_pool(aws: Aws, role: str) -> str:
    from quetzal_deploy.adopt.answers import identity_pool

    iam = aws.client("iam")
    got = unless_absent(lambda: iam.get_role(RoleName=role), ABSENT, None, aws.settings.profile)
    return identity_pool(got["Role"]["AssumeRolePolicyDocument"]) if got else ""


def check_ready(stack: Stack, live: LiveStack, parts: list[Found]) -> None:
    """The repo must be adopted (production names in its tfvars) and its .env must match the stack."""
    tfvars = stack.folder / stack.var_file
    if "resource_names" not in (tfvars.read_text(encoding="utf-8") if tfvars.is_file() else ""):
        raise AdoptionRefused(f"infra/{stack.var_file} holds no resource_names: run `quetzal-deploy adopt` "
                              "in this repo first (it writes the production names there).")
    if not any(p.kind == "aws_s3_bucket" for p in parts):
        raise AdoptionRefused(f"No bucket {live.model} in this account and region: nothing to adopt "
                              "(check AWS_REGION and your profile).")
    if not any(p.kind == "aws_lambda_function" for p in parts) and live.ecs_mode():
        raise AdoptionRefused(
            f"{live.model} runs in the backend's whole-model ECS mode (task definition {live.model}-task, no "
            "Lambda): our stack runs its steps on Lambda (and single steps on Fargate). Keep it on the "
            "backend's Terraform for now; nothing was changed.")
    pool = user_role_pool(stack.aws, live.names["user_role"])
    if pool and stack.settings.identity_pool_id != pool:
        raise AdoptionRefused(f"The live user role {live.names['user_role']} trusts identity pool {pool}: "
                              f"set COGNITO_IDENTITY_POOL_ID={pool} in .env (so the role is kept, not "
                              "dropped), commit, and run again.")


def refusals(plan: dict) -> list[str]:
    """The changes of a ``terraform show -json`` plan that would lose a protected resource."""
    wrong = []
    for change in plan.get("resource_changes", []):
        actions = change.get("change", {}).get("actions", [])
        if change.get("type") in PROTECTED and "delete" in actions:
            verb = "replace" if "create" in actions else "destroy"
            wrong.append(f"{verb} {change['address']}")
    return wrong


def detach(aws: Aws, parts: list[Found], bucket: str, key: str, region: str) -> tuple[list[str], list[str]]:
    """Remove the adopted resources from the old state (backup beside it): (detached, left there)."""
    s3 = aws.session.client("s3", region_name=region)
    with translated(aws.settings.profile):
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        state = json.loads(body)
        detached, kept, left = [], [], []
        for resource in state.get("resources", []):
            address = ".".join(filter(None, [resource.get("module"), resource["type"], resource["name"]]))
            managed = resource.get("mode") == "managed"
            if managed and all(any(p.matches(resource["type"], i.get("attributes", {})) for p in parts)
                               for i in resource.get("instances", [])):
                detached.append(address)
                continue
            kept.append(resource)
            if managed:
                left.append(address)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        s3.put_object(Bucket=bucket, Key=f"{key}.before-adoption-{stamp}", Body=body)
        state["resources"], state["serial"] = kept, state.get("serial", 0) + 1
        s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(state, indent=2).encode())
    return detached, left


def old_state_location(url: str | None) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key); None: the backend's."""
    if not url:
        return production.OLD_STATE_BUCKET, production.OLD_STATE_KEY
    bucket, _, key = url.removeprefix("s3://").partition("/")
    if not url.startswith("s3://") or not bucket or not key:
        raise AdoptionRefused(f"--old-state {url!r} is not s3://<bucket>/<key> (the old backend's bucket "
                              "and key, without the env:/<workspace>/ prefix).")
    return bucket, key


def adopt(stack: Stack, confirm: Confirm, old_bucket: str = production.OLD_STATE_BUCKET,
          old_key: str = production.OLD_STATE_KEY, old_region: str | None = None,
          plan_only: bool = False) -> None:
    """Import, check the plan, apply, detach from the old state; prints each step. ``plan_only``:
    the checked plan and nothing else (no import, no detach)."""
    settings, out = stack.settings, stack.out
    live = LiveStack(stack.aws, settings.model_name)
    parts = live.find()
    check_ready(stack, live, parts)
    state_key = production.old_state_key(settings.model_name, old_key)
    out(f"Found {len(parts)} live resource(s) of {settings.model_name} to import:")
    out("\n".join(f"  {MODULE}{p.address} <- {p.id}" for p in parts))
    imports = stack.folder / IMPORTS_FILE
    imports.write_text("# Written by `invoke infra --adopt`; removed once the stack is imported.\n"
                       + "\n".join(p.hcl() for p in parts), encoding="utf-8")
    try:
        stack.prepare()

        def inspect() -> None:
            wrong = refusals(stack.terraform.show_json(stack.plan_file))
            if wrong:
                raise AdoptionRefused("This plan would " + "; ".join(wrong) + ". Nothing was applied: the "
                                      "names in infra/" + stack.var_file + " or .env differ from the live "
                                      "stack's. Fix them and run `invoke infra --adopt` again.")

        stack.apply(stack.image_variables(), confirm, plan_only, inspect=inspect)
    finally:
        imports.unlink(missing_ok=True)
    if plan_only:
        return
    detached, left = detach(stack.aws, parts, old_bucket, state_key, old_region or settings.region)
    out(f"Detached from the old state s3://{old_bucket}/{state_key} (backup beside it, "
        f"{state_key}.before-adoption-*):")
    out("\n".join(f"  {address}" for address in detached) or "  nothing")
    if left:
        out("Still in the old state (not part of our stack; the old configuration still manages them):\n"
            + "\n".join(f"  {address}" for address in left))
    out(f"{settings.model_name} is adopted: `invoke infra` manages it from now on; do not run the backend's "
        f"Terraform for workspace {settings.model_name} again.")

