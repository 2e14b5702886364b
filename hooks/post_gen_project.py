"""Finish the generated model repo: inputs, notebooks, state machine, Terraform module, git.

Runs inside the new project folder. It makes no network call.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

MODEL_NAME = {{ cookiecutter.model_name | tojson }}
STEPS = [s.strip() for s in {{ cookiecutter.steps | tojson }}.split(",")]
INPUTS = json.loads(
    {{ {"pt": cookiecutter.has_pt_network, "road": cookiecutter.has_road_network,
        "od": cookiecutter.has_od} | tojson | tojson }}
)
AUTH_FUNCTION = {{ cookiecutter.auth_function_name | tojson }}
LOCAL_STATE = {{ cookiecutter.terraform_state_bucket | tojson }} == "local"
AWS_REGION = {{ cookiecutter.aws_region | tojson }}
FRONT_END_REGION = {{ cookiecutter.front_end_region | tojson }}
TEMPLATE_DIR = Path({{ cookiecutter._repo_dir | absolute_path | tojson }})
# The answers (every prompt; keys starting with "_" are cookiecutter's own) and the version
# this repo is baked from, kept in the repo so `invoke upgrade` can render the template again.
CONTEXT = json.loads({{ cookiecutter | tojson | tojson }})
TEMPLATE_VERSION = {{ quetzal_deploy_version | tojson }}
TEMPLATE_RECORD = ".quetzal-template.json"
TEMPLATE_BRANCH = "quetzal-template"
# Set by `invoke upgrade`, which renders the template into a folder of its own: no git there.
RENDER_ONLY = os.environ.get("QUETZAL_TEMPLATE_RENDER_ONLY") == "1"

NOTEBOOK_TEMPLATE = Path("notebooks", "_step.ipynb")
TOOL_CACHES = (".ruff_cache", ".pytest_cache", "__pycache__", ".mypy_cache")
LAMBDA_RETRY = [
    {
        "ErrorEquals": [
            "Lambda.ServiceException",
            "Lambda.AWSLambdaException",
            "Lambda.SdkClientException",
            "Lambda.TooManyRequestsException",
        ],
        "IntervalSeconds": 2,
        "MaxAttempts": 6,
        "BackoffRate": 2.0,
    }
]


def is_yes(value):
    """Read a cookiecutter yes/no answer (a bool, or 'yes'/'no' given on the command line)."""
    return value is True or str(value).strip().lower() in {"true", "yes", "y", "1"}


def remove_tool_caches():
    """Drop the caches that linting or testing the template folder in place leaves in it (copied,
    not rendered: see ``_copy_without_render``); a bake holds only the template's own files."""
    for name in TOOL_CACHES:
        for folder in sorted(Path(".").rglob(name), reverse=True):
            shutil.rmtree(folder, ignore_errors=True)


def remove_unused_inputs():
    """Delete the input folders of networks the model does not have."""
    for folder, wanted in INPUTS.items():
        if not is_yes(wanted):
            shutil.rmtree(Path("scenarios", "base", "inputs", folder))


def write_notebooks():
    """Write one runnable notebook per step from the step notebook template."""
    template = NOTEBOOK_TEMPLATE.read_text(encoding="utf-8")
    for step in STEPS:
        Path("notebooks", f"{step}.ipynb").write_text(
            template.replace("__STEP_NAME__", step), encoding="utf-8"
        )
    NOTEBOOK_TEMPLATE.unlink()


def lambda_task(payload, next_state):
    """A Task state that invokes a Lambda function and passes its return on."""
    state = {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": payload,
        "Retry": LAMBDA_RETRY,
    }
    state.update({"Next": next_state} if next_state else {"End": True})
    return state


def function_arn(name_placeholder):
    """A Lambda ARN whose account, region and name are ``${...}`` placeholders."""
    return "arn:aws:lambda:${region}:${account_id}:function:${" + name_placeholder + "}"


def state_machine_definition():
    """The pipeline: optional Authorization, then one Task per step, in order."""
    states = {}
    for index, step in enumerate(STEPS):
        following = STEPS[index + 1] if index + 1 < len(STEPS) else None
        states[step] = lambda_task(
            {
                "FunctionName": function_arn("function_name"),
                "Payload": {
                    "notebook_path": f"notebooks/{step}.ipynb",
                    "scenario_path_S3.$": "$.scenario_path_S3",
                    "launcher_arg.$": "$.launcher_arg",
                    "metadata.$": "$.metadata",
                },
            },
            following,
        )
        states[step]["OutputPath"] = "$.Payload"
    start = STEPS[0]
    if AUTH_FUNCTION:
        auth = lambda_task(
            {
                "FunctionName": function_arn("auth_function_name"),
                "Payload": {
                    "authorization.$": "$.authorization",
                    "model": "${model_name}",
                    "scenario_path_S3.$": "$.scenario_path_S3",
                    "launcher_arg.$": "$.launcher_arg",
                    "metadata.$": "$.metadata",
                },
            },
            start,
        )
        auth["ResultPath"] = None
        states = {"Authorization": auth, **states}
        start = "Authorization"
    return {
        "Comment": f"{MODEL_NAME} pipeline: one notebook per step. "
        "${...} placeholders are filled by `invoke update-steps`.",
        "StartAt": start,
        "States": states,
    }


def write_state_machine():
    Path("step-functions.json").write_text(
        json.dumps(state_machine_definition(), indent=2) + "\n", encoding="utf-8"
    )


def copy_terraform_module():
    """Vendor the template's Terraform module where infra/main.tf refers to it."""
    source = TEMPLATE_DIR / "terraform"
    target = Path("infra", "modules", "quetzal-model")
    ignore = shutil.ignore_patterns(".terraform", "*.tfstate*", ".terraform.lock.hcl")
    shutil.copytree(source, target, ignore=ignore, dirs_exist_ok=True)


def remove_backend_config():
    """Local state has no backend settings."""
    if LOCAL_STATE:
        Path("infra", "backend.hcl").unlink()


def write_template_record():
    """What `invoke upgrade` needs to render this same bake again: the version and the answers."""
    answers = {key: value for key, value in CONTEXT.items() if not key.startswith("_")}
    record = {"template": "quetzal-template", "version": TEMPLATE_VERSION, "answers": answers}
    Path(TEMPLATE_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def git(*args):
    identity = ["-c", "user.name=quetzal-template", "-c", "user.email=quetzal-template@localhost"]
    configured = subprocess.run(["git", "config", "user.email"], capture_output=True, text=True)
    command = ["git", *(identity if not configured.stdout.strip() else []), *args]
    subprocess.run(command, check=True, capture_output=True, text=True)


def init_git():
    """Make the repo a git repo with one commit (nbconvert and pip-chill expect a .git)."""
    if shutil.which("git") is None:
        print("WARNING: git is not installed: run `git init` in the new folder yourself.")
        return
    if Path(".git").exists():  # re-baked over an existing repo (cookiecutter -f)
        print("Existing git repository kept: review and commit the regenerated files.")
        return
    try:
        git("init", "--quiet", "--initial-branch=main")
        git("add", "--all")
        git("commit", "--quiet", "--no-verify", "-m",
            f"Create {MODEL_NAME} from quetzal-template {TEMPLATE_VERSION}")
        git("branch", TEMPLATE_BRANCH)  # the pristine bake, which `invoke upgrade` builds on
    except subprocess.CalledProcessError as ex:
        print(f"ERROR: git failed: {ex.stderr.strip() or ex}", file=sys.stderr)
        sys.exit(1)


def print_next_steps():
    print(
        f"""
Created {MODEL_NAME}. Next steps:

    cd {MODEL_NAME}
    python -m pip install -r requirements-dev.txt
    invoke --list                  # every flow, with one-line help
    invoke run --local base        # run the whole pipeline on this machine, no AWS needed
    invoke deploy                  # first deployment to AWS (credentials from your AWS profile)
"""
    )
    if AWS_REGION != FRONT_END_REGION:
        print(f"NOTE: the model is in {AWS_REGION} but the front end works in {FRONT_END_REGION} "
              "(FRONT_END_REGION in .env): its S3 client and run API look for the model's bucket, "
              "Lambda and state machine there, so it will not list or run this model. Deploy in "
              f"{FRONT_END_REGION}, or use a front end deployed in {AWS_REGION}.")


def main():
    remove_tool_caches()
    remove_unused_inputs()
    write_notebooks()
    write_state_machine()
    copy_terraform_module()
    remove_backend_config()
    write_template_record()
    if RENDER_ONLY:
        return
    init_git()
    print_next_steps()


if __name__ == "__main__":
    main()
