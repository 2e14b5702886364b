"""Smaller defects of a step and a local run (issue #19): each a clear error, no traceback.

Real notebooks in real child processes, the handler's core on moto server S3 or a folder, and
``invoke run --local`` in a baked repo.
"""


import pytest
from test_run_local import (
    invoke,
    lambda_task,
    step_payload,
    write_definition,
    write_notebook,
)

from quetzal_deploy.local.errors import StatesError
from quetzal_deploy.local.interpreter import Interpreter
from quetzal_deploy.runtime.errors import InvalidEvent
from quetzal_deploy.runtime.handler import run_step
from quetzal_deploy.runtime.storage import FolderStorage, S3Storage

BUCKET = "quetzal-defects-test"


def nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.fixture
def task_root(tmp_path):
    root = tmp_path / "task"
    (root / "notebooks").mkdir(parents=True)
    (root / "notebooks" / "step.py").write_text("print('ran')\n")
    return root


def event(**changes) -> dict:
    return {"notebook_path": "notebooks/step.py", "scenario_path_S3": "base/",
            "launcher_arg": {"training_folder": "/tmp", "params": {}},
            "metadata": {"user_email": "modeller@example.org"}, **changes}


@pytest.mark.parametrize(("changes", "message"), [
    ({"launcher_arg": nested(5000)}, "launcher_arg nests objects or arrays too deeply"),
    ({"metadata": {"user_email": "x\ud800@example.org"}}, "lone surrogate"),
])
def test_hostile_event_values_are_invalid_events(task_root, tmp_path, changes, message):
    bucket = tmp_path / "bucket"
    (bucket / "base").mkdir(parents=True)
    (bucket / "base" / "info.json").write_text("{}")

    with pytest.raises(InvalidEvent, match=message):
        run_step(event(**changes), storage=FolderStorage(bucket), workdir=tmp_path / "work",
                 task_root=task_root, time_left_s=60, image_tag="t", out=lambda line: None)

    assert sorted(path.name for path in (bucket / "base").iterdir()) == ["info.json"]


def test_a_scenario_absent_from_the_bucket_is_refused_not_created(boto, task_root, tmp_path):
    s3 = boto.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": boto.region_name})
    s3.put_object(Bucket=BUCKET, Key="other/info.json", Body=b"{}")

    with pytest.raises(InvalidEvent, match="Scenario base/ is not in the bucket"):
        run_step(event(), storage=S3Storage(BUCKET, s3), workdir=tmp_path / "work", task_root=task_root,
                 time_left_s=60, image_tag="t", out=lambda line: None)

    assert [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET)["Contents"]] == ["other/info.json"]


def test_a_notebook_deleting_the_private_folder_fails_clearly_with_the_summary(baked_repo, tmp_path):
    write_notebook(baked_repo, "wipe", 'import shutil\nprint("before the wipe")\n'
                                       'shutil.rmtree(Path(argv["training_folder"]) / ".quetzal")\n')
    write_definition(baked_repo, {"wipe": lambda_task(step_payload("wipe"), End=True)}, "wipe")

    done = invoke(baked_repo, tmp_path, "run", "--local", "base")

    assert done.returncode == 1, done.stdout + done.stderr
    assert "deleted" in done.stdout and "leave .quetzal/ of the training folder alone" in done.stdout
    assert "Error: NotebookError" in done.stdout and "Run FAILED" in done.stdout
    assert "Traceback" not in done.stderr, done.stderr


def test_a_map_over_more_items_than_the_history_holds_fails_before_running_naming_the_map():
    """The real interpreter; the Lambda is a counter standing in for the function (no step may run)."""
    calls = []
    definition = {"StartAt": "Prepare", "States": {
        "Prepare": {"Type": "Pass", "Next": "Fan"},
        "Fan": {"Type": "Map", "ItemsPath": "$.items", "End": True,
                "ItemProcessor": {"StartAt": "step", "States": {"step": {
                    "Type": "Task", "Resource": "arn:aws:lambda:ca-central-1:000000000000:function:m",
                    "End": True}}}}}}
    interpreter = Interpreter(definition, lambda call: calls.append(call) or {})

    with pytest.raises(StatesError) as raised:
        interpreter.execute({"items": list(range(10_000))})

    assert raised.value.error == "States.Runtime"
    assert "Map 'Fan' has 10,000 items" in raised.value.cause and "25,000" in raised.value.cause
    assert calls == []


def test_params_nested_too_deeply_are_refused_clearly(baked_repo, tmp_path):
    params = tmp_path / "deep.json"
    params.write_text('{"a":' * 1500 + "1" + "}" * 1500)

    done = invoke(baked_repo, tmp_path, "run", "--local", "base", "--params", str(params))

    assert done.returncode != 0
    assert "nests objects or arrays too deeply" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_terminal_escapes_and_nul_from_a_notebook_never_reach_the_terminal(baked_repo, tmp_path):
    write_notebook(baked_repo, "noisy",
                   'print("clear\\x1b[2J title\\x1b]0;pwned\\x07 nul\\x00 csi\\x9b1m")\n')
    write_definition(baked_repo, {"noisy": lambda_task(step_payload("noisy"), End=True)}, "noisy")

    done = invoke(baked_repo, tmp_path, "run", "--local", "base")

    assert done.returncode == 0, done.stdout + done.stderr
    for raw in ("\x1b", "\x00", "\x07", "\x9b"):
        assert raw not in done.stdout
    assert "clear\\x1b[2J title\\x1b]0;pwned\\x07 nul\\x00 csi\\x9b1m" in done.stdout
