"""Validate the answers before cookiecutter writes anything.

Each rejected answer prints one ``ERROR: ...`` line that says what is allowed, and the
hook exits 1: cookiecutter then removes the half-made project folder.
"""

import json
import sys

# Rendered as a JSON string, so any answer (quotes, newlines, booleans) stays data.
ANSWERS = json.loads({{ {"model_name": cookiecutter.model_name, "aws_region": cookiecutter.aws_region, "lambda_memory_size": cookiecutter.lambda_memory_size, "lambda_time_limit": cookiecutter.lambda_time_limit, "lambda_storage_size": cookiecutter.lambda_storage_size, "python_version": cookiecutter.python_version, "steps": cookiecutter.steps, "has_pt_network": cookiecutter.has_pt_network, "has_road_network": cookiecutter.has_road_network, "has_od": cookiecutter.has_od, "auth_function_name": cookiecutter.auth_function_name, "cognito_identity_pool_id": cookiecutter.cognito_identity_pool_id, "config_bucket_name": cookiecutter.config_bucket_name, "cors_allowed_origins": cookiecutter.cors_allowed_origins} | tojson | tojson }})
ANSWERS.update(json.loads({{ {"terraform_state_bucket": cookiecutter.terraform_state_bucket, "lambda_architecture": cookiecutter.lambda_architecture, "front_end_region": cookiecutter.front_end_region, "ci_provider": cookiecutter.ci_provider} | tojson | tojson }}))
# The rules live in the quetzal_deploy package beside the template (local_extensions.py finds it).
sys.path.insert(0, {{ quetzal_deploy_path | tojson }})
from quetzal_deploy.rules import answer_errors  # noqa: E402


def main():
    errors = answer_errors(ANSWERS)
    for error in errors:
        print(f"ERROR: {error}", file=sys.stderr)
    if errors:
        print("ERROR: nothing was generated; fix the answers above and run cookiecutter again.",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
