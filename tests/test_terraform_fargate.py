"""The module's optional Fargate part (terraform/fargate.tf): parsed with python-hcl2, validated,
planned, applied and destroyed by the real terraform binary (provider from the machine's mirror,
AWS = moto server). Plans and applies target the Fargate part (and what it depends on): moto lacks
ValidateStateMachineDefinition, which the state machine's resource calls.
"""

import json
import os
import re
import shutil
import subprocess

import pytest
from test_terraform_module import MODULE, accepts, parse_folder, unquote

from fixtures.parts import require_executable
from quetzal_deploy.sizing import FARGATE_SIZES


def fargate_blocks() -> dict:
    return parse_folder(MODULE)


@pytest.mark.parametrize(("variable", "value", "valid"), [
    ("fargate_cpu", 4096, True), ("fargate_cpu", 3000, False),
    ("fargate_memory", 16384, True), ("fargate_memory", 256, False), ("fargate_memory", 123904, False),
    ("fargate_memory", 1000, False),
    ("fargate_ephemeral_storage", 21, True), ("fargate_ephemeral_storage", 200, True),
    ("fargate_ephemeral_storage", 20, False), ("fargate_ephemeral_storage", 201, False),
])
def test_fargate_sizes_are_validated(variable, value, valid):
    assert accepts(variable, value) is valid


def test_cpu_memory_pairs_match_the_local_sizing():
    """terraform/fargate.tf and quetzal_deploy/sizing.py list the same pairs Fargate accepts."""
    text = (MODULE / "fargate.tf").read_text(encoding="utf-8")
    block = text.split("fargate_memory_choices = {", 1)[1].split("}", 1)[0]
    pairs = []
    for cpu, choices in re.findall(r'"(\d+)"\s*=\s*(\S.*)', block):
        if choices.startswith("range("):
            low, high, step = (int(n) for n in re.findall(r"\d+", choices))
            pairs += [(int(cpu), memory) for memory in range(low, high, step)]
        else:
            pairs += [(int(cpu), int(memory)) for memory in re.findall(r"\d+", choices)]
    assert pairs == FARGATE_SIZES


def test_the_state_machine_gets_only_run_task_and_pass_role():
    documents = {unquote(name): body for block in fargate_blocks()["data"]
                 for kind, bodies in block.items() if unquote(kind) == "aws_iam_policy_document"
                 for name, body in bodies.items()}
    statements = documents["states_fargate"]["statement"]
    actions = sorted(action for statement in statements for action in unquote(statement["actions"]))
    assert actions == ["ecs:RunTask", "iam:PassRole"]
    run_task = next(s for s in statements if unquote(s["actions"]) == ["ecs:RunTask"])
    assert unquote(run_task["resources"])[0].endswith(":task-definition/${local.fargate_family}:*")


def test_the_task_definition_family_is_model_step():
    locals_ = {key: unquote(value) for block in fargate_blocks()["locals"] for key, value in block.items()}
    assert locals_["fargate_family"] == "${var.name}-step"


# --- the real terraform binary ---------------------------------------------------------------


@pytest.fixture(scope="module")
def terraform_module(tmp_path_factory, terraform_cli):
    """The module copied beside an `infra` root using it, `terraform init` from the mirror."""
    binary = require_executable("terraform")
    root = tmp_path_factory.mktemp("tf-fargate")
    shutil.copytree(MODULE, root / "module", ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
    (root / "main.tf").write_text(
        'variable "name" {\n  type = string\n}\nvariable "cpu" {\n  type = number\n}\n'
        'variable "memory" {\n  type = number\n}\n'
        'provider "aws" {\n  max_retries = 1\n  skip_credentials_validation = true\n'
        '  skip_requesting_account_id = false\n}\n'
        'module "model" {\n  source = "./module"\n  name = var.name\n  cors_allowed_origins = ["*"]\n'
        '  image_tag = "v1"\n  create_fargate = true\n'
        '  fargate_cpu = var.cpu\n  fargate_memory = var.memory\n'
        '  fargate_subnet_ids = ["subnet-0a1b2c3d"]\n  fargate_security_group_ids = ["sg-0a1b2c3d"]\n}\n')
    env = {**os.environ, **terraform_cli, "TF_IN_AUTOMATION": "1"}
    done = subprocess.run([binary, "init", "-backend=false", "-input=false"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return binary, root, env


def terraform(module, *args, env=None):
    binary, root, base = module
    return subprocess.run([binary, *args], cwd=root, env={**base, **(env or {})}, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_terraform_validate_accepts_the_module(terraform_module):
    done = terraform(terraform_module, "validate", "-json")
    assert json.loads(done.stdout)["valid"] is True, done.stdout


FARGATE_PART = ("aws_ecs_cluster.steps", "aws_ecs_task_definition.step",
                "aws_iam_role_policy.fargate_execution", "aws_iam_role_policy.fargate_task",
                "aws_iam_role_policy.states_fargate")


def plan(terraform_module, aws, name: str, cpu: int, memory: int):
    """A plan of the Fargate part only (see the module docstring)."""
    env = {key: value for key, value in os.environ.items() if key.startswith("AWS_")}
    targets = [f"-target=module.model.{address}" for address in FARGATE_PART]
    return terraform(terraform_module, "plan", "-input=false", "-no-color", "-refresh=false", *targets,
                     f"-var=name={name}", f"-var=cpu={cpu}", f"-var=memory={memory}", env=env)


@pytest.mark.slow
def test_apply_creates_the_fargate_part_for_real_and_destroy_removes_it(terraform_module, aws, boto):
    """A real apply (moto server) of the Fargate part and what it depends on (bucket, repository,
    state machine role), checked through boto3, then a real destroy."""
    done = apply(terraform_module, "apply", "quetzal-paris", 4096, 16384)
    assert done.returncode == 0, done.stdout + done.stderr

    ecs, iam = boto.client("ecs"), boto.client("iam")
    definition = ecs.describe_task_definition(taskDefinition="quetzal-paris-step")["taskDefinition"]
    assert (definition["cpu"], definition["memory"], definition["ephemeralStorage"]) == (
        "4096", "16384", {"sizeInGiB": 21})
    container = definition["containerDefinitions"][0]
    assert container["name"] == "step" and container["image"].endswith("/quetzal-paris:v1")
    assert container["entryPoint"] == ["python", "-m", "quetzal_deploy.runtime.cli"]
    assert container["readonlyRootFilesystem"] is True
    families = ecs.list_task_definition_families(familyPrefix="quetzal-paris-task")["families"]
    assert families == []  # the front end's backend would switch the model to its ECS mode
    assert ecs.describe_clusters(clusters=["quetzal-paris-steps"])["clusters"][0]["status"] == "ACTIVE"
    policy = iam.get_role_policy(RoleName="quetzal-paris-states", PolicyName="quetzal-paris-states-fargate")
    actions = sorted(action for statement in policy["PolicyDocument"]["Statement"]
                     for action in ([statement["Action"]] if isinstance(statement["Action"], str)
                                    else statement["Action"]))
    assert actions == ["ecs:RunTask", "iam:PassRole"]
    task_policy = iam.get_role_policy(RoleName="quetzal-paris-step", PolicyName="quetzal-paris-step")
    granted = json.dumps(task_policy["PolicyDocument"])
    assert "s3:PutObject" in granted and "states:SendTaskSuccess" in granted
    assert "s3:DeleteObjectVersion" in granted  # runtime/transfer.py deletes a version sent changing

    destroyed = apply(terraform_module, "destroy", "quetzal-paris", 4096, 16384)
    assert destroyed.returncode == 0, destroyed.stdout + destroyed.stderr
    active = ecs.list_task_definitions(familyPrefix="quetzal-paris-step", status="ACTIVE")
    assert active["taskDefinitionArns"] == []


def apply(terraform_module, command: str, name: str, cpu: int, memory: int):
    env = {key: value for key, value in os.environ.items() if key.startswith("AWS_")}
    targets = [f"-target=module.model.{address}" for address in FARGATE_PART]
    return terraform(terraform_module, command, "-auto-approve", "-input=false", "-no-color", *targets,
                     f"-var=name={name}", f"-var=cpu={cpu}", f"-var=memory={memory}", env=env)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "cpu", "memory", "message"), [
    ("quetzal-paris", 1024, 16384,
     "Fargate does not accept fargate_memory = 16384 MB with fargate_cpu = 1024"),
    ("paris-tasks", 4096, 16384, "front end would switch a model to its whole-model ECS mode"),
])
def test_plan_refuses_what_fargate_or_the_front_end_would_refuse(terraform_module, aws, name, cpu, memory,
                                                                 message):
    done = plan(terraform_module, aws, name, cpu, memory)
    assert done.returncode == 1
    assert message in " ".join((done.stdout + done.stderr).split()), done.stdout + done.stderr
