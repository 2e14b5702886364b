"""The model's AWS stack: Terraform in ``infra/``, plus what Terraform cannot do alone.

An image Lambda needs an image before it can be created, so the stack is built in an order
that needs no dummy image: everything but the function first (``create_lambda=false``), then
the model's own image is pushed to the new repository, then the function is created from it.
Destroying empties the versioned bucket and the repository first, so nothing is left by hand.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from quetzal_deploy.aws import RETRIES, Aws, translated, unless_absent
from quetzal_deploy.errors import AwsError, Cancelled, ConfigError
from quetzal_deploy.git import output
from quetzal_deploy.infra.terraform import Terraform
from quetzal_deploy.output import Out
from quetzal_deploy.settings import Settings, read_hcl_strings

Confirm = Callable[[str], bool]
BACKEND_CONFIG = "backend.hcl"
LOCK_FILE = ".terraform.lock.hcl"
S3_DELETE_BATCH = 1000  # most keys DeleteObjects takes
ECR_DELETE_BATCH = 100  # most image ids BatchDeleteImage takes
MISSING_BUCKET = {"NoSuchBucket"}
MISSING_HEAD = {"404", "NoSuchBucket", "NotFound"}
FORBIDDEN_HEAD = {"403", "AccessDenied", "Forbidden"}
MISSING_REPOSITORY = {"RepositoryNotFoundException"}
# The Terraform variables whose value comes from .env (see Stack.variables), never from a .tfvars.
ENV_VARIABLES = ("aws_region", "model_name", "lambda_memory_size", "lambda_timeout",
                 "lambda_storage_size", "lambda_architecture", "auth_function_name",
                 "cognito_identity_pool_id", "config_bucket_name")


def drain(first_page: Callable[[], list], delete: Callable[[list], None]) -> int:
    """Delete the first page of a listing until it is empty (no stale pagination markers)."""
    deleted = 0
    while batch := first_page():
        delete(batch)
        deleted += len(batch)
    return deleted


def empty_bucket(aws: Aws, bucket: str) -> int:
    """Delete every object version and delete marker; a missing bucket is already empty."""
    s3 = aws.client("s3")

    def first_page() -> list[dict[str, str]]:
        page = s3.list_object_versions(Bucket=bucket, MaxKeys=S3_DELETE_BATCH)
        entries = page.get("Versions", []) + page.get("DeleteMarkers", [])
        return [{"Key": e["Key"], "VersionId": e["VersionId"]} for e in entries][:S3_DELETE_BATCH]

    def delete(batch: list[dict[str, str]]) -> None:
        answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        if answer.get("Errors"):
            first = answer["Errors"][0]
            raise AwsError(f"could not delete {len(answer['Errors'])} object(s) from {bucket}, "
                           f"e.g. {first['Key']}: {first.get('Message', first.get('Code'))}")

    return unless_absent(lambda: drain(first_page, delete), MISSING_BUCKET, 0, aws.settings.profile)


def empty_repository(aws: Aws, repository: str) -> int:
    """Delete every image of the ECR repository; a missing repository is already empty."""
    ecr = aws.client("ecr")

    def first_page() -> list[dict[str, str]]:
        page = ecr.list_images(repositoryName=repository, maxResults=ECR_DELETE_BATCH)
        return page.get("imageIds", [])

    def delete(batch: list[dict[str, str]]) -> None:
        answer = ecr.batch_delete_image(repositoryName=repository, imageIds=batch)
        failures = [f for f in answer.get("failures", []) if f.get("failureCode") != "ImageNotFound"]
        if failures:
            raise AwsError(f"could not delete {len(failures)} image(s) from {repository}: "
                           f"{failures[0].get('failureReason', failures[0].get('failureCode'))}")

    return unless_absent(lambda: drain(first_page, delete), MISSING_REPOSITORY, 0, aws.settings.profile)


def latest_image_tag(aws: Aws, repository: str) -> str | None:
    """The tag of the most recently pushed image, or None when there is none yet."""
    ecr = aws.client("ecr")

    def tagged_images() -> list[dict]:
        pages = ecr.get_paginator("describe_images").paginate(
            repositoryName=repository, filter={"tagStatus": "TAGGED"})
        return [image for page in pages for image in page.get("imageDetails", [])]

    images = unless_absent(tagged_images, MISSING_REPOSITORY, [], aws.settings.profile)
    if not images:
        return None
    newest = max(images, key=lambda image: image["imagePushedAt"])
    tags = sorted(newest["imageTags"], key=lambda tag: tag == "latest")
    return tags[0]


def bucket_exists(aws: Aws, bucket: str) -> bool:
    return unless_absent(lambda: bool(aws.client("s3").head_bucket(Bucket=bucket)), MISSING_HEAD, False,
                         aws.settings.profile)


def repository_exists(aws: Aws, repository: str) -> bool:
    return unless_absent(lambda: bool(aws.client("ecr").describe_repositories(repositoryNames=[repository])),
                         MISSING_REPOSITORY, False, aws.settings.profile)


def function_exists(aws: Aws, name: str) -> bool:
    return unless_absent(lambda: bool(aws.client("lambda").get_function(FunctionName=name)),
                         {"ResourceNotFoundException"}, False, aws.settings.profile)


class StateBucket:
    """The team's Terraform state bucket named in infra/backend.hcl (not the model's bucket)."""

    def __init__(self, aws: Aws, name: str, region: str):
        self.aws, self.name, self.region = aws, name, region
        self.s3 = aws.session.client("s3", region_name=region, config=RETRIES)

    def call(self, method: str, **kwargs):
        with translated(self.aws.settings.profile):
            return getattr(self.s3, method)(Bucket=self.name, **kwargs)

    def exists(self) -> bool:
        forbidden = (f"The Terraform state bucket {self.name} exists but this account may not use it (S3 "
                     "bucket names are global: another account may own it). Pick another name in "
                     "infra/backend.hcl (bucket = ...).")
        head = unless_absent(lambda: self.s3.head_bucket(Bucket=self.name), MISSING_HEAD, None,
                             self.aws.settings.profile, dict.fromkeys(FORBIDDEN_HEAD, forbidden))
        return head is not None

    def create(self) -> None:
        """Versioned (every state kept), encrypted, public access blocked."""
        where = {} if self.region == "us-east-1" else {
            "CreateBucketConfiguration": {"LocationConstraint": self.region}}
        self.call("create_bucket", **where)
        self.call("put_bucket_versioning", VersioningConfiguration={"Status": "Enabled"})
        self.call("put_bucket_encryption", ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
        self.call("put_public_access_block", PublicAccessBlockConfiguration={
            "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True})


class Stack:
    """Terraform in the repo's ``infra/``: one workspace per model, the model's ``.tfvars``."""

    def __init__(self, settings: Settings, aws: Aws, terraform: Terraform | None = None,
                 out: Out = print):
        self.settings, self.aws, self.out = settings, aws, out
        self.folder = settings.root / "infra"
        profile = {"AWS_PROFILE": settings.profile} if settings.profile else {}
        self.terraform = terraform or Terraform(self.folder, env=profile)
        self.workspace = settings.model_name
        self.var_file = f"{settings.model_name}.tfvars"
        self.plan_file = f"{settings.model_name}.tfplan"

    @property
    def variables(self) -> dict[str, str]:
        """.env's values for Terraform: passed as -var, they win over anything in a .tfvars."""
        s = self.settings
        values = (s.region, s.model_name, s.memory_mb, s.timeout_s, s.storage_mb, s.architecture,
                  s.auth_function, s.identity_pool_id, s.config_bucket)
        variables = {name: str(value) for name, value in zip(ENV_VARIABLES, values, strict=True)}
        existing = {"existing_bucket_name": s.existing_bucket} if s.existing_bucket else {}
        return {**variables, **self.fargate_variables, **existing}

    @property
    def fargate_variables(self) -> dict[str, str]:
        """The module's Fargate part, created when .env names the network Fargate steps run in."""
        s = self.settings
        if not s.fargate_subnets:
            return {}
        return {"create_fargate": "true", "fargate_cluster_name": s.fargate_cluster,
                "fargate_cpu": str(s.fargate_cpu), "fargate_memory": str(s.fargate_memory_mb),
                "fargate_ephemeral_storage": str(s.fargate_storage_gb),
                "fargate_subnet_ids": json.dumps(list(s.fargate_subnets)),
                "fargate_security_group_ids": json.dumps(list(s.fargate_security_groups))}

    def check_outputs(self) -> None:
        """Read Terraform's outputs back: the resources must carry the names the tasks use."""
        found = self.terraform.outputs()
        s = self.settings
        expected = {"bucket_name": s.bucket, "ecr_repository_url": f"/{s.ecr_repo}",
                    "state_machine_arn": f":stateMachine:{s.state_machine}",
                    "lambda_function_name": s.function_name}
        wrong = [f"{name} = {found[name]}" for name, end in expected.items()
                 if found.get(name) is not None and not str(found[name]).endswith(end)]
        if wrong:
            raise ConfigError(f"Terraform's outputs ({'; '.join(wrong)}) do not name the resources after "
                              f"MODEL_NAME={s.model_name}, as the tasks do: infra/main.tf must pass "
                              "var.model_name as the module's name; undo the change there.")

    @property
    def state_bucket(self) -> StateBucket | None:
        """The shared state bucket of infra/backend.hcl; None with local state."""
        backend = self.folder / BACKEND_CONFIG
        if not backend.is_file():
            return None
        found = read_hcl_strings(backend, "fix it: it names the team's Terraform state bucket.")
        if not found.get("bucket"):
            raise ConfigError(f"infra/{BACKEND_CONFIG} names no bucket: add bucket = \"<state bucket>\".")
        return StateBucket(self.aws, found["bucket"], found.get("region") or self.settings.region)

    def ensure_state_bucket(self) -> None:
        """Create the shared state bucket the first time any model of the team needs it."""
        bucket = self.state_bucket
        if bucket is not None and not bucket.exists():
            bucket.create()
            self.out(f"Created the Terraform state bucket {bucket.name} in {bucket.region} "
                     "(versioned, encrypted, public access blocked).")

    def init(self) -> None:
        """``terraform init`` with infra/backend.hcl when the repo has one."""
        tfvars = self.folder / self.var_file
        if not tfvars.is_file():
            raise ConfigError(f"{tfvars} not found: it holds Terraform's own settings (CORS origins, "
                              "log retention); restore it from git (`git checkout -- infra/`).")
        backend = self.folder / BACKEND_CONFIG
        self.terraform.init(backend if backend.is_file() else None)
        self.remind_lock_file()

    def remind_lock_file(self) -> None:
        """``terraform init`` records the provider build: it belongs in git, like a lock file."""
        lock = self.folder / LOCK_FILE
        if lock.is_file() and output(self.settings.root, "ls-files", "--", f"infra/{LOCK_FILE}") == "":
            self.out(f"infra/{LOCK_FILE} records the provider versions and checksums: commit it "
                     f"(`git add infra/{LOCK_FILE}`) so every machine uses the same provider.")

    def prepare(self) -> None:
        """Create the state bucket if needed, initialise, select (or create) the model's workspace."""
        self.ensure_state_bucket()
        self.init()
        self.terraform.use_workspace(self.workspace)

    def image_variables(self) -> dict[str, str]:
        """Create the function from the newest pushed image; without one, everything else only."""
        tag = latest_image_tag(self.aws, self.settings.ecr_repo)
        if tag:
            return {"image_tag": tag}
        if function_exists(self.aws, self.settings.function_name):
            raise AwsError(f"ECR repository {self.settings.ecr_repo} has no tagged image but Lambda "
                           f"function {self.settings.function_name} exists: run `invoke push` first.")
        return {"create_lambda": "false"}

    def apply(self, variables: dict[str, str], confirm: Confirm, plan_only: bool = False,
              inspect: Callable[[], None] | None = None) -> None:
        """Plan (terraform prints it), then ask and apply when it changes anything; ``inspect``
        may refuse the saved plan (by raising) before anything is asked or applied."""
        plan = self.folder / self.plan_file
        try:
            changes = self.terraform.plan(self.plan_file, self.var_file, {**self.variables, **variables})
            if not changes:
                self.out(f"{self.settings.model_name}: the stack is up to date, nothing to apply.")
                return
            if inspect is not None:
                inspect()
            if plan_only:
                self.out(f"Plan only: nothing was applied (plan saved in infra/{self.plan_file}).")
                return
            if not confirm(f"Apply this plan to {self.settings.model_name} "
                           f"in {self.settings.region}?"):
                raise Cancelled("Cancelled: nothing was applied.")
            self.terraform.apply(self.plan_file)
            self.check_outputs()
        finally:
            if not plan_only:
                plan.unlink(missing_ok=True)

    def check_destroy(self) -> bool:
        """What ``destroy`` needs, checked before anything is deleted: terraform runs, the credentials
        work, the state is reachable and a destroy plan can be made. False when Terraform has
        nothing to destroy (no state bucket, no workspace)."""
        self.terraform.executable  # noqa: B018  (raises with the install hint)
        self.aws.account_id  # noqa: B018  (raises with the login hint)
        bucket = self.state_bucket
        if bucket is not None and not bucket.exists():
            self.out(f"No Terraform state bucket {bucket.name}: nothing left for Terraform to destroy.")
            return False
        self.init()
        if not self.terraform.has_workspace(self.workspace):
            self.out(f"No Terraform workspace {self.workspace}: nothing left for Terraform to destroy.")
            return False
        try:
            self.terraform.plan_destroy(self.plan_file, self.var_file, self.variables)
        finally:
            (self.folder / self.plan_file).unlink(missing_ok=True)
        return True

    def destroy(self) -> None:
        """``terraform destroy`` then delete the workspace (after ``check_destroy`` said there is one)."""
        self.terraform.destroy(self.var_file, self.variables)
        self.terraform.delete_workspace(self.workspace)
        self.out(f"Deleted Terraform workspace {self.workspace}.")


def update(stack: Stack, confirm: Confirm, plan_only: bool = False) -> None:
    """``invoke infra``: bring the stack in line with infra/ (the function once an image exists)."""
    stack.prepare()
    variables = stack.image_variables()
    stack.apply(variables, confirm, plan_only)
    if "create_lambda" in variables and not plan_only:
        stack.out("The Lambda function is created once the model's image is pushed: "
                  "run `invoke deploy` (or `invoke push --initial` then `invoke infra`).")


def push_image(settings: Settings, aws: Aws) -> str:
    """Build and push the model's image (pointing the function at it when it exists); its tag."""
    from quetzal_deploy.images.registry import push, tag_of

    return tag_of(push(settings, aws, initial=True))


def update_steps(settings: Settings, aws: Aws) -> None:
    from quetzal_deploy.pipeline.stepfunctions import update_steps

    update_steps(settings, aws, dry_run=False)


def upload_base(settings: Settings, aws: Aws, email: str | None) -> None:
    from quetzal_deploy.sync.scenarios import ScenarioStore, user_email

    store = ScenarioStore(settings, aws)
    plan = store.plan_upload("base")
    print("\n".join(plan.describe()))
    if plan.changes:
        store.upload(plan, user_email(settings, email))


def revoke_access(settings: Settings, aws: Aws) -> None:
    from quetzal_deploy.access.cognito import revoke_model

    revoke_model(settings, aws)


def deploy(stack: Stack, confirm: Confirm, email: str | None = None) -> None:
    """``invoke deploy``: stack without function, image, function, pipeline, base scenario.

    Each step updates what exists, so re-running it on a deployed model is safe.
    """
    settings, aws, out = stack.settings, stack.aws, stack.out
    stack.prepare()
    out("1/5 Terraform: bucket, ECR repository, roles and state machine")
    stack.apply(stack.image_variables(), confirm)
    had_function = function_exists(aws, settings.function_name)
    out("2/5 Image: build and push the model's image")
    tag = push_image(settings, aws)
    if had_function:
        out(f"3/5 Lambda function {settings.function_name} exists: the push updated it")
    else:
        out(f"3/5 Terraform: Lambda function from image {tag}")
        stack.apply({"image_tag": tag}, confirm)
    out("4/5 State machine: deploy step-functions.json")
    update_steps(settings, aws)
    out("5/5 Scenarios: upload the base scenario")
    upload_base(settings, aws, email)
    out(f"{settings.model_name} is deployed.")


def destroy(stack: Stack) -> None:
    """``invoke destroy``: revoke access, empty bucket and repository, destroy stack and workspace.

    Missing pieces count as already deleted, so re-running after a partial failure is safe.
    """
    settings, aws, out = stack.settings, stack.aws, stack.out
    tracked = stack.check_destroy()
    own_bucket = not settings.existing_bucket and bucket_exists(aws, settings.bucket)
    if not tracked and own_bucket:
        raise ConfigError(f"s3://{settings.bucket} exists but Terraform has no state for "
                          f"{settings.model_name} (infra/{BACKEND_CONFIG}, workspace {stack.workspace}): "
                          "it could not delete the stack after the data. Nothing was deleted; restore the "
                          "state (or point infra/backend.hcl at it), then re-run.")
    revoke_access(settings, aws)
    if settings.existing_bucket:
        out(f"Kept s3://{settings.bucket}: an existing bucket this model uses (EXISTING_BUCKET_NAME), "
            "not its own; nothing of it is deleted")
    else:
        out(f"Deleted {empty_bucket(aws, settings.bucket)} object version(s) from s3://{settings.bucket}")
    out(f"Deleted {empty_repository(aws, settings.ecr_repo)} image(s) from ECR {settings.ecr_repo}")
    if tracked:
        stack.destroy()
    own_bucket = not settings.existing_bucket and bucket_exists(aws, settings.bucket)
    left = [f"bucket s3://{settings.bucket}"] * own_bucket + \
        [f"ECR repository {settings.ecr_repo}"] * repository_exists(aws, settings.ecr_repo)
    if left:
        raise AwsError(f"{' and '.join(left)} still exist(s) after terraform destroy (emptied): "
                       "delete it in the AWS console or re-run `invoke destroy`.")
    out(f"{settings.model_name} is destroyed.")
