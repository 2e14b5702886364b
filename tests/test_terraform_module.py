"""The Terraform module and the baked repo's infra/: parsed with python-hcl2, scanned with checkov.

The HCL is parsed, the variables' validation conditions are evaluated by a small translator into
Python, checkov checks security, and the real terraform validates and format-checks the baked infra/.
"""

import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import hcl2
import pytest
from dotenv import dotenv_values

from fixtures.bake import TEMPLATE, bake
from fixtures.parts import missing_part, require_executable
from quetzal_deploy.infra.stack import ENV_VARIABLES

MODULE = TEMPLATE / "terraform"
CHECKOV = Path(
    os.environ.get("CHECKOV_VENV", Path.home() / ".cache" / "quetzal-template" / "checkov-venv"),
    "bin", "checkov",
)
VALIDATED = {
    "name": ["length(var.name)", "regex("],
    "lambda_memory_size": ["128", "10240"],
    "lambda_timeout": ["1", "900"],
    "lambda_storage_size": ["512", "10240"],
    "lambda_architecture": ["x86_64", "arm64"],
}


def unquote(value):
    """python-hcl2 keeps the quotes of strings and block labels."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, list):
        return [unquote(v) for v in value]
    return value


def parse_folder(folder: Path) -> dict[str, list]:
    """Every top-level block of the folder's .tf files, merged by block type."""
    merged: dict[str, list] = {}
    for path in sorted(folder.glob("*.tf")):
        with path.open(encoding="utf-8") as handle:
            for kind, blocks in hcl2.load(handle).items():
                merged.setdefault(kind, []).extend(blocks if isinstance(blocks, list) else [blocks])
    return merged


def named(blocks: list) -> dict[str, dict]:
    """``[{'"label"': body}, ...]`` -> ``{label: body}``."""
    return {unquote(label): body for block in blocks for label, body in block.items()}


def variables(folder: Path) -> dict[str, dict]:
    return named(parse_folder(folder).get("variable", []))


def evaluate(condition: str, **values) -> bool:
    """Evaluate a simple HCL validation condition (comparisons, &&, !, length, regex...)."""
    expression = condition.removeprefix("${").removesuffix("}")
    expression = expression.replace("&&", " and ").replace("||", " or ")
    expression = re.sub(r"!(?!=)", " not ", expression)
    expression = re.sub(r"\bvar\.(\w+)", r"values['\1']", expression)
    functions = {
        "length": len, "floor": math.floor, "can": lambda ok: ok,
        "regex": lambda pattern, text: re.search(pattern, text) is not None,
        "startswith": str.startswith, "endswith": str.endswith,
        "contains": lambda items, item: item in items, "alltrue": all,
        "coalesce": lambda *values: next(v for v in values if v is not None),
    }
    return eval(expression, {"__builtins__": {}, **functions}, {"values": values})  # noqa: S307


def accepts(variable: str, value) -> bool:
    body = variables(MODULE)[variable]
    return all(evaluate(rule["condition"], **{variable: value}) for rule in body["validation"])


def test_every_tf_file_parses():
    files = sorted(MODULE.glob("*.tf"))
    assert {p.name for p in files} >= {"main.tf", "variables.tf", "outputs.tf", "versions.tf"}
    for path in files:
        with path.open(encoding="utf-8") as handle:
            assert hcl2.load(handle), f"{path.name} is empty"


def test_every_variable_is_typed_described_and_validated():
    found = variables(MODULE)
    assert found, "no variable parsed"
    for name, body in found.items():
        assert body.get("type"), f"variable {name} has no type"
        assert unquote(body.get("description", "")).strip(), f"variable {name} has no description"
        if body["type"] != "bool":  # a bool cannot hold a wrong value
            assert body.get("validation"), f"variable {name} has no validation"


@pytest.mark.parametrize("variable", VALIDATED)
def test_named_variables_are_validated(variable):
    rules = variables(MODULE)[variable].get("validation", [])
    assert rules, f"variable {variable} has no validation block"
    text = " ".join(rule["condition"] for rule in rules)
    for needle in VALIDATED[variable]:
        assert needle in text, f"{variable}'s validation does not mention {needle}"
    assert all(unquote(rule["error_message"]).strip() for rule in rules)


@pytest.mark.parametrize(
    ("name", "valid"),
    [("quetzal-paris", True), ("abc", True), ("a" * 57, True), ("ab", False), ("a" * 58, False),
     ("Quetzal", False), ("quetzal.paris", False), ("-quetzal", False), ("quetzal-", False),
     ("quetzal_paris", False), ("xn--quetzal", False), ("quetzal-s3alias", False),
     ("quetzal--ol-s3", False)],
)
def test_name_validation_follows_s3_bucket_rules(name, valid):
    """S3 bucket rules, and at most 57 characters so that `<name>-lambda` fits IAM's 64."""
    assert accepts("name", name) is valid


@pytest.mark.parametrize(
    ("variable", "low", "high"),
    [("lambda_memory_size", 128, 10240), ("lambda_timeout", 1, 900),
     ("lambda_storage_size", 512, 10240)],
)
def test_lambda_limits_are_enforced(variable, low, high):
    assert accepts(variable, low) and accepts(variable, high) and accepts(variable, (low + high) // 2)
    assert not accepts(variable, low - 1)
    assert not accepts(variable, high + 1)
    assert not accepts(variable, low + 0.5)


@pytest.mark.parametrize(("value", "valid"), [("x86_64", True), ("arm64", True), ("aarch64", False),
                                              ("amd64", False), ("", False)])
def test_architecture_is_one_lambda_knows(value, valid):
    assert accepts("lambda_architecture", value) is valid


@pytest.mark.parametrize(("value", "valid"), [(None, True), (1, True), (50, True), (0, False),
                                              (1001, False), (2.5, False)])
def test_reserved_concurrency_is_optional_but_bounded(value, valid):
    assert accepts("lambda_reserved_concurrency", value) is valid


def test_readme_documents_every_input_and_output():
    readme = (MODULE / "README.md").read_text(encoding="utf-8")
    parsed = parse_folder(MODULE)
    for name in [*named(parsed["variable"]), *named(parsed["output"])]:
        assert f"| `{name}` |" in readme, f"{name} is missing from terraform/README.md"


def test_every_output_is_described():
    outputs = named(parse_folder(MODULE)["output"])
    assert outputs
    for name, body in outputs.items():
        assert unquote(body.get("description", "")).strip(), f"output {name} has no description"


def test_no_account_id_region_or_arn_is_hard_coded():
    for path in MODULE.glob("*.tf"):
        lines = path.read_text(encoding="utf-8").splitlines()
        # Help texts may show examples; code may not.
        help_texts = ("error_message", "description")
        text = "\n".join(line for line in lines if not line.strip().startswith(help_texts))
        assert not re.search(r"\b\d{12}\b", text), f"an account id in {path.name}"
        assert not re.search(r"\b(us|eu|ca|ap|sa|me|af|il|mx)-[a-z]+-\d\b", text), f"a region in {path.name}"
        assert not re.search(r"arn:aws[a-z-]*:", text), f"a literal ARN in {path.name}"


def test_checkov_reports_no_failed_check():
    if not CHECKOV.is_file():
        missing_part(f"checkov is not installed at {CHECKOV} (.ci/setup.sh installs it)")
    done = subprocess.run(
        [str(CHECKOV), "-d", str(MODULE), "--framework", "terraform", "-o", "json", "--skip-download"],
        capture_output=True, text=True, timeout=300,
    )
    report = json.loads(done.stdout)
    summary = report["summary"]
    failed = [f"{c['check_id']} {c['resource']}" for c in report["results"]["failed_checks"]]
    assert summary["failed"] == 0, failed
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 50, summary
    for check in report["results"]["skipped_checks"]:
        reason = check["check_result"].get("suppress_comment", "")
        assert len(reason) > 20, f"{check['check_id']} on {check['resource']} is skipped without a reason"


def infra_of(repo: Path) -> dict:
    infra = repo / "infra"
    (tfvars,) = infra.glob("*.tfvars")
    with tfvars.open(encoding="utf-8") as handle:
        values = {k: unquote(v) for k, v in hcl2.load(handle).items() if not k.startswith("__")}
    parsed = parse_folder(infra)
    return {
        "tfvars": tfvars,
        "values": values,
        "variables": named(parsed["variable"]),
        "module": named(parsed["module"])["model"],
        "outputs": named(parsed["output"]),
        "module_dir": infra / unquote(named(parsed["module"])["model"]["source"]),
    }


def check_infra_uses_module(repo: Path):
    infra = infra_of(repo)
    module_variables = variables(infra["module_dir"])
    passed = {k for k in infra["module"] if k not in {"source", "__is_block__"}}
    assert passed <= set(module_variables), passed - set(module_variables)
    required = {name for name, body in module_variables.items() if "default" not in body}
    assert required <= passed, f"module variables not passed: {required - passed}"
    for value in infra["module"].values():
        for name in re.findall(r"var\.(\w+)", str(value)):
            assert name in infra["variables"], f"infra/main.tf uses undeclared var.{name}"
    assert set(infra["values"]) <= set(infra["variables"]), set(infra["values"]) - set(infra["variables"])
    required_infra = {n for n, body in infra["variables"].items() if "default" not in body}
    given = set(infra["values"]) | set(ENV_VARIABLES)  # the .tfvars, and .env's values as -var
    assert required_infra <= given, required_infra - given
    assert not set(infra["values"]) & set(ENV_VARIABLES), "a .env value copied into the .tfvars"
    assert set(ENV_VARIABLES) <= set(infra["variables"]), "invoke infra passes an undeclared variable"
    module_outputs = set(named(parse_folder(infra["module_dir"])["output"]))
    for name, body in infra["outputs"].items():
        (used,) = re.findall(r"module\.model\.(\w+)", body["value"])
        assert used in module_outputs, f"infra output {name} reads a module output that does not exist"
    return infra


def test_baked_infra_refers_to_the_vendored_module(default_bake):
    infra = check_infra_uses_module(default_bake)
    assert infra["tfvars"].name == f"{default_bake.name}.tfvars"
    vendored = {p.name: p.read_text() for p in infra["module_dir"].iterdir()}
    assert vendored == {p.name: p.read_text() for p in MODULE.iterdir()}


def test_baked_tfvars_hold_only_what_env_does_not(tmp_path):
    answers = {"model_name": "quetzal-lyon", "aws_region": "eu-west-3", "lambda_memory_size": "2048",
               "auth_function_name": "quetzal-auth",
               "cors_allowed_origins": "https://app.example.com, http://localhost:8081"}
    repo = bake(tmp_path, **answers)
    values = check_infra_uses_module(repo)["values"]
    assert values == {"log_retention_days": 365, "ecr_keep_images": 10,
                      "cors_allowed_origins": ["https://app.example.com", "http://localhost:8081"]}
    env = dotenv_values(repo / ".env")
    assert (env["MODEL_NAME"], env["AWS_REGION"], env["LAMBDA_MEMORY_SIZE"], env["AUTH_FUNCTION_NAME"]) == (
        "quetzal-lyon", "eu-west-3", "2048", "quetzal-auth")


@pytest.mark.terraform
def test_terraform_validates_the_baked_infra_and_finds_it_formatted(default_bake, terraform_cli, tmp_path):
    infra = tmp_path / "infra"
    shutil.copytree(default_bake / "infra", infra)
    env = {**os.environ, **terraform_cli, "TF_IN_AUTOMATION": "1"}

    def terraform(*args):
        return subprocess.run([require_executable("terraform"), *args], cwd=infra, env=env,
                              capture_output=True, text=True, timeout=300)

    init = terraform("init", "-backend=false", "-input=false", "-no-color")
    assert init.returncode == 0, init.stdout + init.stderr
    validate = terraform("validate", "-no-color")
    assert validate.returncode == 0 and "The configuration is valid" in validate.stdout, validate.stderr
    formatted = terraform("fmt", "-check", "-recursive", "-diff", "-no-color")
    assert formatted.returncode == 0, formatted.stdout


def backend_of(repo: Path) -> str:
    (terraform,) = [block for block in parse_folder(repo / "infra")["terraform"] if "backend" in block]
    (backend,) = terraform["backend"]
    return unquote(next(iter(backend)))


def test_default_bake_shares_its_state_in_s3_with_a_lock_file(default_bake):
    assert backend_of(default_bake) == "s3"
    with (default_bake / "infra" / "backend.hcl").open(encoding="utf-8") as handle:
        settings = {k: unquote(v) for k, v in hcl2.load(handle).items() if not k.startswith("__")}
    assert settings == {"bucket": "quetzal-terraform-state", "workspace_key_prefix": "models",
                        "key": "terraform.tfstate", "region": "ca-central-1", "encrypt": True,
                        "use_lockfile": True}


def test_local_state_bake_has_a_local_backend_and_no_backend_settings(tmp_path):
    repo = bake(tmp_path, terraform_state_bucket="local")
    assert backend_of(repo) == "local"
    assert not (repo / "infra" / "backend.hcl").exists()
