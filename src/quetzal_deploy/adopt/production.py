"""The names the backend's Terraform (infra/models + infra/modules) gives a model's stack: a
contract, since Cognito groups, the front end and the backend hold on to them."""

from __future__ import annotations

import re

ADMIN_ROLE = "Cognito_quetzal_pool_admin"  # shared, created outside the models' Terraform
CONFIG_POLICY = "s3_read_quetzal_config"  # shared managed policy attached to each user role
OLD_STATE_BUCKET = "quetzal-tf-state"
OLD_STATE_KEY = "terraform/remote-state/terraform.tfstate"
ADOPTED_RETENTION_DAYS = 14  # the production log group's
ADOPTED_KEEP_IMAGES = 1000  # every image the repository holds stays (the module's most)


def resource_names(model: str) -> dict[str, str | bool]:
    """The module's ``resource_names`` for a production stack."""
    return {
        "lambda_role": f"lambda-{model}-role",
        "lambda_policy": f"S3PutGetObject_{model}",
        "lambda_logging_policy": f"lambda_logging_{model}",
        "states_role": f"sfn-{model}-role",
        "states_policy": f"LambdaInvoke-{model}",
        "user_role": f"Cognito_quetzal_pool_{model}",
        "user_policy": f"s3_read_put_{model}",
        "user_policy_managed": True,
        "admin_policy": f"inline_s3_read_put_{model}",
    }


def old_state_key(model: str, key: str = OLD_STATE_KEY) -> str:
    """Where the S3 backend keeps a workspace's state (``env:/<workspace>/<key>``)."""
    return f"env:/{model}/{key}"


def hcl(value) -> str:
    return "true" if value is True else "false" if value is False else f'"{value}"'


def adopted_tfvars(text: str, model: str) -> str:
    """The rendered ``<model>.tfvars`` with the production names, admin policy, retention and images."""
    kept = {"log_retention_days": ADOPTED_RETENTION_DAYS, "ecr_keep_images": ADOPTED_KEEP_IMAGES}
    for key, value in kept.items():
        text = re.sub(rf"(?m)^{key}\s*=.*$", f"{key:<20} = {value}", text)
    names = resource_names(model)
    width = max(map(len, names))
    body = "\n".join(f"  {key:<{width}} = {hcl(value)}" for key, value in names.items())
    return (text.rstrip("\n") + "\n\n"
            "# Adopted from the backend's Terraform (quetzal-deploy adopt): the stack keeps its\n"
            "# production names, which Cognito groups, the front end and the backend use;\n"
            f"# `invoke infra --adopt` imports it. Logs are kept {ADOPTED_RETENTION_DAYS} days and every\n"
            "# image stays, as before: change them when you choose.\n"
            f"resource_names = {{\n{body}\n}}\n"
            f'admin_role_name            = "{ADMIN_ROLE}"\n'
            f'user_role_managed_policies = ["{CONFIG_POLICY}"]\n')
