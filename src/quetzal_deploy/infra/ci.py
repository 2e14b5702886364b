"""``invoke ci-bootstrap``: the one-time steps that let a model repo's GitHub Actions deploy it
(the Terraform module's CI part, ``ci.tf``, and the workflow's repository variable)."""

from __future__ import annotations

import re
from pathlib import Path

import hcl2
from lark.exceptions import LarkError

from quetzal_deploy.errors import ConfigError
from quetzal_deploy.git import output
from quetzal_deploy.output import Out
from quetzal_deploy.settings import Settings

ROLE_VARIABLE = "QUETZAL_DEPLOY_ROLE_ARN"
GITHUB_REMOTE = re.compile(r"github\.com[:/]([A-Za-z0-9-]+/[A-Za-z0-9._-]+?)(?:\.git)?/?$")


def tfvars_path(settings: Settings) -> Path:
    return settings.root / "infra" / f"{settings.model_name}.tfvars"


def configured_repository(settings: Settings) -> str:
    """``ci_repository`` of the model's .tfvars ('' when unset)."""
    path = tfvars_path(settings)
    try:
        with path.open(encoding="utf-8") as handle:
            value = hcl2.load(handle).get("ci_repository", "")
    except FileNotFoundError:
        raise ConfigError(f"{path} is missing: restore it from git (git log shows it).") from None
    except LarkError as ex:
        raise ConfigError(f"{path} is not valid HCL ({ex}): fix it, then run ci-bootstrap again.") from ex
    return str(value).strip('"')


def remote_repository(root: Path) -> str:
    """owner/name of the ``origin`` remote when it is on GitHub, else ''."""
    found = GITHUB_REMOTE.search(output(root, "remote", "get-url", "origin") or "")
    return found.group(1) if found else ""


def bootstrap(settings: Settings, out: Out = print) -> None:
    """Print what to do once so the workflow in .github/workflows/ci.yml can deploy."""
    tfvars = tfvars_path(settings).relative_to(settings.root)
    repository = configured_repository(settings)
    role = f"{settings.model_name}-ci-deploy"
    if repository:
        out(f"1. {tfvars} sets ci_repository = \"{repository}\": done.")
    else:
        guess = remote_repository(settings.root) or "<owner>/<name>"
        out(f"1. Add to {tfvars}:  ci_repository = \"{guess}\"  (the repository whose CI deploys).\n"
            "   If the AWS account already has GitHub's OIDC provider (another model created it), add too:\n"
            "   ci_oidc_provider_arn = \"arn:aws:iam::<account>:oidc-provider/"
            "token.actions.githubusercontent.com\"")
    out(f"2. Run `invoke infra`: it creates the deploy role {role}, trusted only for that\n"
        "   repository's deploy ref (ci_deploy_ref in infra/variables.tf), and prints its ARN\n"
        "   (the output ci_deploy_role_arn).")
    out(f"3. In GitHub: Settings > Secrets and variables > Actions > Variables, add {ROLE_VARIABLE}\n"
        f"   = that ARN (or `gh variable set {ROLE_VARIABLE} --body <arn>`). It is not a secret: only that\n"
        "   repository's workflow can assume the role.")
    pinned = (settings.root / "requirements-dev.txt").read_text(encoding="utf-8")
    if "quetzal-deploy @ file:" in pinned:
        out("WARNING: requirements-dev.txt pins quetzal-deploy to a file on this machine, which a CI runner "
            "cannot install: pin `quetzal-deploy @ git+<url>@<tag>` or `quetzal-deploy==<version>`.")
