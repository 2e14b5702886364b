"""Image flows on a real Docker engine: build, push, update, rollback, and their failures.

The image is built on the stand-in Lambda base image (``lambda_base_image``); the push goes to
a real local registry (``registry``) while moto serves the ECR and Lambda APIs (moto's ECR keeps
no layers: the pushed manifest is registered in it, as a mirror push does).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
import uuid

import pytest

from fixtures.tasks import run_task
from quetzal_deploy.images.context import PACKAGE
from quetzal_deploy.images.requirements import regenerate
from quetzal_deploy.runtime import warm

pytestmark = pytest.mark.xdist_group("docker")
REPO = "quetzal-test"  # the default bake's model name = ECR repository = Lambda function


def git(repo, *args):
    identity = ["-c", "user.name=Test", "-c", "user.email=test@example.com"]
    return subprocess.run(["git", *identity, *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


def image_env(base, registry=None):
    env = {"QUETZAL_BASE_IMAGE": base}
    if registry:
        env["QUETZAL_REGISTRY"] = registry
    return env


def edit_notebook(repo, marker, code=""):
    """Add a line (a one-line model change), and ``code``, to the first notebook's first cell."""
    path = repo / "notebooks" / "preparation.ipynb"
    notebook = json.loads(path.read_text())
    cell = next(c for c in notebook["cells"] if c["cell_type"] == "code")
    cell["source"] = [*cell["source"], f"\n# {marker}\n{code}"]
    path.write_text(json.dumps(notebook, indent=1))


def registry_tags(registry, repo):
    with urllib.request.urlopen(f"http://{registry}/v2/{repo}/tags/list", timeout=10) as response:
        return set(json.load(response).get("tags") or [])


@pytest.mark.docker
def test_build_layers_contents_and_notebook_only_rebuild(baked_repo, docker_engine, lambda_base_image):
    """Requirements sit below the code: a notebook change rebuilds without reinstalling them."""
    first = run_task(baked_repo, "build", "--tag", "first", env=image_env(lambda_base_image))
    assert first.returncode == 0, first.stdout + first.stderr
    marker = f"a one-line change {uuid.uuid4()}"  # unique: no cache from an earlier run
    edit_notebook(baked_repo, marker)
    second = run_task(baked_repo, "build", "--tag", "second", env=image_env(lambda_base_image))
    assert second.returncode == 0, second.stdout + second.stderr

    steps = second.stdout.split("Step ")
    pip_step = next(s for s in steps if "pip install" in s)
    convert_step = next(s for s in steps if "runtime.convert" in s)
    assert "Using cache" in pip_step
    assert "Using cache" not in convert_step

    image = docker_engine.images.get(f"{REPO}:second")
    config = image.attrs["Config"]
    assert "IMAGE_TAG=second" in config["Env"] and "TQDM_DISABLE=1" in config["Env"]
    assert config["Cmd"] == ["quetzal_deploy.runtime.handler.handler"]
    listing = docker_engine.containers.run(
        image.id, entrypoint=["/bin/sh", "-c"], remove=True,
        command=["cd /var/task && find . -type f | sort"]).decode().split()
    assert "./notebooks/preparation.py" in listing and "./notebooks/assignment.py" in listing
    assert "./quetzal_deploy/runtime/handler.py" in listing
    shipped = {path for path in listing if path.startswith("./quetzal_deploy/")}  # runtime and contract only
    assert shipped == {"./quetzal_deploy/__init__.py"} | {
        f"./quetzal_deploy/{p.relative_to(PACKAGE).as_posix()}"
        for concern in ("runtime", "contract") for p in (PACKAGE / concern).rglob("*.py")}
    assert "./quetzal_deploy/contract/params.py" in listing  # the notebooks' run_params
    for secret_or_data in (".env", "tasks", "scenarios", "tests", "infra", ".git"):
        assert not any(path.startswith(f"./{secret_or_data}") for path in listing), secret_or_data
    converted = docker_engine.containers.run(
        image.id, entrypoint=["cat"], command=["/var/task/notebooks/preparation.py"], remove=True)
    assert f"# {marker}".encode() in converted
    warm_config = docker_engine.containers.run(
        image.id, entrypoint=["cat"], command=[f"/var/task/{warm.CONFIG_FILE}"], remove=True)
    assert json.loads(warm_config) == {"enabled": True, "preload": warm.discover(baked_repo)}
    assert warm.discover(baked_repo)  # the notebooks' imports, found at build time


@pytest.mark.docker
def test_default_tag_follows_git(baked_repo, docker_engine, lambda_base_image):
    """Clean tree: the short sha; a notebook edit: <sha>-dirty-<time>; a scenario edit: clean."""
    sha = git(baked_repo, "rev-parse", "--short", "HEAD")
    (baked_repo / "scenarios" / "base" / "styles.json").write_text("{}")
    clean = run_task(baked_repo, "build", env=image_env(lambda_base_image))
    assert clean.returncode == 0, clean.stderr
    assert f"Built {REPO}:{sha}\n" in clean.stdout
    edit_notebook(baked_repo, "uncommitted")
    dirty = run_task(baked_repo, "build", env=image_env(lambda_base_image))
    assert dirty.returncode == 0, dirty.stderr
    assert f"Built {REPO}:{sha}-dirty-" in dirty.stdout


@pytest.mark.docker
def test_push_update_rollback(baked_repo, boto, docker_engine, lambda_base_image, registry):
    """push --initial (no Lambda yet), then push/update/rollback move the Lambda's image URI."""
    ecr, lam = boto.client("ecr"), boto.client("lambda")
    repository_uri = ecr.create_repository(repositoryName=REPO)["repository"]["repositoryUri"]
    env = image_env(lambda_base_image, registry)

    initial = run_task(baked_repo, "push", "--initial", "--tag", "v1", env=env)
    assert initial.returncode == 0, initial.stdout + initial.stderr
    assert "does not exist yet" in initial.stdout and "invoke infra" in initial.stdout
    assert "v1" in registry_tags(registry, REPO)
    assert f"Pushed {registry}/{REPO}:v1 (sha256:" in initial.stdout
    assert [d["imageTags"] for d in ecr.describe_images(repositoryName=REPO)["imageDetails"]] == [["v1"]]

    role = boto.client("iam").create_role(RoleName="lambda-role", AssumeRolePolicyDocument="{}")
    lam.create_function(FunctionName=REPO, Role=role["Role"]["Arn"], PackageType="Image",
                        Code={"ImageUri": f"{repository_uri}:v1"})
    edit_notebook(baked_repo, "second version")
    git(baked_repo, "commit", "-qam", "second version")
    sha = git(baked_repo, "rev-parse", "--short", "HEAD")
    pushed = run_task(baked_repo, "push", env=env)
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    assert lam.get_function(FunctionName=REPO)["Code"]["ImageUri"] == f"{repository_uri}:{sha}"
    assert sha in registry_tags(registry, REPO)

    unanswered = run_task(baked_repo, "update", env=env)  # no terminal, no --tag: nothing pushed
    assert unanswered.returncode == 1 and "pass --tag T, or --yes" in unanswered.stderr
    updated = subprocess.run([sys.executable, "-m", "invoke", "update"], cwd=baked_repo, input="v3\n",
                             env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    assert updated.returncode == 0, updated.stdout + updated.stderr
    assert "New tag [" in updated.stdout
    assert f"Deployed: {sha}" in updated.stdout and "v1" in updated.stdout
    assert lam.get_function(FunctionName=REPO)["Code"]["ImageUri"] == f"{repository_uri}:v3"

    previous = run_task(baked_repo, "rollback", env=env)  # default: the tag pushed before v3
    assert previous.returncode == 0, previous.stdout + previous.stderr
    assert lam.get_function(FunctionName=REPO)["Code"]["ImageUri"] == f"{repository_uri}:{sha}"

    back = run_task(baked_repo, "rollback", "--to", "v1", env=env)
    assert back.returncode == 0, back.stdout + back.stderr
    assert lam.get_function(FunctionName=REPO)["Code"]["ImageUri"] == f"{repository_uri}:v1"

    missing = run_task(baked_repo, "rollback", "--to", "never-pushed", env=env)
    assert missing.returncode == 1
    assert "'never-pushed' is not in ECR" in missing.stderr and "v3" in missing.stderr
    assert lam.get_function(FunctionName=REPO)["Code"]["ImageUri"] == f"{repository_uri}:v1"


def test_push_without_lambda_and_without_initial_says_what_to_run(baked_repo, boto):
    boto.client("ecr").create_repository(repositoryName=REPO)
    done = run_task(baked_repo, "push", "--tag", "v1")
    assert done.returncode == 1
    assert "does not exist" in done.stderr and "invoke push --initial" in done.stderr


@pytest.mark.docker
def test_push_refused_by_registry(baked_repo, boto, docker_engine, lambda_base_image):
    """A registry that cannot be reached: a clear error, and the Lambda is not touched."""
    boto.client("ecr").create_repository(repositoryName=REPO)
    from fixtures.aws import free_port

    closed = f"127.0.0.1:{free_port()}"
    done = run_task(baked_repo, "push", "--initial", "--tag", "v1", env=image_env(lambda_base_image, closed))
    assert done.returncode == 1
    assert f"Pushing {closed}/{REPO}:v1 failed" in done.stderr
    assert "cannot be reached" in done.stderr and "QUETZAL_REGISTRY" in done.stderr
    assert "Traceback" not in done.stderr


def set_architecture(repo, architecture):
    """LAMBDA_ARCHITECTURE in .env, its one source."""
    path, default = repo / ".env", "LAMBDA_ARCHITECTURE=x86_64"
    assert default in path.read_text()
    path.write_text(path.read_text().replace(default, f"LAMBDA_ARCHITECTURE={architecture}"))


@pytest.mark.docker
def test_build_asks_for_the_function_platform_and_checks_what_came_out(baked_repo, docker_engine,
                                                                       lambda_base_image):
    """arm64 asked on this x86_64 engine, whose stand-in base image has no arm64 variant: the
    engine refuses the platform (or, with a single stage, falls back to the local x86_64 image
    and the check after the build refuses it); either way the fix is the platform's."""
    set_architecture(baked_repo, "arm64")
    done = run_task(baked_repo, "build", "--tag", "arm-check", env=image_env(lambda_base_image))
    assert done.returncode == 1
    assert f"Building {REPO}:arm-check for linux/arm64" in done.stdout
    refused = "wanted linux/arm64, actual: linux/amd64" in done.stderr
    checked = f"Image {REPO}:arm-check came out built for x86_64, not for arm64" in done.stderr
    assert refused or checked, done.stderr
    assert "naming a linux/arm64 image" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.docker
def test_push_refuses_an_image_for_another_architecture_than_the_function(
        baked_repo, boto, docker_engine, lambda_base_image, registry):
    repository_uri = boto.client("ecr").create_repository(repositoryName=REPO)["repository"]["repositoryUri"]
    role = boto.client("iam").create_role(RoleName="lambda-role", AssumeRolePolicyDocument="{}")
    functions = boto.client("lambda")
    functions.create_function(FunctionName=REPO, Role=role["Role"]["Arn"], PackageType="Image",
                              Architectures=["arm64"], Code={"ImageUri": f"{repository_uri}:arm"})
    done = run_task(baked_repo, "push", "--tag", "x86", env=image_env(lambda_base_image, registry))
    assert done.returncode == 1
    assert f"Image {REPO}:x86 is built for x86_64 but Lambda function {REPO} runs on arm64" in done.stderr
    assert "LAMBDA_ARCHITECTURE=arm64 in .env" in done.stderr
    assert functions.get_function(FunctionName=REPO)["Code"]["ImageUri"] == f"{repository_uri}:arm"
    assert boto.client("ecr").list_images(repositoryName=REPO)["imageIds"] == []


def test_other_registry_is_refused_against_real_aws(baked_repo, aws):
    env = {"QUETZAL_REGISTRY": "127.0.0.1:5000", "AWS_ENDPOINT_URL": "", "DOCKER_HOST": "unix:///nonexistent"}
    done = run_task(baked_repo, "push", "--initial", "--tag", "v1", env=env)
    assert done.returncode == 1
    assert "QUETZAL_REGISTRY=127.0.0.1:5000 is for AWS emulators only" in done.stderr
    assert "Unset QUETZAL_REGISTRY" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.docker
def test_push_without_other_registry_goes_to_the_ecr_repository(baked_repo, boto, docker_engine,
                                                                lambda_base_image):
    """The ECR path as far as moto allows: the image is tagged for the repository's own registry
    and pushed there with ECR's token; moto's registry host does not exist, so the push stops
    there with the network hint, and no tag is recorded."""
    ecr = boto.client("ecr")
    uri = ecr.create_repository(repositoryName=REPO)["repository"]["repositoryUri"]
    done = run_task(baked_repo, "push", "--initial", "--tag", "ecr-path", env=image_env(lambda_base_image))
    try:
        assert done.returncode == 1
        assert f"Pushing {uri}:ecr-path failed" in done.stderr and "cannot be reached" in done.stderr
        assert docker_engine.images.get(f"{uri}:ecr-path")
        assert ecr.list_images(repositoryName=REPO)["imageIds"] == []
    finally:
        docker_engine.images.remove(f"{uri}:ecr-path", noprune=True)


@pytest.mark.docker
def test_dockerfile_that_fails_to_build(baked_repo, docker_engine, lambda_base_image):
    dockerfile = baked_repo / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + 'RUN python -c "raise SystemExit(\'no such model\')"\n')
    done = run_task(baked_repo, "build", "--tag", "broken", env=image_env(lambda_base_image))
    assert done.returncode == 1
    assert re.search(r"The image build failed at 'Step (\d+)/\1 : RUN python -c", done.stderr), done.stderr
    assert "no such model" in done.stderr and "non-zero code: 1" in done.stderr
    assert "Traceback" not in done.stderr


def test_no_docker_daemon(baked_repo, tmp_path):
    dead = tmp_path / "docker.sock"
    done = run_task(baked_repo, "build", env={"DOCKER_HOST": f"unix://{dead}"})
    assert done.returncode == 1
    assert "Docker is not running" in done.stderr and "Start Docker Desktop" in done.stderr
    assert str(dead) in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("tag", ["v1 final!", "v1\n"])
def test_bad_tag_is_refused_before_building(baked_repo, tag):
    done = run_task(baked_repo, "build", "--tag", tag, env={"DOCKER_HOST": "unix:///nonexistent"})
    assert done.returncode == 1
    assert f"{tag!r} is not a valid image tag" in done.stderr


def test_requirements_regenerated_with_pip_chill(baked_repo):
    """Real pip-chill on this environment: runtime packages kept, tooling left out."""
    done = run_task(baked_repo, "requirements")
    assert done.returncode == 0, done.stderr
    lines = (baked_repo / "requirements.txt").read_text().splitlines()
    names = {line.split("==")[0].lower() for line in lines if line and not line.startswith("#")}
    assert "boto3" in names
    assert not names & {"invoke", "pytest", "ruff", "pip-chill", "docker"}
    assert all("==" in line for line in lines if line and not line.startswith("#"))


def test_requirements_regenerated_without_nbconvert(tmp_path):
    """The handler needs boto3 only: nbconvert is no longer added to the image's requirements."""
    (tmp_path / "requirements.txt").write_text("boto3==1.0\nnbconvert==7.16.0\n")
    added, removed = regenerate(tmp_path, installed={"boto3": "boto3==1.35.0", "pandas": "pandas==2.2.0"})

    lines = (tmp_path / "requirements.txt").read_text().splitlines()
    assert [line for line in lines if not line.startswith("#")] == ["boto3==1.35.0", "pandas==2.2.0"]
    assert added == ["pandas"] and removed == ["nbconvert"]


@pytest.mark.docker
def test_missing_base_image(baked_repo, docker_engine):
    """No image can be pulled here: the failure names the base image step and the option to use."""
    done = run_task(baked_repo, "build", "--base-image", "quetzal-test/no-such-base:1")
    assert done.returncode == 1
    step = r"failed at 'Step 3/\d+ : FROM \$\{BASE_IMAGE\} AS model-inputs'"
    assert re.search(step, done.stderr), done.stderr
    assert "--base-image (or QUETZAL_BASE_IMAGE)" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("uri, tag", [
    ("123456789012.dkr.ecr.ca-central-1.amazonaws.com/quetzal-test:v1", "v1"),
    ("127.0.0.1:5000/quetzal-test:abc1234-dirty-20260101T000000Z", "abc1234-dirty-20260101T000000Z"),
    ("127.0.0.1:5000/quetzal-test", "latest"),
    ("host/repo@sha256:0123", "sha256:0123"),
    ("", None),
])
def test_tag_of_image_uri(uri, tag):
    from quetzal_deploy.images.registry import tag_of

    assert tag_of(uri) == tag


def test_default_tag_without_git(tmp_path):
    """A repo without git history (a downloaded zip) still gets a unique, sortable tag."""
    from datetime import UTC, datetime

    from quetzal_deploy.images.build import default_tag

    when = datetime(2026, 5, 17, 8, 30, 0, tzinfo=UTC)
    assert default_tag(tmp_path, now=when) == "build-20260517T083000Z"


# Run in the built image: what its install layer carries, as JSON.
CONTENTS_PROBE = """\
import importlib.util, json, sysconfig
from pathlib import Path
site = Path(sysconfig.get_path("purelib"))
sources = [p for name in ("referencing", "botocore") for p in (site / name).rglob("*.py")]
print(json.dumps({
    "tests": sorted(str(p) for p in site.rglob("tests") if p.is_dir()),
    "stubs": sorted(str(p) for p in site.rglob("*.pyi")),
    "nbconvert": importlib.util.find_spec("nbconvert") is not None,
    "sources": len(sources),
    "uncompiled": sorted(str(p) for p in sources if not Path(importlib.util.cache_from_source(p)).is_file()),
}))
"""


@pytest.mark.docker
def test_image_drops_tests_stubs_and_nbconvert_and_still_runs_a_notebook(
        baked_repo, docker_engine, lambda_base_image, tmp_path):
    """The install layer keeps what steps import, compiled: the installed packages' tests and
    type stubs are deleted and nbconvert is not installed (notebooks are converted at build time
    by the standard library); a notebook importing a trimmed package runs through the handler."""
    with (baked_repo / "requirements.txt").open("a") as requirements:
        requirements.write("referencing\n")  # ships referencing/tests and .pyi stubs (its own, attrs', rpds')
    edit_notebook(baked_repo, "trimmed package", "import referencing.jsonschema\n"
                  "print('imported', referencing.jsonschema.__name__)")
    tag = f"trimmed-{uuid.uuid4().hex[:12]}"  # unique: other suites build on the same engine
    done = run_task(baked_repo, "build", "--tag", tag, env=image_env(lambda_base_image), timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    image = f"{REPO}:{tag}"
    lambda_like = {"remove": True, "read_only": True, "tmpfs": {"/tmp": ""}, "working_dir": "/var/task",
                   "entrypoint": ["python"]}
    try:
        contents, in_base = (
            json.loads(docker_engine.containers.run(name, command=["-c", CONTENTS_PROBE], **lambda_like))
            for name in (image, lambda_base_image))
        bucket = tmp_path / "bucket"
        shutil.copytree(baked_repo / "scenarios" / "base", bucket / "base")
        event = {"notebook_path": "notebooks/preparation.ipynb", "scenario_path_S3": "base/",
                 "launcher_arg": {"training_folder": "/tmp", "params": {}}, "metadata": {}}
        docker_engine.containers.run(
            image, command=["-m", "quetzal_deploy.runtime.cli", json.dumps(event), "--time-limit-s", "600"],
            environment={"QUETZAL_BUCKET_FOLDER": "/bucket"},
            volumes={str(bucket): {"bind": "/bucket", "mode": "rw"}}, **lambda_like)
    finally:
        docker_engine.images.remove(image, force=True)

    assert in_base["tests"]  # the base image's own are left alone (deleting them would not shrink it)
    assert contents["tests"] == in_base["tests"] and contents["stubs"] == in_base["stubs"]
    assert contents["nbconvert"] is False
    assert contents["sources"] > 50 and contents["uncompiled"] == []
    log = (bucket / "base" / "logs" / "preparation.txt").read_text()
    assert "imported referencing.jsonschema" in log and "preparation: wrote 3 layer(s)" in log
