"""Access of the front end's users to the model: Cognito groups, IAM roles, cognito_group_access.json.

Terraform creates the model's user role ``<model>-user`` (trusted by the Cognito identity pool)
with its S3 policy inline, also named ``<model>-user``; a model adopted from the backend's
Terraform keeps the names ``resource_names`` of its ``infra/<model>.tfvars`` gives (role
``Cognito_quetzal_pool_<model>``, managed policy ``s3_read_put_<model>``). A group gets the model
either by using that role, or by a copy of that policy on the role it already uses. The front end's backend
lists a user's models from the policies of the user's role (the second statement of each, an
Allow on ``arn:aws:s3:::<model>/*``: the order terraform/user_role.tf keeps), and the group is
also listed in ``cognito_group_access.json`` in the shared config bucket.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from quetzal_deploy.aws import CONDITION_FAILED, Aws, s3_object, translated, unless_absent
from quetzal_deploy.errors import AwsError, ConfigError
from quetzal_deploy.output import Out
from quetzal_deploy.settings import Settings, read_hcl, tfvars_path

ACCESS_KEY = "cognito_group_access.json"
WRITE_ATTEMPTS = 8
T = TypeVar("T")


@dataclass(frozen=True)
class UserRole:
    """The model's user role and its S3 policy: inline, or ``managed`` and attached to the role."""

    role: str
    policy: str
    managed: bool = False


def user_role(settings: Settings) -> UserRole:
    """The names terraform/names.tf gives: infra/<model>.tfvars's ``resource_names``, or ``<model>-user``."""
    path = tfvars_path(settings)
    names: dict[str, Any] = {}
    if path.is_file():
        fix = "fix it, Terraform reads the user role's name there."
        names = read_hcl(path, fix).get("resource_names") or {}
    default = f"{settings.model_name}-user"
    named = {key: str(names[key]).strip('"') for key in ("user_role", "user_policy") if names.get(key)}
    return UserRole(named.get("user_role", default), named.get("user_policy", default),
                    names.get("user_policy_managed") is True)


def role_name(role_arn: str) -> str:
    """``arn:aws:iam::1:role/path/name`` -> ``name``."""
    return role_arn.rsplit("/", 1)[-1]


class AccessFile:
    """``cognito_group_access.json``: ``{"<group>": ["<model>", ...]}`` in the config bucket.

    Every change is a read-modify-write made conditional on what was read (S3 conditional
    writes: ``If-Match`` on the ETag read, ``If-None-Match: *`` when there was no file), so two
    admins granting at once never lose a group: the one whose write is refused (412) reads the
    other's file and applies its change again.
    """

    def __init__(self, s3, bucket: str, profile: str | None = None, attempts: int = WRITE_ATTEMPTS):
        self.s3, self.bucket, self.profile, self.attempts = s3, bucket, profile, attempts

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{ACCESS_KEY}"

    def read(self) -> dict[str, list[str]]:
        return self.read_tagged()[0]

    def read_tagged(self) -> tuple[dict[str, list[str]], str | None]:
        """The groups and the ETag they were read at (None: no file yet)."""
        found = s3_object(self.s3, self.bucket, ACCESS_KEY, self.profile, self.known)
        if found is None:
            return {}, None
        body, etag = found
        try:
            groups = json.loads(body)
        except json.JSONDecodeError as ex:
            raise AwsError(f"{self.url} is not valid JSON ({ex.msg}, line {ex.lineno}): fix it by hand "
                           "before granting access") from ex
        if not isinstance(groups, dict) or not all(isinstance(m, list) for m in groups.values()):
            raise AwsError(f"{self.url} must be a JSON object of group names to lists of models: fix it "
                           "by hand before granting access")
        return groups, etag

    def exists(self) -> bool:
        return unless_absent(lambda: self.s3.head_bucket(Bucket=self.bucket) is not None,
                             {"NoSuchBucket", "404"}, False, self.profile, self.known)

    def write(self, groups: dict[str, list[str]], etag: str | None) -> bool:
        """Write if the file is still as read at ``etag``; False when someone changed it since."""
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        return unless_absent(
            lambda: self.s3.put_object(Bucket=self.bucket, Key=ACCESS_KEY, ContentType="application/json",
                                       Body=json.dumps(groups, indent=2).encode(), **condition) is not None,
            CONDITION_FAILED, False, self.profile, self.known)

    def update(self, change: Callable[[dict[str, list[str]]], T]) -> T:
        """Apply ``change`` (in place, returning whether and what it changed) until it is stored."""
        for attempt in range(self.attempts):
            groups, etag = self.read_tagged()
            result = change(groups)
            if not result or self.write(groups, etag):
                return result
            time.sleep(random.uniform(0, 0.2 * 2 ** attempt))  # the other writer is done by then
        raise AwsError(f"{self.url} kept changing while it was being updated ({self.attempts} tries): "
                       "someone else is granting access right now; run the command again")

    @property
    def known(self) -> dict[str, str]:
        return {"NoSuchBucket": f"Config bucket {self.bucket} does not exist: create it, or set "
                                "CONFIG_BUCKET_NAME in .env to the shared config bucket."}

    def add(self, group: str, model: str) -> bool:
        """List ``model`` for ``group``; False when it already was."""

        def change(groups: dict[str, list[str]]) -> bool:
            models = groups.setdefault(group, [])
            if model in models:
                return False
            models.append(model)
            return True

        return self.update(change)

    def remove(self, model: str, only_group: str | None = None) -> list[str]:
        """Unlist ``model`` from ``only_group`` (default: every group); returns those changed."""

        def change(groups: dict[str, list[str]]) -> list[str]:
            changed = [g for g, models in groups.items() if model in models and only_group in (None, g)]
            for group in changed:
                groups[group].remove(model)
                if not groups[group]:
                    del groups[group]
            return changed

        return self.update(change)


class ModelAccess:
    """The model's user role and S3 policy, and the Cognito groups that use them."""

    def __init__(self, iam, cognito, settings: Settings):
        self.iam, self.cognito, self.settings = iam, cognito, settings
        names = user_role(settings)
        self.user_role, self.policy_name, self.managed = names.role, names.policy, names.managed

    def call(self, client, method: str, **kwargs) -> dict[str, Any]:
        with translated(self.settings.profile):
            return getattr(client, method)(**kwargs)

    def role_errors(self):
        """AWS errors translated; a missing role or policy says how ``invoke infra`` creates them."""
        return translated(self.settings.profile, {"NoSuchEntity": (
            f"IAM role {self.user_role} or its policy {self.policy_name} does not exist: set "
            "COGNITO_IDENTITY_POOL_ID in .env and run `invoke infra`, which creates them.")})

    def user_role_arn(self) -> str:
        with self.role_errors():
            return self.iam.get_role(RoleName=self.user_role)["Role"]["Arn"]

    def policy_document(self) -> str:
        """The model's S3 policy, as JSON text."""
        with self.role_errors():
            if self.managed:
                policy = self.managed_policy_document()
            else:
                policy = self.iam.get_role_policy(RoleName=self.user_role,
                                                  PolicyName=self.policy_name)["PolicyDocument"]
        return policy if isinstance(policy, str) else json.dumps(policy)

    def managed_policy_document(self) -> str | dict:
        """The default version of the managed policy attached to the user role."""
        pages = self.iam.get_paginator("list_attached_role_policies").paginate(RoleName=self.user_role)
        arns = [p["PolicyArn"] for page in pages for p in page["AttachedPolicies"]
                if p["PolicyName"] == self.policy_name]
        if not arns:
            raise AwsError(f"Role {self.user_role} has no managed policy {self.policy_name} attached: "
                           "run `invoke infra`, which attaches it.")
        version = self.iam.get_policy(PolicyArn=arns[0])["Policy"]["DefaultVersionId"]
        return self.iam.get_policy_version(PolicyArn=arns[0], VersionId=version)["PolicyVersion"]["Document"]

    def check_user_pool(self) -> None:
        missing = (f"Cognito user pool {self.settings.user_pool_id} does not exist: "
                   "fix COGNITO_USER_POOL_ID in .env.")
        with translated(self.settings.profile, {"ResourceNotFoundException": missing}):
            self.cognito.describe_user_pool(UserPoolId=self.settings.user_pool_id)

    def group(self, name: str) -> dict[str, Any] | None:
        """The Cognito group, or None when the (existing) user pool has no such group."""
        return unless_absent(
            lambda: self.cognito.get_group(GroupName=name, UserPoolId=self.settings.user_pool_id)["Group"],
            {"ResourceNotFoundException"}, None, self.settings.profile)

    def grant(self, name: str, out: Out) -> None:
        """Give group ``name`` the model: create it with the user role, or extend its own role."""
        self.check_user_pool()
        role_arn = self.user_role_arn()
        group = self.group(name)
        pool = self.settings.user_pool_id
        if group is None:
            self.call(self.cognito, "create_group", GroupName=name, UserPoolId=pool, RoleArn=role_arn,
                      Description=f"Users of the quetzal model {self.settings.model_name}")
            out(f"Created Cognito group {name} with role {self.user_role}")
        elif not group.get("RoleArn"):
            self.call(self.cognito, "update_group", GroupName=name, UserPoolId=pool, RoleArn=role_arn,
                      Description=group.get("Description", ""))
            out(f"Cognito group {name} had no role: it now uses {self.user_role}")
        elif role_name(group["RoleArn"]) == self.user_role:
            out(f"Cognito group {name} already uses role {self.user_role}")
        else:
            role = role_name(group["RoleArn"])
            self.call(self.iam, "put_role_policy", RoleName=role, PolicyName=self.policy_name,
                      PolicyDocument=self.policy_document())
            out(f"Put policy {self.policy_name} on role {role} of Cognito group {name}")

    def revoke(self, name: str, out: Out) -> None:
        """Undo :meth:`grant`: delete a group made for the model, or remove the policy from its role."""
        self.check_user_pool()
        group = self.group(name)
        if group is None or not group.get("RoleArn"):
            out(f"Cognito group {name} has no role giving access to {self.settings.model_name}")
        elif role_name(group["RoleArn"]) == self.user_role:
            self.call(self.cognito, "delete_group", GroupName=name, UserPoolId=self.settings.user_pool_id)
            out(f"Deleted Cognito group {name} (its role was {self.user_role})")
        else:
            self.remove_policy(role_name(group["RoleArn"]), out)

    def remove_policy(self, role: str, out: Out) -> None:
        removed = unless_absent(
            lambda: self.iam.delete_role_policy(RoleName=role, PolicyName=self.policy_name) is not None,
            {"NoSuchEntity"}, False, self.settings.profile)
        out(f"Removed policy {self.policy_name} from role {role}" if removed
            else f"Role {role} has no policy {self.policy_name}")


def require(settings: Settings, *keys: str) -> None:
    fields = {"CONFIG_BUCKET_NAME": settings.config_bucket, "COGNITO_USER_POOL_ID": settings.user_pool_id}
    missing = [key for key in keys if not fields[key]]
    if missing:
        raise ConfigError(f"Set {' and '.join(missing)} in .env (or .env.local) to manage access "
                          "of the front end's users.")


def model_access(settings: Settings, aws: Aws) -> tuple[ModelAccess, AccessFile]:
    access = ModelAccess(aws.client("iam"), aws.client("cognito-idp"), settings)
    return access, AccessFile(aws.client("s3"), settings.config_bucket, settings.profile)


def grant_access(settings: Settings, aws: Aws, group: str, revoke: bool = False, out: Out = print) -> None:
    """Give (or with ``revoke`` take back) Cognito group ``group`` access to the model."""
    require(settings, "CONFIG_BUCKET_NAME", "COGNITO_USER_POOL_ID")
    access, listing = model_access(settings, aws)
    listing.read()  # a missing bucket or a broken file stops here, before any group changes
    model = settings.model_name
    if revoke:
        access.revoke(group, out)
        removed = listing.remove(model, only_group=group)
        out(f"Removed {model} from {group} in {listing.url}" if removed
            else f"{model} was not listed for {group} in {listing.url}")
        return
    access.grant(group, out)
    if listing.add(group, model):
        out(f"Added {model} to {group} in {listing.url}")
    else:
        out(f"{model} was already listed for {group} in {listing.url}")


def revoke_model(settings: Settings, aws: Aws, out: Out = print) -> None:
    """Take the model away from every group (before ``invoke destroy``): roles, policy, listing."""
    access, listing = model_access(settings, aws)
    if settings.config_bucket and listing.exists():
        groups = [g for g, models in listing.read().items() if settings.model_name in models]
        for group in groups if settings.user_pool_id else ():
            access.revoke(group, out)
        for group in listing.remove(settings.model_name):
            out(f"Removed {settings.model_name} from {group} in {listing.url}")
    else:
        out(f"No config bucket {settings.config_bucket!r}: no group listing to update")
