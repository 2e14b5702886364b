"""The Lambda handler against moto server S3, running real notebooks in real child processes.

Each test gets its own task root (the image's code folder) with the notebooks of
tests/support/notebooks, its own working folder (QUETZAL_WORKDIR, never the real /tmp) and an
empty emulated account. AWS state is checked through the ``boto`` fixture's own client.
"""

import ast
import email.header
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from fixtures.bake import SRC
from quetzal_deploy.runtime.errors import (
    NotebookError,
    NotebookTimeout,
    StateTooLarge,
    StorageError,
)
from quetzal_deploy.runtime.handler import FIGURES_LINE, handler, run_step
from quetzal_deploy.runtime.storage import FolderStorage, S3Storage

pytestmark = pytest.mark.usefixtures("step_start")  # each test: warm steps, then fresh processes

NOTEBOOKS = Path(__file__).parent / "support" / "notebooks"
TEMPLATE = Path(__file__).resolve().parents[1] / "{{cookiecutter.model_name}}"
BUCKET = "quetzal-handler-test"
TAG = "v7-test"
INPUTS = {
    "base/inputs/params.json": b'[{"category": "general", "params": []}]',
    "base/inputs/pt/links.geojson": b'{"type": "FeatureCollection", "features": []}',
    "base/info.json": b'{"description": "Base scenario", "model_tag": "old", "last_modified_email": "a@b.c"}',
    "base/styles.json": b"[]",
}


class LambdaContext:
    """What the Lambda runtime passes: the time left before the function is killed."""

    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self.deadline - time.monotonic()) * 1000)


@pytest.fixture
def task_root(tmp_path) -> Path:
    root = tmp_path / "task"
    shutil.copytree(NOTEBOOKS, root / "notebooks")
    return root


@pytest.fixture
def workdir(tmp_path) -> Path:
    return tmp_path / "work"


@pytest.fixture
def s3(boto):
    client = boto.client("s3")
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={
        "LocationConstraint": boto.region_name})
    for key, body in INPUTS.items():
        client.put_object(Bucket=BUCKET, Key=key, Body=body)
    return client


@pytest.fixture
def lambda_env(monkeypatch, task_root, workdir, s3):
    """The Lambda's environment as the Terraform module and the Dockerfile set it."""
    monkeypatch.setenv("BUCKET_NAME", BUCKET)
    monkeypatch.setenv("QUETZAL_WORKDIR", str(workdir))
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(task_root))
    monkeypatch.setenv("IMAGE_TAG", TAG)


def make_event(notebook="writes_outputs", **changes):
    event = {
        "notebook_path": f"notebooks/{notebook}.ipynb",
        "scenario_path_S3": "base/",
        "launcher_arg": {"training_folder": "/tmp", "params": {"general": {"speed": 30}}},
        "metadata": {"user_email": "modeller@example.org", "team": "paris"},
    }
    event.update(changes)
    return event


def bucket_keys(s3) -> set[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


def read(s3, key) -> bytes:
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def process_gone(pid: int) -> bool:
    """No such process, or a zombie waiting for a parent that is not ours."""
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_success_runs_notebook_and_uploads_outputs(lambda_env, s3, task_root, workdir, capsys):
    event = make_event()
    returned = handler(event, LambdaContext(60))

    assert returned == {**event, "first": 1, "second": [2], "shared": "second"}
    seen = json.loads(read(s3, "base/outputs/seen.json"))
    assert seen["argv"]["training_folder"] == str(workdir.resolve())
    assert seen["argv"]["params"] == {"general": {"speed": 30}}
    assert seen["cwd"] == str((task_root / "notebooks").resolve())
    assert seen["inputs"] == ["inputs/params.json", "inputs/pt/links.geojson"]
    for name in ("HOME", "MPLCONFIGDIR", "TMPDIR"):
        assert Path(seen["env"][name]).is_relative_to(workdir.resolve()), name
    assert seen["env"]["TQDM_DISABLE"] == "1"
    assert str(task_root.resolve()) in seen["env"]["PYTHONPATH"].split(":")

    keys = bucket_keys(s3)
    assert keys == set(INPUTS) | {"base/outputs/seen.json", "base/outputs/tables/summary.csv",
                                  "base/logs/writes_outputs.txt"}
    csv = s3.get_object(Bucket=BUCKET, Key="base/outputs/tables/summary.csv")
    body = csv["Body"].read()
    # moto server drops metadata names with '_' (getmoto/moto#8432): user_email is checked on
    # the wire in test_uploads_send_the_front_end_metadata.
    assert csv["Metadata"] == {"team": "paris", "checksum": hashlib.sha256(body).hexdigest()}
    info = json.loads(read(s3, "base/info.json"))
    stamp = info.pop("last_modified_date")
    assert info == {"description": "Base scenario", "model_tag": TAG,
                    "last_modified_email": "modeller@example.org"}
    assert datetime.fromisoformat(stamp).tzinfo is not None and stamp.endswith("Z")
    for key in ("base/inputs/params.json", "base/inputs/pt/links.geojson"):  # not uploaded back
        assert s3.head_object(Bucket=BUCKET, Key=key)["Metadata"] == {}
    assert b"wrote" in read(s3, "base/logs/writes_outputs.txt")
    printed = capsys.readouterr().out
    for name in ("clean", "download", "run", "upload"):
        assert sum(line.startswith(f"[quetzal] {name}: ") for line in printed.splitlines()) == 1
    assert FIGURES_LINE not in printed  # measured and logged only behind `invoke run --local --docker`


def test_warm_start_cleans_the_previous_scenario(lambda_env, s3, workdir):
    (workdir / "outputs").mkdir(parents=True)
    (workdir / "outputs" / "stale.geojson").write_text("{}")
    (workdir / "inputs").mkdir()
    (workdir / "inputs" / "other_scenario.json").write_text("{}")

    handler(make_event(), LambdaContext(60))

    assert "base/outputs/stale.geojson" not in bucket_keys(s3)
    seen = json.loads(read(s3, "base/outputs/seen.json"))
    assert "inputs/other_scenario.json" not in seen["inputs"]


def test_step_result_reports_what_the_step_cost(s3, task_root, workdir):
    result = run_step(make_event("memory"), storage=S3Storage(BUCKET, s3), workdir=workdir,
                      task_root=task_root, time_left_s=60, image_tag=TAG, out=lambda line: None)

    assert result.peak_memory_mb >= 150
    assert result.workdir_mb >= 3
    assert set(result.durations) == {"clean", "download", "run", "upload"}
    assert result.downloaded == len(INPUTS)
    assert result.uploaded == 2  # outputs/big.bin, info.json: not the untouched styles.json, nothing private
    assert result.log_key == "base/logs/memory.txt"


def test_failing_notebook_raises_its_traceback_after_uploading_the_log(lambda_env, s3):
    with pytest.raises(NotebookError) as error:
        handler(make_event("fails"), LambdaContext(60))

    message = str(error.value)
    assert "notebooks/fails.ipynb exited with code 1" in message
    assert "Traceback (most recent call last):" in message
    assert "ValueError: demand is negative: -5" in message
    log = read(s3, "base/logs/fails.txt").decode()
    assert "checking the demand" in log and "ValueError: demand is negative: -5" in log
    assert json.loads(read(s3, "base/info.json"))["model_tag"] == "old"
    assert not [key for key in bucket_keys(s3) if key.startswith("base/outputs/")]


def test_end_of_notebook_keeps_a_later_failure_from_failing_the_step(lambda_env, s3):
    event = make_event("stops_early")

    assert handler(event, LambdaContext(60)) == event
    assert read(s3, "base/outputs/partial.txt") == b"kept"
    assert "a failure after end_of_notebook is ignored" in read(s3, "base/logs/stops_early.txt").decode()


def test_oversized_return_fails_before_any_output_is_uploaded(lambda_env, s3):
    with pytest.raises(StateTooLarge, match=r"notebooks/big_return.ipynb returned an event of \d+ bytes"):
        handler(make_event("big_return"), LambdaContext(60))

    assert "base/logs/big_return.txt" in bucket_keys(s3)
    assert json.loads(read(s3, "base/info.json"))["model_tag"] == "old"


def test_return_that_is_not_an_object_is_a_notebook_error(lambda_env, s3):
    with pytest.raises(NotebookError, match="it must be a JSON object"):
        handler(make_event("bad_return"), LambdaContext(60))


def processes_in(folder: Path) -> list[int]:
    """Live processes whose working folder is inside ``folder`` (a notebook and its children)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and Path(os.readlink(proc / "cwd")).is_relative_to(folder.resolve()) \
                    and not process_gone(int(proc.name)):
                found.append(int(proc.name))
        except OSError:  # gone meanwhile, or not ours to inspect
            continue
    return found


def test_timeout_stops_the_notebook_and_keeps_its_log(lambda_env, s3, task_root):
    """Whether or not a busy machine let the notebook start its helper before the deadline, no
    process of the step is left: checked by working folder (the notebook's, which its child
    inherits), waiting for the kernel to finish the kill."""
    # 40 s: the handler keeps a 2 s margin (1 s below 20 s) to kill the notebook and upload its
    # log before Lambda's deadline, which holds on a loaded 2-core machine where 1 s did not.
    context = LambdaContext(40)
    with pytest.raises(NotebookTimeout) as error:
        handler(make_event("sleeps"), context)

    assert context.get_remaining_time_in_millis() > 0, "the handler must return before Lambda kills it"
    message = str(error.value)
    assert message.startswith("notebooks/sleeps.ipynb was stopped after ")
    assert "base/logs/sleeps.txt" in message
    assert "run the step on Fargate" in message and "ecs:runTask.waitForTaskToken" in message
    log = read(s3, "base/logs/sleeps.txt").decode()
    assert "the Lambda time limit was near" in log
    deadline = time.monotonic() + 60
    while processes_in(task_root):
        assert time.monotonic() < deadline, f"still running: {processes_in(task_root)}"
        time.sleep(0.1)
    assert "base/outputs/never.txt" not in bucket_keys(s3)


def test_uploads_send_the_front_end_metadata(boto, s3, task_root, workdir):
    """Every PUT carries x-amz-meta-user_email and x-amz-meta-checksum, as the front end's do.

    Read on the wire: moto server's HTTP layer drops header names with '_' (getmoto/moto#8432).
    """
    sent = {}

    def record(request, **kwargs):
        if request.method == "PUT":
            sent[request.url.split(f"/{BUCKET}/", 1)[1]] = dict(request.headers)

    client = boto.client("s3")
    client.meta.events.register("before-send.s3", record)
    run_step(make_event(), storage=S3Storage(BUCKET, client), workdir=workdir, task_root=task_root,
             time_left_s=60, image_tag=TAG, out=lambda line: None)

    assert set(sent) == {"base/outputs/seen.json", "base/outputs/tables/summary.csv", "base/info.json",
                         "base/logs/writes_outputs.txt"}  # not the untouched styles.json
    for key, headers in sent.items():
        assert headers["x-amz-meta-user_email"] == b"modeller@example.org", key
        assert headers["x-amz-meta-checksum"] == hashlib.sha256(read(s3, key)).hexdigest().encode()


def test_non_ascii_metadata_is_stored_rfc2047_encoded(lambda_env, s3):
    handler(make_event(metadata={"author": "José Núñez"}), LambdaContext(60))

    stored = s3.head_object(Bucket=BUCKET, Key="base/outputs/seen.json")["Metadata"]["author"]
    assert stored.isascii()
    decoded = "".join(
        part.decode(charset) if isinstance(part, bytes) else part
        for part, charset in email.header.decode_header(stored)
    )
    assert decoded == "José Núñez"


def test_missing_bucket_name_is_a_clear_error(lambda_env, monkeypatch):
    monkeypatch.delenv("BUCKET_NAME")
    with pytest.raises(StorageError, match="BUCKET_NAME is not set"):
        handler(make_event(), LambdaContext(60))


def test_missing_bucket_is_a_storage_error(lambda_env, monkeypatch):
    monkeypatch.setenv("BUCKET_NAME", "no-such-bucket-here")
    with pytest.raises(StorageError, match="s3://no-such-bucket-here/base/"):
        handler(make_event(), LambdaContext(60))


def folder_bucket(tmp_path) -> Path:
    bucket = tmp_path / "bucket"
    for key, body in INPUTS.items():
        (bucket / key).parent.mkdir(parents=True, exist_ok=True)
        (bucket / key).write_bytes(body)
    return bucket


def test_mounted_bucket_folder_replaces_s3(lambda_env, s3, tmp_path, monkeypatch, capsys):
    """`invoke run --local --docker` mounts a folder as the bucket (QUETZAL_BUCKET_FOLDER); the
    handler then logs the step's figures for the runner, and returns what it returns on AWS."""
    bucket = folder_bucket(tmp_path)
    monkeypatch.setenv("QUETZAL_BUCKET_FOLDER", str(bucket))
    before = bucket_keys(s3)
    event = make_event()

    returned = handler(event, LambdaContext(60))

    assert returned == {**event, "first": 1, "second": [2], "shared": "second"}
    (figures,) = [line[len(FIGURES_LINE):] for line in capsys.readouterr().out.splitlines()
                  if line.startswith(FIGURES_LINE)]
    measured = json.loads(figures)
    assert measured["peak_memory_mb"] > 1 and measured["tmp_mb"] > 0, measured

    assert json.loads((bucket / "base/outputs/seen.json").read_text())["argv"]["params"]
    assert json.loads((bucket / "base/info.json").read_text())["model_tag"] == TAG
    assert bucket_keys(s3) == before


def test_local_folder_storage_runs_the_same_step(tmp_path, task_root, workdir):
    bucket = folder_bucket(tmp_path)

    result = run_step(make_event(), storage=FolderStorage(bucket), workdir=workdir,
                      task_root=task_root, time_left_s=60, image_tag="local", out=lambda line: None)

    assert result.event["shared"] == "second"
    assert json.loads((bucket / "base/outputs/seen.json").read_text())["argv"]["params"]
    assert "wrote" in (bucket / "base/logs/writes_outputs.txt").read_text()
    assert json.loads((bucket / "base/info.json").read_text())["model_tag"] == "local"


def test_a_bare_call_id_is_the_scenario_folder_of_that_name(tmp_path, task_root, workdir):
    """The front end's microservice screens send scenario_path_S3 as a call id (a UUID) without '/'."""
    bucket = folder_bucket(tmp_path)
    call_id = "3f2b8c1e-6a4d-4e8b-9f0a-1c2d3e4f5a6b"
    (bucket / "base").rename(bucket / call_id)

    result = run_step(make_event(scenario_path_S3=call_id), storage=FolderStorage(bucket), workdir=workdir,
                      task_root=task_root, time_left_s=60, image_tag="local", out=lambda line: None)

    assert result.event["scenario_path_S3"] == call_id  # passed on as the front end sent it
    assert json.loads((bucket / call_id / "outputs/seen.json").read_text())["argv"]["params"]
    assert (bucket / call_id / "logs/writes_outputs.txt").is_file()
    assert sorted(path.name for path in bucket.iterdir()) == [call_id]


def test_template_notebook_runs_on_the_template_scenario(lambda_env, s3, task_root):
    """The template's step notebook, converted as the Dockerfile does, on scenarios/base."""
    notebook = task_root / "notebooks" / "preparation.ipynb"
    source = (TEMPLATE / "notebooks" / "_step.ipynb").read_text(encoding="utf-8")
    notebook.write_text(source.replace("__STEP_NAME__", "preparation"), encoding="utf-8")
    subprocess.run([sys.executable, "-m", "quetzal_deploy.runtime.convert", "notebooks"],
                   cwd=task_root, check=True, env={**os.environ, "PYTHONPATH": str(SRC)})
    assert notebook.with_suffix(".py").is_file()
    s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": key} for key in INPUTS]})
    base = TEMPLATE / "scenarios" / "base"
    for path in base.rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), BUCKET, f"base/{path.relative_to(base).as_posix()}")
    event = make_event("preparation", launcher_arg={
        "training_folder": "/tmp", "params": {"general": {"scenario_label": "paris-2030"}}})

    assert handler(event, LambdaContext(120)) == event

    keys = bucket_keys(s3)
    for name in ("pt", "road", "od"):
        layer = json.loads(read(s3, f"base/outputs/preparation_{name}.geojson"))
        assert all("length_km" in feature["properties"] for feature in layer["features"])
        assert layer["crs"]["properties"]["name"] == "urn:ogc:def:crs:OGC:1.3:CRS84", "the front end needs it"
    assert "# preparation: paris-2030" in read(s3, "base/outputs/report.md").decode()
    assert "base/outputs/preparation_summary.csv" in keys
    assert json.loads(read(s3, "base/info.json"))["model_tag"] == TAG
    assert '"scenario_label": "paris-2030"' in read(s3, "base/logs/preparation.txt").decode()


def test_build_time_script_is_preferred_to_the_notebook(lambda_env, s3, task_root):
    """The image converts notebooks at build time; the handler runs that .py, not the .ipynb."""
    shutil.copy(task_root / "notebooks" / "fails.ipynb", task_root / "notebooks" / "built.ipynb")
    (task_root / "notebooks" / "built.py").write_text("print('from the build-time script')\n")

    handler(make_event("built"), LambdaContext(60))

    assert read(s3, "base/logs/built.txt") == b"from the build-time script\n"


@pytest.mark.parametrize("source, expected", [
    ("print('partial work')\nimport sys\nsys.exit(3)\n", "exited with code 3"),
    ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", "was killed by SIGKILL (out of memory?"),
])
def test_failure_without_traceback_says_how_it_ended(lambda_env, s3, task_root, source, expected):
    (task_root / "notebooks" / "ends.py").write_text(source)

    with pytest.raises(NotebookError, match=re.escape(f"notebooks/ends.py {expected}")):
        handler(make_event(notebook_path="notebooks/ends.py"), LambdaContext(60))

    assert "base/logs/ends.txt" in bucket_keys(s3)


def test_broken_notebook_is_a_notebook_error_with_a_log(lambda_env, s3, task_root):
    (task_root / "notebooks" / "broken.ipynb").write_text('{"cells": [')

    with pytest.raises(NotebookError, match="broken.ipynb could not be converted to a script"):
        handler(make_event("broken"), LambdaContext(60))

    assert b"could not be converted" in read(s3, "base/logs/broken.txt")


def test_runtime_imports_only_what_the_image_has():
    """The image ships quetzal_deploy/runtime, quetzal_deploy/contract and requirements.txt (boto3)
    only: they import nothing else of the package and none of the workstation's tools."""
    probe = ("import sys; import quetzal_deploy.runtime.handler, quetzal_deploy.runtime.cli, "
             "quetzal_deploy.runtime.params, quetzal_deploy.contract.execution, "
             "quetzal_deploy.contract.layers; print(sorted(sys.modules))")
    modules = ast.literal_eval(subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True,
                                              text=True, cwd=SRC).stdout)
    loaded = {name.split(".")[0] for name in modules}
    assert {"boto3", "botocore", "s3transfer"} <= loaded
    assert not loaded & {"nbconvert", "dotenv", "invoke", "docker", "tqdm", "jsonpath_ng"}
    ours = {name for name in modules if name.startswith("quetzal_deploy.")}
    shipped = ("quetzal_deploy.runtime", "quetzal_deploy.contract")
    assert ours and all(name.startswith(shipped) for name in ours), ours
