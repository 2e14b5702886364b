"""Parallel steps of one execution never overwrite each other (issue #19, item 1).

The pipeline has the shape of the backend's MapMatching service: a preparation step writes one
part per ``exec_id`` (``parallel/links_<i>.geojson``), a Map runs one iteration per part (each
downloads the whole scenario and rewrites only its own part), a merge step reads every part.
The iterations finish in a chosen order, driven by events, not by time: an iteration waits until
the bucket holds the result of the one it must finish after. Real notebooks run in real child
processes; the bucket is moto server over HTTP, or the local run's folder.
"""

import json
import threading
from pathlib import Path

import nbformat
import pytest
from test_run_local import invoke, lambda_task, run_folder, step_payload, write_definition

from fixtures.bake import bake
from quetzal_deploy.runtime.errors import WriteConflict
from quetzal_deploy.runtime.handler import run_step
from quetzal_deploy.runtime.storage import FolderStorage, S3Storage

BUCKET = "quetzal-parallel-test"
HEADER = """import json, os, sys, time
from pathlib import Path
default = {"training_folder": "../scenarios/base", "params": {}}
manual, argv = (True, default) if "ipykernel" in sys.argv[0] else (
    False, dict(default, **json.loads(sys.argv[1])))
on_lambda = bool(os.environ.get("AWS_EXECUTION_ENV"))
folder = Path(argv["training_folder"])


def in_bucket(key):
    \"\"\"The object's bytes in the bucket the run writes to, b"" while it does not exist.\"\"\"
    where = os.environ.get("WAIT_IN", "")
    if where.startswith("s3://"):
        import boto3
        bucket, prefix = where[5:].split("/", 1)
        try:
            return boto3.client("s3").get_object(Bucket=bucket, Key=prefix + key)["Body"].read()
        except Exception:
            return b""
    roots = [Path(where)] if where else list(Path.cwd().parent.glob(".quetzal/runs/*/bucket/base"))
    return b"".join((root / key).read_bytes() for root in roots if (root / key).is_file())


def signal(name):
    # tells the other steps of the test that this one has started (it has downloaded)
    (Path(os.environ["SIGNAL_DIR"]) / name).write_text("")


def signalled(name):
    return (Path(os.environ["SIGNAL_DIR"]) / name).exists()


def wait_until(condition, what):
    deadline = time.monotonic() + 240  # an event, bounded generously for a loaded machine
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {what}")
        time.sleep(0.05)
"""
PREPARATION = """ids = argv["params"]["mapmatching"]["exec_id"]
(folder / "parallel").mkdir(exist_ok=True)
for i in ids:
    (folder / "parallel" / f"links_{i}.geojson").write_text(json.dumps({"exec_id": i, "matched": False}))
print(f"prepared {len(ids)} parts")
"""
MAPMATCHING = """i = argv["params"]["exec_id"]
ids = argv["params"]["ids"]
parts = {j: json.loads((folder / "parallel" / f"links_{j}.geojson").read_text()) for j in ids}
signal(f"started_{i}")
after = i + 1 if i % 2 == 0 and i + 1 in ids else None  # an even iteration finishes after the next,
if after is None and i % 2:  # which waits until the even one has downloaded everything
    wait_until(lambda: signalled(f"started_{i - 1}"), f"iteration {i - 1}'s start")
if after is not None:
    wait_until(lambda: b'"matched": true' in in_bucket(f"parallel/links_{after}.geojson"),
               f"iteration {after}'s result")
(folder / "parallel" / f"links_{i}.geojson").write_text(json.dumps({"exec_id": i, "matched": True}))
print(f"matched part {i} (saw {len(parts)} parts)")
"""
MERGE = """parts = [json.loads(p.read_text()) for p in sorted((folder / "parallel").glob("links_*.geojson"))]
lost = [part["exec_id"] for part in parts if not part["matched"]]
assert not lost, f"results of iterations {lost} were lost"
(folder / "outputs").mkdir(exist_ok=True)
(folder / "outputs" / "merged.json").write_text(json.dumps(parts))
print(f"merged {len(parts)} parts")
"""
SAME_KEY = """wait_for = argv["params"].get("wait_for")
signal(argv["params"]["text"])
if not wait_for:
    wait_until(lambda: signalled("second"), "the other step's start")
else:
    wait_until(lambda: wait_for.encode() in in_bucket("outputs/shared.csv"), "the other step's result")
(folder / "outputs").mkdir(exist_ok=True)
(folder / "outputs" / "shared.csv").write_text(argv["params"]["text"])
(folder / "outputs" / f"own_{argv['params']['text']}.csv").write_text("mine")
"""


def write_notebook(root: Path, name: str, body: str) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(HEADER), nbformat.v4.new_code_cell(body)]
    (root / "notebooks").mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, root / "notebooks" / f"{name}.ipynb")


def mapmatching_definition(ids_path: str) -> dict:
    """The backend's MapMatching state machine, on this model's function."""
    item = {"notebook_path": "notebooks/mapmatching.ipynb", "scenario_path_S3.$": "$.scenario_path_S3",
            "launcher_arg.$": "$.launcher_arg", "metadata.$": "$.metadata"}
    merge = {"notebook_path": "notebooks/merge.ipynb", "scenario_path_S3.$": "$[0].scenario_path_S3",
             "launcher_arg.$": "$[0].launcher_arg", "metadata.$": "$[0].metadata"}
    return {
        "preparation": lambda_task(step_payload("preparation"), Next="Map"),
        "Map": {"Type": "Map", "ItemsPath": ids_path, "MaxConcurrency": 2,
                "Parameters": {"scenario_path_S3.$": "$.scenario_path_S3", "metadata.$": "$.metadata",
                               "launcher_arg": {"training_folder.$": "$.launcher_arg.training_folder",
                                                "params": {"exec_id.$": "$$.Map.Item.Value",
                                                           "ids.$": ids_path}}},
                "Iterator": {"StartAt": "mapmatching",
                             "States": {"mapmatching": lambda_task(item, End=True)}},
                "Next": "merge"},
        "merge": lambda_task(merge, End=True),
    }


@pytest.fixture(autouse=True)
def signals(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "signals"
    folder.mkdir()
    monkeypatch.setenv("SIGNAL_DIR", str(folder))
    return folder


def test_map_iterations_finishing_out_of_order_keep_every_result_in_a_local_run(tmp_path):
    repo = bake(tmp_path / "bake")
    for name, body in (("preparation", PREPARATION), ("mapmatching", MAPMATCHING), ("merge", MERGE)):
        write_notebook(repo, name, body)
    write_definition(repo, mapmatching_definition("$.launcher_arg.params.mapmatching.exec_id"), "preparation")
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"mapmatching": {"exec_id": [0, 1, 2, 3]}}))

    done = invoke(repo, tmp_path, "run", "--local", "base", "--params", str(params))

    assert done.returncode == 0, done.stdout + done.stderr
    scenario = run_folder(repo) / "bucket" / "base"
    merged = json.loads((scenario / "outputs" / "merged.json").read_text())
    assert merged == [{"exec_id": i, "matched": True} for i in range(4)]
    logs = sorted((scenario / "logs").glob("mapmatching*.txt"))
    assert [log.name for log in logs] == ["mapmatching-2.txt", "mapmatching-3.txt", "mapmatching-4.txt",
                                          "mapmatching.txt"]
    assert sorted(log.read_text().split("matched part ")[1][0] for log in logs) == ["0", "1", "2", "3"]


@pytest.fixture
def task_root(tmp_path) -> Path:
    root = tmp_path / "task"
    for name, body in (("preparation", PREPARATION), ("mapmatching", MAPMATCHING), ("merge", MERGE),
                       ("same_key", SAME_KEY)):
        write_notebook(root, name, body)
    return root


@pytest.fixture
def s3(boto):
    client = boto.client("s3")
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": boto.region_name})
    client.put_object(Bucket=BUCKET, Key="base/inputs/params.json", Body=b"[]")
    return client


def event(notebook: str, params: dict) -> dict:
    return {"notebook_path": f"notebooks/{notebook}.ipynb", "scenario_path_S3": "base/",
            "launcher_arg": {"training_folder": "/tmp", "params": params},
            "metadata": {"user_email": "modeller@example.org"}}


def run_parallel(storage, task_root: Path, tmp_path: Path, events: list[dict]) -> list:
    """``run_step`` on each event in its own thread and working folder, as parallel Lambdas; each
    result, or the error it raised."""
    results: list = [None] * len(events)

    def step(index: int) -> None:
        try:
            results[index] = run_step(events[index], storage=storage, workdir=tmp_path / f"work{index}",
                                      task_root=task_root, time_left_s=300, image_tag="t",
                                      out=lambda line: None)
        except Exception as ex:  # the test reads it
            results[index] = ex

    threads = [threading.Thread(target=step, args=(index,)) for index in range(len(events))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_map_iterations_finishing_out_of_order_keep_every_result_through_the_handler(
        s3, task_root, tmp_path, monkeypatch):
    """The handler on moto server S3, as four Lambdas of one Map, then the merge."""
    monkeypatch.setenv("WAIT_IN", f"s3://{BUCKET}/base/")
    storage = S3Storage(BUCKET, s3)
    ids = [0, 1, 2, 3]
    run_step(event("preparation", {"mapmatching": {"exec_id": ids}}), storage=storage,
             workdir=tmp_path / "prep", task_root=task_root, time_left_s=300, image_tag="t",
             out=lambda line: None)

    results = run_parallel(storage, task_root, tmp_path,
                           [event("mapmatching", {"exec_id": i, "ids": ids}) for i in ids])

    assert all(not isinstance(result, Exception) for result in results), results
    merged = run_step(event("merge", {}), storage=storage, workdir=tmp_path / "merge", task_root=task_root,
                      time_left_s=300, image_tag="t", out=lambda line: None)
    assert merged.uploaded == 2  # outputs/merged.json and info.json: no part written back
    parts = json.loads(s3.get_object(Bucket=BUCKET, Key="base/outputs/merged.json")["Body"].read())
    assert parts == [{"exec_id": i, "matched": True} for i in ids]
    log_keys = sorted(result.log_key for result in results)
    assert log_keys == ["base/logs/mapmatching-2.txt", "base/logs/mapmatching-3.txt",
                        "base/logs/mapmatching-4.txt", "base/logs/mapmatching.txt"]
    texts = [s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode() for key in log_keys]
    assert sorted(text.split("matched part ")[1][0] for text in texts) == ["0", "1", "2", "3"]


@pytest.mark.parametrize("existing", [False, True], ids=["new-key", "existing-key"])
@pytest.mark.parametrize("kind", ["s3", "folder"])
def test_two_parallel_steps_changing_one_key_fail_naming_it(kind, existing, s3, task_root, tmp_path,
                                                           monkeypatch):
    """The step that writes second fails with WriteConflict naming the key; the first one's
    result stays, and the second's own other files are written."""
    if kind == "s3":
        storage = S3Storage(BUCKET, s3)
        monkeypatch.setenv("WAIT_IN", f"s3://{BUCKET}/base/")
        if existing:
            s3.put_object(Bucket=BUCKET, Key="base/outputs/shared.csv", Body=b"before")
    else:
        storage = FolderStorage(tmp_path / "bucket")
        (tmp_path / "bucket" / "base" / "outputs").mkdir(parents=True)
        (tmp_path / "bucket" / "base" / "inputs").mkdir()
        (tmp_path / "bucket" / "base" / "inputs" / "params.json").write_text("[]")
        monkeypatch.setenv("WAIT_IN", str(tmp_path / "bucket" / "base"))
        if existing:
            (tmp_path / "bucket" / "base" / "outputs" / "shared.csv").write_text("before")

    first, second = run_parallel(storage, task_root, tmp_path, [
        event("same_key", {"text": "first"}), event("same_key", {"text": "second", "wait_for": "first"})])

    assert not isinstance(first, Exception), first
    assert isinstance(second, WriteConflict), second
    assert "base/outputs/shared.csv" in str(second) and "parallel steps" in str(second)
    read = ((lambda key: s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()) if kind == "s3"
            else (lambda key: (tmp_path / "bucket" / key).read_bytes()))
    assert read("base/outputs/shared.csv") == b"first"
    assert read("base/outputs/own_second.csv") == b"mine"
