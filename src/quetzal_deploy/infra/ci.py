"""``invoke ci-bootstrap``: the one-time steps that let a model repo's GitHub Actions or GitLab CI/CD
deploy it (the Terraform module's CI part, ``ci.tf``, and the pipeline's role variable)."""

from __future__ import annotations

import re
from pathlib import Path

from quetzal_deploy.git import output
from quetzal_deploy.output import Out
from quetzal_deploy.settings import Settings, read_hcl_strings, tfvars_path

ROLE_VARIABLE = "QUETZAL_DEPLOY_ROLE_ARN"
REMOTES = {"github": re.compile(r"github\.com[:/]([A-Za-z0-9-]+/[A-Za-z0-9._-]+?)(?:\.git)?/?$"),
           "gitlab": re.compile(r"gitlab\.com[:/]([A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+?)+)(?:\.git)?/?$")}
GITLAB_FILE = ".gitlab-ci.yml"


def configured_repository(settings: Settings) -> str:
    """``ci_repository`` of the model's .tfvars ('' when unset)."""
    fix = "fix it, then run ci-bootstrap again."
    return read_hcl_strings(tfvars_path(settings), fix).get("ci_repository", "")


def provider(root: Path) -> str:
    """The bake's CI provider: gitlab when it holds .gitlab-ci.yml, else github."""
    return "gitlab" if (root / GITLAB_FILE).is_file() else "github"


def remote_repository(root: Path, ci: str = "github") -> str:
    """owner/name (GitLab: the project path) of the ``origin`` remote when it is on ``ci``'s site, else ''."""
    found = REMOTES[ci].search(output(root, "remote", "get-url", "origin") or "")
    return found.group(1) if found else ""


def bootstrap(settings: Settings, out: Out = print) -> None:
    """Print what to do once so the pipeline (.github/workflows/ci.yml or .gitlab-ci.yml) can deploy."""
    tfvars = tfvars_path(settings).relative_to(settings.root)
    repository = configured_repository(settings)
    role = f"{settings.model_name}-ci-deploy"
    ci = provider(settings.root)
    issuer = {"github": "token.actions.githubusercontent.com", "gitlab": "gitlab.com"}[ci]
    if repository:
        out(f"1. {tfvars} sets ci_repository = \"{repository}\": done.")
    else:
        placeholder = {"github": "<owner>/<name>", "gitlab": "<group>/<project>"}[ci]
        guess = remote_repository(settings.root, ci) or placeholder
        out(f"1. Add to {tfvars}:  ci_repository = \"{guess}\"  (the repository whose CI deploys).\n"
            f"   If the AWS account already has {ci}'s OIDC provider (another model created it), add too:\n"
            f"   ci_oidc_provider_arn = \"arn:aws:iam::<account>:oidc-provider/{issuer}\"")
    out(f"2. Run `invoke infra`: it creates the deploy role {role}, trusted only for that\n"
        f"   repository's deploy ref (ci_deploy_ref in infra/variables.tf; ci_provider = \"{ci}\"),\n"
        "   and prints its ARN (the output ci_deploy_role_arn).")
    if ci == "gitlab":
        out(f"3. In GitLab: Settings > CI/CD > Variables, add {ROLE_VARIABLE} = that ARN (not masked\n"
            "   is fine, it is not a secret; uncheck 'Protect variable' unless your deploy tags or branch\n"
            "   are protected). Only that project's pipelines on the deploy ref can assume the role.")
    else:
        out(f"3. In GitHub: Settings > Secrets and variables > Actions > Variables, add {ROLE_VARIABLE}\n"
            f"   = that ARN (or `gh variable set {ROLE_VARIABLE} --body <arn>`). It is not a secret:\n"
            "   only that repository's workflow can assume the role.")
    pinned = (settings.root / "requirements-dev.txt").read_text(encoding="utf-8")
    if "quetzal-deploy @ file:" in pinned:
        out("WARNING: requirements-dev.txt pins quetzal-deploy to a file on this machine, which a CI runner "
            "cannot install: pin `quetzal-deploy @ git+<url>@<tag>` or `quetzal-deploy==<version>`.")
