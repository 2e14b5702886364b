"""The baked repo's CI/CD workflow: valid for GitHub (its schema, offline), and every command it
runs passes here, in order, in a fresh bake: the check job as on a runner, the deploy job against
moto server (the role GitHub's OIDC would give is replaced by moto's credentials), Docker and a
local registry standing in for ECR's."""

import json
import os
import subprocess
import venv
from pathlib import Path

import pytest
import yaml

from fixtures.aws import REGION
from fixtures.bake import bake
from fixtures.parts import require_executable
from fixtures.tasks import run_task
from quetzal_deploy.upgrade.template import RECORD, render

WORKFLOW = Path(".github", "workflows", "ci.yml")
GITLAB = Path(".gitlab-ci.yml")
MODEL = "quetzal-test"


def workflow(repo: Path) -> dict:
    return yaml.safe_load((repo / WORKFLOW).read_text(encoding="utf-8"))


def schema_check(path: Path, schema: str = "vendor.github-workflows") -> subprocess.CompletedProcess:
    """check-jsonschema with the GitHub workflow (or GitLab CI) schema it vendors (no network)."""
    tool = require_executable("check-jsonschema")
    return subprocess.run([tool, "--builtin-schema", schema, str(path)], capture_output=True, text=True)


@pytest.mark.parametrize("deploy_on", ["tag", "main"])
def test_the_workflow_is_valid_for_github_and_deploys_as_answered(deploy_on, default_bake, tmp_path):
    repo = default_bake if deploy_on == "tag" else bake(tmp_path, ci_deploy_on="main")
    done = schema_check(repo / WORKFLOW)
    assert done.returncode == 0, done.stdout + done.stderr
    jobs = workflow(repo)["jobs"]
    condition = {"tag": "startsWith(github.ref, 'refs/tags/v')", "main": "github.ref == 'refs/heads/main'"}
    assert condition[deploy_on] in jobs["deploy"]["if"] and jobs["deploy"]["needs"] == "check"
    assert jobs["deploy"]["permissions"]["id-token"] == "write"  # OIDC: no stored AWS keys
    credentials = next(s for s in jobs["deploy"]["steps"] if "configure-aws-credentials" in s.get("uses", ""))
    assert credentials["with"]["role-to-assume"] == "${{ vars.QUETZAL_DEPLOY_ROLE_ARN }}"
    trusted = {"tag": "refs/tags/v*", "main": "refs/heads/main"}[deploy_on]  # the deploy role's ref
    assert f'default     = "{trusted}"' in (repo / "infra" / "variables.tf").read_text()


def test_the_schema_check_refuses_a_broken_workflow(default_bake, tmp_path):
    """The validator bites: a job without runs-on is not a GitHub workflow."""
    broken = workflow(default_bake)
    del broken["jobs"]["check"]["runs-on"]
    path = tmp_path / "ci.yml"
    path.write_text(yaml.safe_dump(broken), encoding="utf-8")
    assert schema_check(path).returncode != 0


def run_steps(repo: Path, job: dict) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


@pytest.mark.parametrize("deploy_on", ["tag", "main"])
def test_the_gitlab_pipeline_is_valid_runs_the_same_commands_and_deploys_as_answered(
        deploy_on, default_bake, tmp_path):
    """ci_provider=gitlab: .gitlab-ci.yml instead of the GitHub workflow, valid for GitLab, its
    scripts the very commands of the GitHub jobs (which the test below executes), so neither rots."""
    repo = bake(tmp_path, ci_provider="gitlab", ci_deploy_on=deploy_on)
    assert not (repo / ".github").exists() and not (default_bake / GITLAB).exists()
    done = schema_check(repo / GITLAB, "vendor.gitlab-ci")
    assert done.returncode == 0, done.stdout + done.stderr
    pipeline = yaml.safe_load((repo / GITLAB).read_text(encoding="utf-8"))
    github = workflow(default_bake)["jobs"]
    for job in ("check", "deploy"):
        assert pipeline[job]["script"] == run_steps(default_bake, github[job]), job
    deploy = pipeline["deploy"]
    rule = {"tag": "$CI_COMMIT_TAG =~ /^v/", "main": '$CI_COMMIT_BRANCH == "main"'}[deploy_on]
    assert deploy["rules"] == [{"if": rule}] and deploy["needs"] == ["check"]
    assert deploy["id_tokens"]["AWS_ID_TOKEN"]["aud"] == "https://gitlab.com"  # OIDC: no stored AWS keys
    assert deploy["variables"]["AWS_ROLE_ARN"] == "$QUETZAL_DEPLOY_ROLE_ARN"
    token_file = deploy["variables"]["AWS_WEB_IDENTITY_TOKEN_FILE"]
    assert deploy["before_script"] == ['printf \'%s\' "$AWS_ID_TOKEN" > "$AWS_WEB_IDENTITY_TOKEN_FILE"']
    assert token_file.startswith("/tmp/")  # never in the checkout
    variables = (repo / "infra" / "variables.tf").read_text()
    assert 'default     = "gitlab"' in variables


def test_a_record_older_than_the_ci_provider_answer_renders_the_github_workflow(default_bake, tmp_path):
    """`invoke upgrade` renders a bake's recorded answers; one made before ci_provider keeps GitHub."""
    answers = json.loads((default_bake / RECORD).read_text())["answers"]
    del answers["ci_provider"]
    project = render(answers, tmp_path)
    assert (project / WORKFLOW).is_file() and not (project / GITLAB).exists()
    assert 'default     = "github"' in (project / "infra" / "variables.tf").read_text()


def test_the_schema_check_refuses_a_broken_gitlab_pipeline(tmp_path):
    """The GitLab validator bites: a job whose script is a mapping is not GitLab CI."""
    path = tmp_path / ".gitlab-ci.yml"
    path.write_text(yaml.safe_dump({"check": {"stage": "test", "script": {"run": "ruff check ."}}}))
    assert schema_check(path, "vendor.gitlab-ci").returncode != 0


@pytest.fixture
def runner(baked_repo, tmp_path) -> dict:
    """A runner's Python: a venv over this one's packages (so installing the repo's requirements
    needs no download), its bin/ first on PATH."""
    root = tmp_path / "runner"
    venv.create(root, with_pip=True, system_site_packages=True)
    return {"PATH": f"{root / 'bin'}{os.pathsep}{os.environ['PATH']}", "VIRTUAL_ENV": str(root)}


def execute(command: str, repo: Path, env: dict) -> subprocess.CompletedProcess:
    """One ``run:`` line, as the runner's shell would: ``python`` and ``invoke`` from the venv."""
    argv = command.split()
    python = str(Path(env["VIRTUAL_ENV"], "bin", "python"))
    argv = {"python": [python], "invoke": [python, "-m", "invoke"]}.get(argv[0], [argv[0]]) + argv[1:]
    return subprocess.run(argv, cwd=repo, env={**os.environ, **env}, capture_output=True, text=True)


def deployed_stack(boto) -> None:
    """What `invoke infra` creates and the deploy job updates: bucket, image repository, function,
    state machine (names from the default bake)."""
    boto.client("s3").create_bucket(Bucket=MODEL, CreateBucketConfiguration={"LocationConstraint": REGION})
    uri = boto.client("ecr").create_repository(repositoryName=MODEL)["repository"]["repositoryUri"]
    iam = boto.client("iam")
    role = iam.create_role(RoleName=f"{MODEL}-lambda", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    boto.client("lambda").create_function(FunctionName=MODEL, Role=role, PackageType="Image",
                                          Code={"ImageUri": f"{uri}:bootstrap"})
    sfn_role = iam.create_role(RoleName=f"{MODEL}-sfn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    boto.client("stepfunctions").create_state_machine(
        name=MODEL, roleArn=sfn_role,
        definition=json.dumps({"StartAt": "wait", "States": {"wait": {"Type": "Pass", "End": True}}}))


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.xdist_group("docker")
def test_every_run_step_of_the_workflow_passes_in_order(baked_repo, runner, boto, docker_engine,
                                                        lambda_base_image, registry):
    """The GitLab pipeline's scripts are these same commands (asserted above): this runs them too."""
    jobs = workflow(baked_repo)["jobs"]
    deployed_stack(boto)
    env = {**runner, "QUETZAL_BASE_IMAGE": lambda_base_image, "QUETZAL_REGISTRY": registry}
    commands = run_steps(baked_repo, jobs["check"]) + run_steps(baked_repo, jobs["deploy"])
    assert commands[-3:] == ["invoke push", "invoke update-steps", "invoke publish-config"]
    for command in commands:
        done = execute(command, baked_repo, env)
        assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"

    function = boto.client("lambda").get_function(FunctionName=MODEL)["Code"]["ImageUri"]
    assert not function.endswith(":bootstrap")  # invoke push moved the function to the new image
    machine = boto.client("stepfunctions").list_state_machines()["stateMachines"][0]["stateMachineArn"]
    definition = boto.client("stepfunctions").describe_state_machine(stateMachineArn=machine)["definition"]
    assert "notebooks/preparation.ipynb" in definition
    keys = [o["Key"] for o in boto.client("s3").list_objects_v2(Bucket=MODEL, Prefix="_common/")["Contents"]]
    assert "_common/modelConfig.json" in keys


def test_ci_bootstrap_prints_the_one_time_steps_for_this_repository(baked_repo):
    subprocess.run(["git", "remote", "add", "origin", "git@github.com:systragroup/quetzal-test.git"],
                   cwd=baked_repo, check=True)
    first = run_task(baked_repo, "ci-bootstrap")
    assert first.returncode == 0, first.stderr
    assert 'ci_repository = "systragroup/quetzal-test"' in first.stdout  # guessed from the remote
    assert "infra/quetzal-test.tfvars" in first.stdout and "quetzal-test-ci-deploy" in first.stdout
    assert "QUETZAL_DEPLOY_ROLE_ARN" in first.stdout
    assert "WARNING: requirements-dev.txt pins quetzal-deploy to a file" in first.stdout  # a local bake

    tfvars = baked_repo / "infra" / "quetzal-test.tfvars"
    tfvars.write_text(tfvars.read_text() + 'ci_repository = "systragroup/quetzal-paris"\n')
    second = run_task(baked_repo, "ci-bootstrap")
    assert 'sets ci_repository = "systragroup/quetzal-paris": done.' in second.stdout

    tfvars.write_text("ci_repository = \n")
    broken = run_task(baked_repo, "ci-bootstrap")
    assert broken.returncode == 1 and broken.stderr.startswith("ERROR: ") and "not valid HCL" in broken.stderr


def test_ci_bootstrap_says_the_gitlab_steps_on_a_gitlab_bake(tmp_path):
    repo = bake(tmp_path, ci_provider="gitlab")
    subprocess.run(["git", "remote", "add", "origin", "git@gitlab.com:systragroup/models/quetzal-test.git"],
                   cwd=repo, check=True)
    done = run_task(repo, "ci-bootstrap")
    assert done.returncode == 0, done.stderr
    assert 'ci_repository = "systragroup/models/quetzal-test"' in done.stdout  # the project path
    assert "oidc-provider/gitlab.com" in done.stdout and 'ci_provider = "gitlab"' in done.stdout
    assert "Settings > CI/CD > Variables, add QUETZAL_DEPLOY_ROLE_ARN" in done.stdout
    assert "GitHub" not in done.stdout
