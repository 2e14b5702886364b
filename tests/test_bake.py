"""Bake the template on supported and unsupported answer sets and check what comes out.

Every bake is a real cookiecutter run; the baked repo's own lint and tests are run too.
"""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cookiecutter.main import cookiecutter

import quetzal_deploy
from fixtures.bake import TEMPLATE, bake
from fixtures.parts import require_executable
from fixtures.tasks import run_task

TEMPLATE_PROJECT = TEMPLATE / "{{cookiecutter.model_name}}"
MODULE = TEMPLATE / "terraform"
DEFAULT_STEPS = "preparation,assignment"
DEFAULT_ANSWERS = {key: value[0] if isinstance(value, list) else value for key, value
                   in json.loads((TEMPLATE / "cookiecutter.json").read_text()).items()
                   if not key.startswith("_")}
INPUT_FOLDERS = {"has_pt_network": "pt", "has_road_network": "road", "has_od": "od"}
KNOWN_PLACEHOLDERS = {"region", "account_id", "function_name", "auth_function_name", "model_name"}

SUPPORTED = {
    "defaults": {},
    "pt-only-one-step-local-state": {"has_road_network": "no", "has_od": "no", "steps": "network",
                                     "terraform_state_bucket": "local"},
    "road-od-auth-cognito-four-steps": {
        "has_pt_network": "no",
        "auth_function_name": "quetzal-auth",
        "cognito_identity_pool_id": "ca-central-1:0a1b2c3d-1111-2222-3333-444455556666",
        "steps": "prep,pathfinder,assignment,export",
    },
    "python313-smallest-lambda": {
        "python_version": "3.13", "lambda_memory_size": "128", "lambda_time_limit": "1",
        "lambda_storage_size": "512", "model_name": "abc", "aws_region": "eu-west-3",
        "lambda_architecture": "arm64", "ci_provider": "gitlab",
    },
    "largest-lambda-57-char-name": {
        "lambda_memory_size": "10240", "lambda_time_limit": "900", "lambda_storage_size": "10240",
        "model_name": "q" * 55 + "-1",
    },
    "no-inputs-numbered-steps-two-origins": {
        "has_pt_network": False, "has_road_network": False, "has_od": False,
        "steps": " 01_prep , 2-model ",
        "cors_allowed_origins": "https://quenedi.example.org, http://localhost:8081",
    },
}

# (answers, what the error line must say)
UNSUPPORTED = {
    "name-uppercase": ({"model_name": "Quetzal-Paris"}, "ERROR: model_name"),
    "name-underscore": ({"model_name": "quetzal_paris"}, "ERROR: model_name"),
    "name-dots": ({"model_name": "quetzal.paris"}, "ERROR: model_name"),
    "name-too-short": ({"model_name": "ab"}, "3 to 57 characters"),
    "name-too-long-for-iam-role-names": ({"model_name": "q" * 58}, "3 to 57 characters"),
    "name-longer-than-a-file-name": ({"model_name": "q" * 300}, "cannot name the project folder"),
    "name-trailing-hyphen": ({"model_name": "quetzal-"}, "start and end with a letter or digit"),
    "name-leading-hyphen": ({"model_name": "-quetzal"}, "start and end with a letter or digit"),
    "name-xn-prefix": ({"model_name": "xn--quetzal"}, "xn--"),
    "name-s3alias-suffix": ({"model_name": "quetzal-s3alias"}, "-s3alias"),
    "name-ol-s3-suffix": ({"model_name": "quetzal--ol-s3"}, "--ol-s3"),
    "name-double-quote": ({"model_name": 'quetzal"paris'}, "ERROR: model_name"),
    "name-single-quote": ({"model_name": "quetzal'paris"}, "ERROR: model_name"),
    "name-newline": ({"model_name": "quetzal\nparis"}, "ERROR: model_name"),
    "name-unicode": ({"model_name": "quetzal-parís"}, "ERROR: model_name"),
    "name-path-separator": ({"model_name": "quetzal/paris"}, "cannot name the project folder"),
    "name-backslash-traversal": ({"model_name": "..\\evil"}, "cannot name the project folder"),
    "name-dotdot": ({"model_name": ".."}, "cannot name the project folder"),
    "name-empty": ({"model_name": ""}, "cannot name the project folder"),
    "name-shell-substitution": ({"model_name": "$(touch pwned)"}, "ERROR: model_name"),
    "name-shell-chain": ({"model_name": "q;touch pwned"}, "ERROR: model_name"),
    "name-backticks": ({"model_name": "`touch pwned`"}, "ERROR: model_name"),
    "memory-too-small": ({"lambda_memory_size": "64"}, "lambda_memory_size: '64' must be from 128 to 10240"),
    "memory-too-large": ({"lambda_memory_size": "10241"}, "lambda_memory_size"),
    "memory-not-a-number": ({"lambda_memory_size": "lots"}, "must be a whole number"),
    "time-limit-zero": ({"lambda_time_limit": "0"}, "lambda_time_limit: '0' must be from 1 to 900"),
    "time-limit-over-15-min": ({"lambda_time_limit": "901"}, "lambda_time_limit"),
    "storage-too-small": ({"lambda_storage_size": "511"}, "lambda_storage_size"),
    "storage-too-large": ({"lambda_storage_size": "20000"}, "lambda_storage_size"),
    "steps-empty": ({"steps": ""}, "give at least one step"),
    "steps-duplicated": ({"steps": "prep,model,prep"}, "listed twice"),
    "steps-duplicated-other-case": ({"steps": "prep,PREP"}, "listed twice"),
    "steps-traversal": ({"steps": "prep,../evil"}, "not a safe notebook name"),
    "steps-shell-metacharacters": ({"steps": "prep;rm -rf ~"}, "not a safe notebook name"),
    "steps-reserved-windows-name": ({"steps": "con"}, "not a safe notebook name"),
    "steps-space": ({"steps": "my step"}, "not a safe notebook name"),
    "region-unknown": ({"aws_region": "mars-north-1"}, "is not an AWS region"),
    "python-unsupported": ({"python_version": "3.9"}, "python_version"),
    "auth-function-quotes": ({"auth_function_name": 'auth"; drop'}, "auth_function_name"),
    "identity-pool-garbage": ({"cognito_identity_pool_id": "not-a-pool"}, "cognito_identity_pool_id"),
    "cors-origin-with-path": ({"cors_allowed_origins": "https://x.org/a'b"}, "cors_allowed_origins"),
    "boolean-not-yes-no": ({"has_pt_network": "maybe"}, "has_pt_network: 'maybe' must be yes or no"),
    "config-bucket-invalid": ({"config_bucket_name": "Shared_Config"}, "config_bucket_name"),
    # A whole answer must match: a trailing newline once passed (`$` matches before it).
    "name-trailing-newline": ({"model_name": "quetzal-nl\n"}, "cannot name the project folder"),
    "name-trailing-space": ({"model_name": "quetzal-sp "}, "ERROR: model_name"),
    "auth-function-trailing-newline": ({"auth_function_name": "quetzal-auth\n"}, "auth_function_name"),
    "identity-pool-trailing-newline": (
        {"cognito_identity_pool_id": "ca-central-1:0a1b2c3d-1111-2222-3333-444455556666\n"},
        "cognito_identity_pool_id"),
    "config-bucket-trailing-newline": ({"config_bucket_name": "quetzal-config\n"}, "config_bucket_name"),
    "memory-trailing-newline": ({"lambda_memory_size": "4016\n"}, "lambda_memory_size"),
    "time-limit-other-script-digits": ({"lambda_time_limit": "\u0663\u0660\u0660"}, "must be a whole number"),
    "storage-underscore-digits": ({"lambda_storage_size": "4_016"}, "must be a whole number"),
    "state-bucket-invalid": ({"terraform_state_bucket": "State"}, "or 'local' for state on this machine"),
    "state-bucket-is-config-bucket": ({"terraform_state_bucket": "quetzal-config"}, "a bucket of its own"),
    "state-bucket-is-model-bucket": ({"terraform_state_bucket": "quetzal-test"}, "a bucket of its own"),
}


def expected_files(model: str, answers: dict) -> set[str]:
    """What a bake must contain: the template's files, rendered, as the hooks finish them."""
    files = {
        p.relative_to(TEMPLATE_PROJECT).as_posix().replace("{{cookiecutter.model_name}}", model)
        for p in TEMPLATE_PROJECT.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    files.discard("notebooks/_step.ipynb")
    gitlab = answers.get("ci_provider") == "gitlab"
    files.discard(".github/workflows/ci.yml" if gitlab else ".gitlab-ci.yml")
    if answers.get("terraform_state_bucket") == "local":
        files.discard("infra/backend.hcl")
    steps = [s.strip() for s in answers.get("steps", DEFAULT_STEPS).split(",")]
    files |= {f"notebooks/{s}.ipynb" for s in steps} | {"step-functions.json", ".quetzal-template.json"}
    for key, folder in INPUT_FOLDERS.items():
        if str(answers.get(key, "yes")).lower() in {"no", "false"}:
            files = {f for f in files if not f.startswith(f"scenarios/base/inputs/{folder}/")}
    files |= {
        "infra/modules/quetzal-model/" + p.relative_to(MODULE).as_posix()
        for p in MODULE.rglob("*")
        if p.is_file() and ".terraform" not in p.parts and "tfstate" not in p.name
    }
    return files


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module", params=SUPPORTED.values(), ids=SUPPORTED.keys())
def supported_bake(request, tmp_path_factory):
    answers = request.param
    return bake(tmp_path_factory.mktemp("bake"), **answers), answers


def ignored_by(repo: Path, files: set[str]) -> set[str]:
    """The files the baked repo's .gitignore keeps out of git (caches a developer left in the template)."""
    done = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], cwd=repo, input="\n".join(files),
                          capture_output=True, text=True)
    return set(done.stdout.split("\n")) - {""}


def test_bake_has_exactly_the_expected_files(supported_bake):
    repo, answers = supported_bake
    expected = expected_files(repo.name, answers)
    assert set(git(repo, "ls-files").split("\n")) - {""} == expected - ignored_by(repo, expected)


def test_bake_is_a_clean_git_repo_with_one_commit(supported_bake):
    repo, _ = supported_bake
    assert len(git(repo, "log", "--format=%H").split()) == 1
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "rev-parse", "quetzal-template") == git(repo, "rev-parse", "HEAD")  # `invoke upgrade`


def test_bake_records_its_answers_and_template_version(supported_bake):
    repo, answers = supported_bake
    record = json.loads((repo / ".quetzal-template.json").read_text(encoding="utf-8"))
    assert record["version"] == quetzal_deploy.__version__
    assert record["answers"] == {**DEFAULT_ANSWERS, **answers}


def test_upgrade_to_the_same_version_finds_nothing_to_change(supported_bake, tmp_path):
    """Rendering the template on the recorded answers gives back the bake, file for file."""
    repo = Path(shutil.copytree(supported_bake[0], tmp_path / "repo", symlinks=True))
    done = run_task(repo, "upgrade", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Up to date" in done.stdout and git(repo, "status", "--porcelain") == ""


def copied_verbatim(repo: Path, path: Path) -> bool:
    """True for a file cookiecutter copied without rendering, unchanged from the template."""
    source = TEMPLATE_PROJECT / path.relative_to(repo)
    copy_only = json.loads((TEMPLATE / "cookiecutter.json").read_text())["_copy_without_render"]
    relative = path.relative_to(repo).as_posix()
    in_copy_only = any(relative == c or relative.startswith(c + "/") for c in copy_only)
    return in_copy_only and source.is_file() and source.read_bytes() == path.read_bytes()


def test_bake_has_no_leftover_jinja(supported_bake):
    """Every rendered file is free of Jinja; files copied verbatim are plain code, scanned as source."""
    repo, _ = supported_bake
    for path in repo.rglob("*"):
        if ".git" in path.parts or not path.is_file() or copied_verbatim(repo, path):
            continue
        assert "{{" not in path.name and "{%" not in path.name, path
        text = path.read_text(encoding="utf-8", errors="replace")
        text = re.sub(r"\$\{\{[^}]*\}\}", "", text)  # a GitHub Actions expression, not Jinja
        assert "{{" not in text and "{%" not in text, f"leftover Jinja in {path.relative_to(repo)}"


def test_bake_env_names_the_model_and_holds_no_secret(supported_bake):
    repo, answers = supported_bake
    env = (repo / ".env").read_text()
    assert f"MODEL_NAME={repo.name}\n" in env
    assert "AWS_BUCKET_NAME" not in env, "resource names are derived from MODEL_NAME, not copied"
    assert f"AWS_REGION={answers.get('aws_region', 'ca-central-1')}\n" in env
    assert f"LAMBDA_ARCHITECTURE={answers.get('lambda_architecture', 'x86_64')}\n" in env
    assert not re.search(r"SECRET|ACCESS_KEY|SESSION_TOKEN|PASSWORD", env)


def test_bake_state_machine_is_valid_asl_with_one_task_per_step(supported_bake):
    repo, answers = supported_bake
    definition = json.loads((repo / "step-functions.json").read_text())
    steps = [s.strip() for s in answers.get("steps", DEFAULT_STEPS).split(",")]
    has_auth = bool(answers.get("auth_function_name"))
    assert list(definition["States"]) == (["Authorization"] if has_auth else []) + steps
    assert definition["StartAt"] == ("Authorization" if has_auth else steps[0])
    notebooks = [s["Parameters"]["Payload"].get("notebook_path") for s in definition["States"].values()]
    assert notebooks[1 if has_auth else 0:] == [f"notebooks/{s}.ipynb" for s in steps]
    text = json.dumps(definition)
    assert set(re.findall(r"\$\{(\w+)\}", text)) <= KNOWN_PLACEHOLDERS
    assert not re.search(r"\d{12}", text), "hard-coded account id"
    statelint = require_executable("statelint")
    done = subprocess.run([statelint, "step-functions.json"], cwd=repo, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_bake_dockerfile_passes_hadolint(supported_bake):
    repo, answers = supported_bake
    dockerfile = (repo / "Dockerfile").read_text()
    assert f"ARG PYTHON_VERSION={answers.get('python_version', '3.12')}" in dockerfile
    hadolint = require_executable("hadolint")
    done = subprocess.run([hadolint, "--failure-threshold", "error", "Dockerfile"], cwd=repo,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_bake_passes_ruff(supported_bake):
    repo, _ = supported_bake
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=repo,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_bake_passes_its_own_tests(supported_bake):
    repo, _ = supported_bake
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                          cwd=repo, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert git(repo, "status", "--porcelain") == "", "the model's tests left files behind"


def run_cookiecutter(output_dir: Path, answers: dict) -> subprocess.CompletedProcess:
    """The cookiecutter command line, as a user runs it."""
    pairs = [f"{key}={value}" for key, value in answers.items()]
    return subprocess.run(
        [sys.executable, "-m", "cookiecutter", str(TEMPLATE), "--no-input", "-o", str(output_dir), *pairs],
        cwd=output_dir, capture_output=True, text=True,
    )


@pytest.mark.parametrize(("answers", "message"), UNSUPPORTED.values(), ids=UNSUPPORTED.keys())
def test_unsupported_answers_fail_before_anything_is_written(answers, message, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    done = run_cookiecutter(out, answers)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR: ")]
    assert any(message in line for line in errors), done.stderr
    assert "Traceback" not in done.stderr.split("ERROR: Stopping generation")[0]
    assert list(out.iterdir()) == [], "a rejected bake left files behind"
    assert not list(tmp_path.rglob("pwned")), "an answer reached a shell"


def test_default_notebooks_run_as_converted_scripts(default_bake, tmp_path):
    """Each notebook, converted by the real `jupyter nbconvert`, runs with python on scenarios/base."""
    repo = tmp_path / "repo"
    shutil.copytree(default_bake, repo)
    steps = DEFAULT_STEPS.split(",")
    subprocess.run(
        [sys.executable, "-m", "nbconvert", "--to", "script", "--log-level", "WARN",
         *[f"notebooks/{s}.ipynb" for s in steps]],
        cwd=repo, check=True, capture_output=True,
    )
    for step in steps:
        done = subprocess.run(
            [sys.executable, f"{step}.py", json.dumps({"training_folder": "../scenarios/base"})],
            cwd=repo / "notebooks", capture_output=True, text=True,
        )
        assert done.returncode == 0, done.stderr
        outputs = {p.name for p in (repo / "scenarios/base/outputs").iterdir()}
        assert {f"{step}_summary.csv", f"{step}_pt.geojson", f"{step}_road.geojson"} <= outputs
        summary = (repo / f"scenarios/base/outputs/{step}_summary.csv").read_text().splitlines()
        assert summary[0] == "layer,features,length_km" and len(summary) == 4


def test_bake_from_the_template_folder_as_dot(tmp_path):
    """The README's command: `cookiecutter . -o <dir>` from inside the template."""
    done = subprocess.run(
        [sys.executable, "-m", "cookiecutter", ".", "--no-input", "-o", str(tmp_path)],
        cwd=TEMPLATE, capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    module = tmp_path / "quetzal-test" / "infra" / "modules" / "quetzal-model"
    assert (module / "variables.tf").is_file()


def test_a_default_bake_is_thin_it_holds_no_copy_of_the_tooling(default_bake):
    """The tooling comes from the pinned quetzal-deploy package: the repo holds only the model's own
    Python (the three-line tasks.py and the model's tests)."""
    python = {p.relative_to(default_bake).as_posix(): len(p.read_text().splitlines())
              for p in default_bake.rglob("*.py") if ".git" not in p.parts}
    assert set(python) == {"tasks.py", "tests/test_model.py"}, python
    assert sum(python.values()) < 150, python
    assert not (default_bake / "quetzal_deploy").exists() and not (default_bake / "tasks").exists()
    pinned = (default_bake / "requirements-dev.txt").read_text().splitlines()
    assert f"quetzal-deploy @ {TEMPLATE.as_uri()}" in pinned  # baked from this local folder


def test_tool_caches_left_in_the_template_folder_do_not_break_or_enter_a_bake(tmp_path):
    """`ruff check .` or pytest run in the template folder leave binary caches inside
    ``{{cookiecutter.model_name}}/``: a bake copies them unrendered and then drops them."""
    template = tmp_path / "template"
    shutil.copytree(TEMPLATE, template, ignore=shutil.ignore_patterns(".git", "build", ".ruff_cache",
                                                                       "__pycache__", ".pytest_cache"))
    project = template / "{{cookiecutter.model_name}}"
    for cache in (project / ".ruff_cache" / "0.9.0", project / "tests" / "__pycache__"):
        cache.mkdir(parents=True)
        (cache / "entry.bin").write_bytes(bytes(range(256)) * 4 + b"{{ not jinja")
    repo = Path(cookiecutter(str(template), no_input=True, output_dir=str(tmp_path / "out")))
    assert not [p for p in repo.rglob("*") if p.name in {".ruff_cache", "__pycache__"}]
    assert git(repo, "status", "--porcelain") == ""
