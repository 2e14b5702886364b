"""The answers' rules are written once (quetzal_deploy.rules): the pre-gen hook and .env use them,
and the Terraform module's own variable validations (HCL cannot import Python) accept and refuse
exactly the values the Python rules do, boundary by boundary, checked by the real terraform."""

import ast
import json
import os
import re
import subprocess
import sys

import boto3
import pytest

from fixtures.bake import SRC, TEMPLATE
from quetzal_deploy import rules
from quetzal_deploy.errors import ConfigError
from quetzal_deploy.settings import load_settings

MODULE = TEMPLATE / "terraform"
POOL = "ca-central-1:0a1b2c3d-1111-2222-3333-444455556666"


def in_range(key):
    return lambda value: rules.range_error(key, value) is None


def boundaries(key, step=1):
    low, high = rules.RANGES[key]
    return [low, high, low - step, high + step, low + 0.5]


def optional(check):
    return lambda value: not value or check(value) is None


# Terraform variable -> the rules' range
RANGED = {"lambda_memory_size": "lambda_memory_size", "lambda_timeout": "lambda_time_limit",
          "lambda_storage_size": "lambda_storage_size", "fargate_memory": "fargate_memory",
          "fargate_ephemeral_storage": "fargate_storage"}
# Terraform variable -> (the Python rule: does it accept the value?, values, the first one accepted)
AGREEMENT = {
    "name": (lambda v: rules.model_name_error(v) is None, [
        "quetzal-paris", "abc", "q" * 57, "ab", "q" * 58, "Quetzal", "quetzal_paris", "quetzal.paris",
        "-quetzal", "quetzal-", "quetzal-nl\n", "quetzal-parís", "xn--quetzal", "sthree-q", "amzn-s3-demo-q",
        "quetzal-s3alias", "quetzal--ol-s3", "quetzal--x-s3", "quetzal--table-s3"]),
    **{variable: (in_range(key), boundaries(key)) for variable, key in RANGED.items()},
    "fargate_memory": (in_range("fargate_memory"), boundaries("fargate_memory", step=512)[:4]),  # in 512s
    "lambda_architecture": (lambda v: v in rules.ARCHITECTURES, [*rules.ARCHITECTURES, "aarch64", "X86_64"]),
    "ci_provider": (lambda v: rules.choice_error(v, rules.CI_PROVIDERS) is None,
                    [*rules.CI_PROVIDERS, "GitLab", "bitbucket", ""]),
    "auth_function_name": (optional(rules.function_error), [
        "", "auth-fn_1", "a" * 64, "a" * 65, 'auth"x', "fn.name", "auth\n"]),
    "cognito_identity_pool_id": (optional(rules.identity_pool_error), [
        "", POOL, "not-a-pool", POOL.upper(), POOL[:-1], POOL + "\n"]),
    "config_bucket_name": (optional(rules.shared_bucket_error), [
        "", "quetzal-config", "quetzal.config", "a" * 63, "ab", "a" * 64, "Shared_Config", "xn--config",
        "config-s3alias", "-config"]),
    "cors_allowed_origins": (lambda v: rules.origin_error(v[0]) is None, [
        ["*"], ["https://app.example.com"], ["http://localhost:8081"], ["https://*.example.com"],
        ["https://x.org/a"], ["ftp://x.org"], ["https://x.org:123456"], ["https://x.org:\u0668\u0660"]]),
}


def variable_blocks(path) -> str:
    text = path.read_text(encoding="utf-8")
    return "\n".join(re.findall(r'^variable "\w+" \{\n.*?^\}\n', text, re.S | re.M))


def refused_by_terraform(folder, values: dict, env) -> set[str]:
    """The variables whose validation refuses ``values``, from `terraform plan`'s diagnostics."""
    (folder / "case.tfvars.json").write_text(json.dumps(values), encoding="utf-8")
    done = subprocess.run(["terraform", "plan", "-input=false", "-json", "-var-file=case.tfvars.json"],
                          cwd=folder, env=env, capture_output=True, text=True)
    refused = set()
    for line in done.stdout.splitlines():
        message = json.loads(line)
        diagnostic = message.get("diagnostic", {})
        if message.get("type") == "diagnostic" and diagnostic.get("severity") == "error":
            assert diagnostic["summary"] == "Invalid value for variable", diagnostic
            refused |= {v["traversal"].removeprefix("var.") for v in diagnostic["snippet"]["values"]}
    assert refused or done.returncode == 0, done.stdout + done.stderr
    return refused


@pytest.mark.terraform
def test_terraform_variables_accept_and_refuse_what_the_python_rules_do(terraform_cli, tmp_path):
    """Only the module's variable blocks (no provider, no resource): `plan` checks every variable's
    validation at once, so each round sets every variable to its next value and compares."""
    (tmp_path / "variables.tf").write_text(variable_blocks(MODULE / "variables.tf")
                                           + variable_blocks(MODULE / "fargate.tf")
                                           + variable_blocks(MODULE / "ci.tf"), encoding="utf-8")
    env = {**os.environ, **terraform_cli, "TF_IN_AUTOMATION": "1"}
    subprocess.run(["terraform", "init", "-input=false"], cwd=tmp_path, env=env, check=True,
                   capture_output=True)
    for name, (accepts, values) in AGREEMENT.items():
        assert accepts(values[0]), f"{name}: the first value is the one every other round uses"
    wrong = []
    for round_ in range(max(len(values) for _, values in AGREEMENT.values())):
        case = {name: values[round_] if round_ < len(values) else values[0]
                for name, (_, values) in AGREEMENT.items()}
        refused = refused_by_terraform(tmp_path, case, env)
        wrong += [f"{name}={value!r}: Python {'accepts' if accepts(value) else 'refuses'}, Terraform "
                  f"{'refuses' if name in refused else 'accepts'}"
                  for name, (accepts, _) in AGREEMENT.items()
                  if accepts(value := case[name]) == (name in refused)]
    assert not wrong, "\n".join(wrong)


def test_the_range_texts_of_prompts_and_terraform_descriptions_are_the_rules():
    prompts = json.loads((TEMPLATE / "cookiecutter.json").read_text())["__prompts__"]
    for key in ("lambda_memory_size", "lambda_time_limit", "lambda_storage_size"):
        low, high = rules.RANGES[key]
        assert f"({low}-{high})" in prompts[key], prompts[key]
    variables = (MODULE / "variables.tf").read_text() + (MODULE / "fargate.tf").read_text()
    for variable, key in RANGED.items():
        description = re.search(rf'variable "{variable}" {{\n  description = "([^"]*)"', variables).group(1)
        assert "({}-{})".format(*rules.RANGES[key]) in description, description


def test_the_rules_import_only_the_standard_library():
    """The pre-gen hook imports them inside cookiecutter, where the package's dependencies may be absent."""
    tree = ast.parse((SRC / "quetzal_deploy" / "rules.py").read_text(encoding="utf-8"))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= sys.stdlib_module_names | {"__future__"}, imported


def test_every_region_botocore_knows_is_a_region_the_rules_accept():
    known = set(boto3.Session().get_available_regions("s3"))
    assert known <= rules.REGIONS, f"add {sorted(known - rules.REGIONS)} to rules.REGIONS"


def test_the_default_answers_follow_the_rules():
    answers = json.loads((TEMPLATE / "cookiecutter.json").read_text())
    answers.update({key: value[0] for key, value in answers.items() if isinstance(value, list)})
    assert rules.answer_errors(answers) == []


ENV = {"MODEL_NAME": "quetzal-test", "AWS_REGION": "ca-central-1", "LAMBDA_MEMORY_SIZE": "4016",
       "LAMBDA_TIME_LIMIT": "300", "LAMBDA_STORAGE_SIZE": "4016"}


def settings_with(tmp_path, **values):
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in {**ENV, **values}.items()))
    return load_settings(tmp_path)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("MODEL_NAME", "Quetzal_Paris", "MODEL_NAME='Quetzal_Paris' in .env may only contain lowercase"),
    ("MODEL_NAME", "q" * 58, "must be 3 to 57 characters long: it names the model's bucket"),
    ("PYTHON_VERSION", "3.9", "PYTHON_VERSION='3.9' in .env must be one of 3.12, 3.13"),
    ("LAMBDA_ARCHITECTURE", "aarch64", "LAMBDA_ARCHITECTURE='aarch64' in .env must be one of x86_64, arm64"),
    ("AUTH_FUNCTION_NAME", "auth.fn", "AUTH_FUNCTION_NAME='auth.fn' in .env is not a Lambda function name"),
    ("COGNITO_IDENTITY_POOL_ID", "pool", "COGNITO_IDENTITY_POOL_ID='pool' in .env is not an identity pool"),
    ("CONFIG_BUCKET_NAME", "Shared_Config", "CONFIG_BUCKET_NAME='Shared_Config' in .env may only contain"),
    ("FARGATE_STORAGE", "201", "FARGATE_STORAGE=201 in .env must be from 21 to 200"),
])
def test_env_values_follow_the_answers_rules(tmp_path, key, value, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        settings_with(tmp_path, **{key: value})


def test_env_accepts_what_the_hook_accepts(tmp_path):
    settings = settings_with(tmp_path, MODEL_NAME="q" * 57, PYTHON_VERSION="3.13", LAMBDA_MEMORY_SIZE="10240",
                             CONFIG_BUCKET_NAME="shared.config", COGNITO_IDENTITY_POOL_ID=POOL,
                             AUTH_FUNCTION_NAME="", LAMBDA_ARCHITECTURE="arm64")
    assert (settings.model_name, settings.python_version, settings.memory_mb, settings.config_bucket,
            settings.architecture) == ("q" * 57, "3.13", 10240, "shared.config", "arm64")

