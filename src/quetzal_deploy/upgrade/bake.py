"""Finish a bake (the template's post-gen hook calls ``finish``): inputs, notebooks, state machine,
Terraform module, the template record, the quetzal-deploy pin, git. Runs in the new project folder,
with no network call."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import quetzal_deploy
from quetzal_deploy.git import GitError, git
from quetzal_deploy.pipeline.definition import default_definition
from quetzal_deploy.upgrade.pin import Pin, template_pin, write_pin
from quetzal_deploy.upgrade.template import RECORD, RENDER_ONLY_ENV

BRANCH = "quetzal-template"
NOTEBOOK_TEMPLATE = Path("notebooks", "_step.ipynb")
TOOL_CACHES = (".ruff_cache", ".pytest_cache", "__pycache__", ".mypy_cache")
INPUTS = {"pt": "has_pt_network", "road": "has_road_network", "od": "has_od"}
CI_FILES = {"github": Path(".github", "workflows", "ci.yml"), "gitlab": Path(".gitlab-ci.yml")}


def is_yes(value) -> bool:
    """A cookiecutter yes/no answer (a bool, or 'yes'/'no' given on the command line)."""
    return value is True or str(value).strip().lower() in {"true", "yes", "y", "1"}


def steps_of(context: dict) -> list[str]:
    return [step.strip() for step in str(context["steps"]).split(",")]


def remove_tool_caches(project: Path) -> None:
    """Drop the caches that linting or testing the template folder in place leaves in it (copied,
    not rendered: see ``_copy_without_render``); a bake holds only the template's own files."""
    for name in TOOL_CACHES:
        for folder in sorted(project.rglob(name), reverse=True):
            shutil.rmtree(folder, ignore_errors=True)


def remove_unused_inputs(project: Path, context: dict) -> None:
    for folder, answer in INPUTS.items():
        if not is_yes(context[answer]):
            shutil.rmtree(project / "scenarios" / "base" / "inputs" / folder)


def remove_other_ci(project: Path, context: dict) -> None:
    """Keep the CI/CD file of the answered provider only (a record older than the answer: GitHub)."""
    provider = context.get("ci_provider", "github")
    for name, path in CI_FILES.items():
        if name != provider:
            (project / path).unlink()
    if provider != "github":
        shutil.rmtree(project / ".github")


def write_notebooks(project: Path, steps: list[str]) -> None:
    """One runnable notebook per step, from the step notebook template."""
    template = project / NOTEBOOK_TEMPLATE
    text = template.read_text(encoding="utf-8")
    for step in steps:
        (project / "notebooks" / f"{step}.ipynb").write_text(text.replace("__STEP_NAME__", step),
                                                             encoding="utf-8")
    template.unlink()


def write_state_machine(project: Path, context: dict) -> None:
    definition = default_definition(context["model_name"], steps_of(context), context["auth_function_name"])
    (project / "step-functions.json").write_text(json.dumps(definition, indent=2) + "\n", encoding="utf-8")


def copy_terraform_module(project: Path, template: Path) -> None:
    """Vendor the template's Terraform module where infra/main.tf refers to it."""
    ignore = shutil.ignore_patterns(".terraform", "*.tfstate*", ".terraform.lock.hcl")
    shutil.copytree(template / "terraform", project / "infra" / "modules" / "quetzal-model", ignore=ignore,
                    dirs_exist_ok=True)


def write_template_record(project: Path, context: dict) -> None:
    """What `invoke upgrade` needs to render this same bake again: the version and the answers
    (keys starting with '_' are cookiecutter's own)."""
    answers = {key: value for key, value in context.items() if not key.startswith("_")}
    record = {"template": "quetzal-template", "version": quetzal_deploy.__version__, "answers": answers}
    (project / RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def init_git(project: Path, model_name: str) -> None:
    """One commit on ``main`` (nbconvert and pip-chill expect a .git) and the ``quetzal-template``
    branch at it: the pristine bake `invoke upgrade` builds on."""
    if shutil.which("git") is None:
        print("WARNING: git is not installed: run `git init` in the new folder yourself.")
        return
    if (project / ".git").exists():  # re-baked over an existing repo (cookiecutter -f)
        print("Existing git repository kept: review and commit the regenerated files.")
        return
    git(project, "init", "--quiet", "--initial-branch=main")
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "--no-verify", "-m",
        f"Create {model_name} from quetzal-template {quetzal_deploy.__version__}")
    git(project, "branch", BRANCH)


def print_next_steps(context: dict, pin: Pin) -> None:
    name = context["model_name"]
    print(f"requirements-dev.txt pins {pin.requirement}\n    ({pin.reason}).")
    print(f"""
Created {name}. Next steps:

    cd {name}
    python -m pip install -r requirements-dev.txt
    invoke --list                  # every flow, with one-line help
    invoke run --local base        # run the whole pipeline on this machine, no AWS needed
    invoke deploy                  # first deployment to AWS (credentials from your AWS profile)
""")
    region, front_end = context["aws_region"], context["front_end_region"]
    if region != front_end:
        print(f"NOTE: the model is in {region} but the front end works in {front_end} "
              "(FRONT_END_REGION in .env): its S3 client and run API look for the model's bucket, "
              "Lambda and state machine there, so it will not list or run this model. Deploy in "
              f"{front_end}, or use a front end deployed in {region}.")


def finish(context: dict, template: Path, project: Path | None = None) -> None:
    """Everything after cookiecutter rendered the files; under `invoke upgrade` (which renders
    into a scratch folder) no git and no next steps."""
    project = project or Path.cwd()
    remove_tool_caches(project)
    remove_unused_inputs(project, context)
    remove_other_ci(project, context)
    write_notebooks(project, steps_of(context))
    write_state_machine(project, context)
    copy_terraform_module(project, template)
    if context["terraform_state_bucket"] == "local":
        (project / "infra" / "backend.hcl").unlink()  # local state has no backend settings
    write_template_record(project, context)
    pin = template_pin(context["_template"], context.get("_checkout"), template)
    write_pin(project, pin)
    if os.environ.get(RENDER_ONLY_ENV) == "1":
        return
    try:
        init_git(project, context["model_name"])
    except GitError as ex:
        print(f"ERROR: {ex}", file=sys.stderr)
        sys.exit(1)
    print_next_steps(context, pin)
