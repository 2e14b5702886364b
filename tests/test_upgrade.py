"""`invoke upgrade` on real bakes, real git and real invoke processes.

Version N is a copy of this checkout; the repo is baked from it. Version N+1 is another copy the
test edits (a new version, a handler fix in the runtime, a Dockerfile and a .env change): running
the baked repo's invoke with N+1's ``src`` first on PYTHONPATH is "N+1 installed".
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

import quetzal_deploy
from fixtures.bake import TEMPLATE
from fixtures.tasks import run_task
from quetzal_deploy.images.build import VERSION_LABEL

MODEL = "quetzal-test"

IGNORED = shutil.ignore_patterns(".git", "build", "__pycache__", ".pytest_cache", ".ruff_cache", ".terraform",
                                 ".hypothesis", ".benchmarks", "*.tfstate*")
ENV_LINE = "    PIP_DISABLE_PIP_VERSION_CHECK=1\n"
ENV_LINES_N1 = "    PIP_DISABLE_PIP_VERSION_CHECK=1 \\\n    QUETZAL_UPGRADED=yes\n"
HANDLER_FIX = "\nHANDLER_FIX = 'the N+1 handler'\n"
NEW_SETTING = "# Added by the template N+1.\nQUETZAL_NEW_SETTING=on\n"
MODULE_FIX = "\n# The Terraform module of N+1.\n"


def git(repo, *args):
    identity = ["-c", "user.name=Model Author", "-c", "user.email=author@example.com"]
    return subprocess.run(["git", *identity, *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


def set_version(template: Path, version: str) -> None:
    init = template / "src" / "quetzal_deploy" / "__init__.py"
    text = init.read_text(encoding="utf-8")
    old = next(line for line in text.splitlines() if line.startswith("__version__ = "))
    init.write_text(text.replace(old, f'__version__ = "{version}"'), encoding="utf-8")


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def make_next_version(template: Path) -> None:
    """N+1: a new version, a handler fix, a Dockerfile change, a new .env setting at its end, a
    change in the Terraform module (vendored in the repo)."""
    set_version(template, "1.1.0")
    handler = template / "src" / "quetzal_deploy" / "runtime" / "handler.py"
    handler.write_text(handler.read_text(encoding="utf-8") + HANDLER_FIX, encoding="utf-8")
    scaffold = template / "{{cookiecutter.model_name}}"
    edit(scaffold / "Dockerfile", ENV_LINE, ENV_LINES_N1)
    with (scaffold / ".env").open("a", encoding="utf-8") as env:
        env.write(NEW_SETTING)
    with (template / "terraform" / "main.tf").open("a", encoding="utf-8") as module:
        module.write(MODULE_FIX)


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    """{"n": template N, "n1": template N+1, "baked": the repo baked from N}, N at 1.0.0."""
    root = tmp_path_factory.mktemp("versions")
    old, new = root / "n", root / "n1"
    shutil.copytree(TEMPLATE, old, ignore=IGNORED)
    set_version(old, "1.0.0")
    shutil.copytree(old, new)
    make_next_version(new)
    baked = root / "baked"
    subprocess.run([sys.executable, "-m", "cookiecutter", str(old), "--no-input", "-o", str(baked)],
                   env={"PATH": "/usr/bin:/bin", "HOME": str(root), "PYTHONPATH": str(old / "src")},
                   check=True, capture_output=True, text=True)
    return {"n": old, "n1": new, "baked": baked / "quetzal-test"}


@pytest.fixture
def repo(versions, tmp_path) -> Path:
    target = tmp_path / "quetzal-test"
    shutil.copytree(versions["baked"], target, symlinks=True)
    return target


@pytest.fixture
def installed(versions) -> dict:
    """The environment in which N+1 is the installed quetzal-deploy."""
    return {"PYTHONPATH": str(versions["n1"] / "src")}


def model_edits(repo: Path) -> None:
    """The model's own work: a notebook cell, a .env value, an extra task; committed."""
    notebook = repo / "notebooks" / "preparation.ipynb"
    cells = json.loads(notebook.read_text(encoding="utf-8"))
    code = next(cell for cell in cells["cells"] if cell["cell_type"] == "code")
    code["source"] = [*code["source"], "\n# the model's own edit\n"]
    notebook.write_text(json.dumps(cells, indent=1) + "\n", encoding="utf-8")
    edit(repo / ".env", "LAMBDA_MEMORY_SIZE=4016", "LAMBDA_MEMORY_SIZE=3008")
    with (repo / "tasks.py").open("a", encoding="utf-8") as tasks:
        tasks.write("\n\nfrom invoke import task  # noqa: E402\n\n\n@task\ndef hello(c):\n"
                    "    \"\"\"The model's own task.\"\"\"\n    print('hello from the model')\n\n\n"
                    "ns.add_task(hello)  # noqa: F821\n")
    edit(repo / "tasks.py", "import ns  # noqa: F401", "import ns")
    git(repo, "commit", "-qam", "The model's own edits")


def test_baked_repo_records_its_template_and_keeps_the_pristine_bake(repo):
    record = json.loads((repo / ".quetzal-template.json").read_text(encoding="utf-8"))
    assert record["version"] == "1.0.0" and record["answers"]["model_name"] == "quetzal-test"
    assert not [key for key in record["answers"] if key.startswith("_")]
    assert git(repo, "rev-parse", "quetzal-template") == git(repo, "rev-parse", "main")


def test_upgrade_brings_the_template_changes_and_keeps_the_model_edits(repo, installed):
    model_edits(repo)
    behind = run_task(repo, "upgrade", "--check", env=installed)
    assert behind.returncode == 1 and "BEHIND" in behind.stdout and "1.0.0" in behind.stdout, behind.stdout

    done = run_task(repo, "upgrade", "--yes", env=installed)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "Template changes from 1.0.0 to 1.1.0:" in done.stdout
    assert "+QUETZAL_NEW_SETTING=on" in done.stdout and "+    QUETZAL_UPGRADED=yes" in done.stdout
    assert "QUETZAL_UPGRADED=yes" in (repo / "Dockerfile").read_text()  # the template's changes came
    env_file = (repo / ".env").read_text()
    assert "LAMBDA_MEMORY_SIZE=3008" in env_file and NEW_SETTING in env_file  # both edits in one file
    assert "the model's own edit" in (repo / "notebooks" / "preparation.ipynb").read_text()
    pinned = (repo / "requirements-dev.txt").read_text()  # the pin moves with the template, N to N+1
    assert f"quetzal-deploy @ {Path(installed['PYTHONPATH']).parent.as_uri()}" in pinned, pinned
    assert (repo / "infra" / "modules" / "quetzal-model" / "main.tf").read_text().endswith(MODULE_FIX)
    assert json.loads((repo / ".quetzal-template.json").read_text())["version"] == "1.1.0"
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "log", "-1", "--format=%P", "HEAD").count(" ") == 1  # a merge, reviewable
    assert run_task(repo, "upgrade", "--check", env=installed).stdout.startswith("OK: scaffolding at")
    again = run_task(repo, "upgrade", "--yes", env=installed)
    assert again.returncode == 0 and "Up to date" in again.stdout

    hello = run_task(repo, "hello", env=installed)
    assert hello.returncode == 0 and "hello from the model" in hello.stdout, hello.stderr
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=repo,
                           env={**os.environ, **installed}, capture_output=True, text=True, timeout=900)
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-3000:]
    run = run_task(repo, "run", "--local", "base", env=installed, timeout=900)
    assert run.returncode == 0 and "Run SUCCEEDED" in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]


def test_both_changing_the_same_lines_is_a_conflict_nothing_overwritten(repo, installed):
    edit(repo / "Dockerfile", ENV_LINE, "    PIP_DISABLE_PIP_VERSION_CHECK=0\n")
    model_edits(repo)
    before = git(repo, "rev-parse", "HEAD")

    done = run_task(repo, "upgrade", "--yes", env=installed)

    assert done.returncode == 1
    assert "changed the same lines in:\n  Dockerfile\n" in done.stderr, done.stderr
    assert "git merge --abort" in done.stderr and "Traceback" not in done.stderr
    dockerfile = (repo / "Dockerfile").read_text()
    assert "<<<<<<<" in dockerfile and "PIP_DISABLE_PIP_VERSION_CHECK=0" in dockerfile
    assert "QUETZAL_UPGRADED=yes" in dockerfile
    assert "LAMBDA_MEMORY_SIZE=3008" in (repo / ".env").read_text()
    git(repo, "merge", "--abort")
    assert git(repo, "rev-parse", "HEAD") == before and git(repo, "status", "--porcelain") == ""
    assert "PIP_DISABLE_PIP_VERSION_CHECK=0\n" in (repo / "Dockerfile").read_text()
    resumed = run_task(repo, "upgrade", "--yes", env=installed)  # the branch already holds N+1
    assert resumed.returncode == 1 and "Dockerfile" in resumed.stderr
    assert "+    QUETZAL_UPGRADED=yes" in resumed.stdout, resumed.stdout
    in_progress = run_task(repo, "upgrade", "--yes", env=installed)
    assert in_progress.returncode == 1 and "A merge is in progress" in in_progress.stderr


def test_upgrade_refuses_a_dirty_tree_and_asks_before_merging(repo, installed):
    (repo / "Dockerfile").write_text("# uncommitted\n", encoding="utf-8")
    dirty = run_task(repo, "upgrade", "--yes", env=installed)
    assert dirty.returncode == 1 and "Commit or stash your changes first" in dirty.stderr
    git(repo, "checkout", "--", "Dockerfile")
    before = git(repo, "rev-parse", "HEAD", "quetzal-template")

    declined = run_task(repo, "upgrade", env=installed, input="n\n")
    unanswered = run_task(repo, "upgrade", env=installed, input="")

    assert declined.returncode == 1 and "Nothing changed." in declined.stdout
    assert "[y/N]" in declined.stdout and "+    QUETZAL_UPGRADED=yes" in declined.stdout
    assert unanswered.returncode == 1 and "re-run with --yes" in unanswered.stderr
    assert git(repo, "rev-parse", "HEAD", "quetzal-template") == before


def test_a_moved_template_branch_is_refused_and_the_model_files_stay(repo, installed):
    """`git branch -f quetzal-template main`: merging a render over it would delete every model
    file the template lacks. Refused with the command restoring the branch; after it, the
    upgrade keeps them."""
    bake = git(repo, "rev-parse", "quetzal-template")
    (repo / "quetzal_plugins.py").write_text("# the model's plugin hooks\n")
    (repo / "scenarios" / "base" / "inputs" / "extra.csv").write_text("a,b\n1,2\n")
    git(repo, "add", "-A")
    model_edits(repo)
    git(repo, "branch", "-f", "quetzal-template", "main")
    before = git(repo, "rev-parse", "HEAD")

    done = run_task(repo, "upgrade", "--yes", env=installed)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stdout + done.stderr
    assert "moved or rewritten" in done.stderr
    assert f"git branch -f quetzal-template {bake[:12]}" in done.stderr
    assert git(repo, "rev-parse", "HEAD") == before and (repo / "quetzal_plugins.py").is_file()

    git(repo, "branch", "-f", "quetzal-template", bake[:12])
    done = run_task(repo, "upgrade", "--yes", env=installed)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (repo / "quetzal_plugins.py").is_file() and (repo / "scenarios/base/inputs/extra.csv").is_file()


def test_upgrade_refuses_a_detached_head(repo, installed):
    git(repo, "checkout", "-q", "--detach")
    done = run_task(repo, "upgrade", "--yes", env=installed)
    assert done.returncode == 1 and "HEAD is detached" in done.stderr, done.stdout + done.stderr
    assert git(repo, "status", "--porcelain") == ""


def test_a_clone_without_the_template_branch_gets_the_command_that_fixes_it(repo, installed, tmp_path):
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    done = run_task(clone, "upgrade", "--yes", env=installed)
    assert done.returncode == 1
    assert "git fetch origin quetzal-template:quetzal-template" in done.stderr, done.stderr
    git(clone, "fetch", "-q", "origin", "quetzal-template:quetzal-template")
    assert run_task(clone, "upgrade", "--yes", env=installed).returncode == 0


def test_check_is_ok_at_the_installed_version(repo, versions):
    done = run_task(repo, "upgrade", "--check", env={"PYTHONPATH": str(versions["n"] / "src")})
    assert done.returncode == 0 and done.stdout == "OK: scaffolding at quetzal-template 1.0.0.\n"


def runtime_line(done) -> str:
    """The doctor report's line about the deployed image's runtime, its spaces collapsed."""
    return " ".join(next(line for line in done.stdout.splitlines() if "image runtime" in line).split())


def deploy_function(boto, image_uri: str) -> None:
    role = boto.client("iam").create_role(RoleName=f"{MODEL}-lambda", AssumeRolePolicyDocument="{}")
    boto.client("lambda").create_function(FunctionName=MODEL, PackageType="Image", Role=role["Role"]["Arn"],
                                          Code={"ImageUri": image_uri})


@pytest.mark.docker
@pytest.mark.xdist_group("docker")
def test_the_image_built_after_an_upgrade_carries_the_new_runtime(
        repo, versions, installed, boto, docker_engine, lambda_base_image, registry):
    """Deployed at N, upgraded to N+1: doctor warns; pushed again: the image says N+1 and doctor agrees."""
    run = uuid.uuid4().hex[:10]  # tags of their own: other test runs share the engine and the registry
    old = {"PYTHONPATH": str(versions["n"] / "src"), "QUETZAL_BASE_IMAGE": lambda_base_image,
           "QUETZAL_REGISTRY": registry}
    new = {**old, **installed}
    repository = boto.client("ecr").create_repository(repositoryName=MODEL)["repository"]["repositoryUri"]
    first = run_task(repo, "push", "--initial", "--tag", f"n-{run}", env=old, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    deploy_function(boto, f"{repository}:n-{run}")
    assert run_task(repo, "upgrade", "--yes", env=new).returncode == 0

    behind = runtime_line(run_task(repo, "doctor", env=new))
    pushed = run_task(repo, "push", "--tag", f"n1-{run}", env=new, timeout=900)
    assert pushed.returncode == 0, pushed.stdout[-3000:] + pushed.stderr[-3000:]
    current = runtime_line(run_task(repo, "doctor", env=new))

    assert behind.startswith("!") and "quetzal-deploy 1.0.0, older than the installed 1.1.0" in behind, behind
    image = docker_engine.images.get(f"{MODEL}:n1-{run}")
    assert image.labels[VERSION_LABEL] == "1.1.0"
    assert "QUETZAL_UPGRADED=yes" in image.attrs["Config"]["Env"]  # the template's Dockerfile change
    shipped = docker_engine.containers.run(image.id, entrypoint=["cat"], remove=True, command=[
        "/var/task/info.json", "/var/task/quetzal_deploy/runtime/handler.py"]).decode()
    assert '{"quetzal_deploy_version": "1.1.0"}' in shipped and HANDLER_FIX.strip() in shipped
    assert current.startswith("✓") and f"image n1-{run}: quetzal-deploy 1.1.0" in current, current


def put_image(registry: str, repo: str, tag: str, labels: dict) -> None:
    """An image with no layers and these labels, put in the registry through its HTTP API."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": labels},
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    digest = f"sha256:{hashlib.sha256(config).hexdigest()}"
    base = f"http://{registry}/v2/{repo}"
    with urllib.request.urlopen(urllib.request.Request(f"{base}/blobs/uploads/", method="POST")) as started:
        location = started.headers["Location"]
    upload = f"{location}{'&' if '?' in location else '?'}digest={digest}"
    blob = urllib.request.Request(upload, data=config, method="PUT",
                                  headers={"Content-Type": "application/octet-stream"})
    urllib.request.urlopen(blob).close()
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config),
                           "digest": digest}, "layers": []}
    request = urllib.request.Request(f"{base}/manifests/{tag}", data=json.dumps(manifest).encode(),
                                     method="PUT", headers={"Content-Type": manifest["mediaType"]})
    urllib.request.urlopen(request).close()


@pytest.mark.parametrize(("labels", "expected"), [
    ({VERSION_LABEL: "0.9.0"}, f"! image runtime image {{tag}} runs the handler of quetzal-deploy 0.9.0, "
                               f"older than the installed {quetzal_deploy.__version__}"),
    ({}, "! image runtime image {tag} runs the handler of quetzal-deploy (unrecorded)"),
    ({VERSION_LABEL: quetzal_deploy.__version__}, f"✓ image runtime image {{tag}}: quetzal-deploy "
                                                  f"{quetzal_deploy.__version__}"),
])
def test_doctor_reads_the_deployed_image_version_from_the_registry(baked_repo, boto, registry, labels,
                                                                   expected):
    tag = f"doctor-{uuid.uuid4().hex[:10]}"
    put_image(registry, MODEL, tag, labels)
    repository = boto.client("ecr").create_repository(repositoryName=MODEL)["repository"]["repositoryUri"]
    deploy_function(boto, f"{repository}:{tag}")

    done = run_task(baked_repo, "doctor", env={"QUETZAL_REGISTRY": registry})

    assert runtime_line(done).startswith(expected.format(tag=tag)), done.stdout


def test_doctor_says_why_it_cannot_read_the_image_version(baked_repo, boto):
    repository = boto.client("ecr").create_repository(repositoryName=MODEL)["repository"]["repositoryUri"]
    deploy_function(boto, f"{repository}:anything")
    done = run_task(baked_repo, "doctor")  # an emulator, and no QUETZAL_REGISTRY holding the layers
    assert runtime_line(done).startswith("! image runtime could not read the deployed image's version: an "
                                         "emulated ECR keeps no layers: set QUETZAL_REGISTRY"), done.stdout
