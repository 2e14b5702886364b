"""End to end: ``invoke run --local`` in baked repos, as a user runs it, with no AWS account.

Each test drives the real task in a subprocess (cwd = the baked repo): the real interpreter, the
real Lambda handler core, real notebooks executed. The environment carries no AWS credentials or
endpoint, which proves a local run needs none.
"""

import copy
import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import nbformat
import pytest

from fixtures.bake import bake
from quetzal_deploy.local.report import StepRecord, summary

pytestmark = pytest.mark.usefixtures("step_start")  # each test: warm steps, then fresh processes

HEADER = """import json, os, sys, time
from pathlib import Path
default = {"training_folder": "../scenarios/base", "params": {}}
manual, argv = (True, default) if "ipykernel" in sys.argv[0] else (
    False, dict(default, **json.loads(sys.argv[1])))
on_lambda = bool(os.environ.get("AWS_EXECUTION_ENV"))
outputs = Path(argv["training_folder"]) / "outputs"
outputs.mkdir(parents=True, exist_ok=True)
"""
FUNCTION = "arn:aws:lambda:${region}:${account_id}:function:${function_name}"


def write_notebook(repo: Path, name: str, body: str) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(HEADER), nbformat.v4.new_code_cell(body)]
    nbformat.write(notebook, repo / "notebooks" / f"{name}.ipynb")


def lambda_task(payload: dict, **fields) -> dict:
    return {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": FUNCTION, "Payload": payload}, "OutputPath": "$.Payload",
            **fields}


def step_payload(notebook: str) -> dict:
    return {"notebook_path": f"notebooks/{notebook}.ipynb", "scenario_path_S3.$": "$.scenario_path_S3",
            "launcher_arg.$": "$.launcher_arg", "metadata.$": "$.metadata"}


def write_definition(repo: Path, states: dict, start: str) -> None:
    (repo / "step-functions.json").write_text(json.dumps({"StartAt": start, "States": states}, indent=1))


def no_aws_environment(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
               AWS_EC2_METADATA_DISABLED="true")
    return env


def invoke(repo: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=repo, capture_output=True,
                          text=True, env=no_aws_environment(tmp_path), timeout=300)


def tree_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(path.relative_to(folder).as_posix().encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def process_state(pid: int) -> str:
    """The state letter in /proc/<pid>/stat ("Z" for a zombie), "" once the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return ""


def run_folder(repo: Path) -> Path:
    runs = list((repo / ".quetzal" / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def git_status(repo: Path) -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True,
                          check=True).stdout


def test_two_step_pipeline_with_authorization(tmp_path):
    repo = bake(tmp_path / "bake", auth_function_name="quetzal-auth")
    (repo / "scenarios" / "base" / "outputs").mkdir()  # left by a notebook run in Jupyter
    (repo / "scenarios" / "base" / "outputs" / "stale.csv").write_text("old\n")
    before = tree_hash(repo / "scenarios" / "base")

    done = invoke(repo, tmp_path, "run", "--local", "base")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "Authorization: skipped locally" in done.stdout
    scenario = run_folder(repo) / "bucket" / "base"
    outputs = {p.name for p in (scenario / "outputs").iterdir()}
    assert "stale.csv" not in outputs
    for step in ("preparation", "assignment"):
        assert {f"{step}_pt.geojson", f"{step}_road.geojson", f"{step}_summary.csv"} <= outputs
        assert "wrote 3 layer(s)" in (scenario / "logs" / f"{step}.txt").read_text()
        assert any(line.split()[:2] == [step, "ok"] for line in done.stdout.splitlines()), done.stdout
    assert json.loads((scenario / "info.json").read_text())["model_tag"] == "local"
    assert f"Outputs: {scenario / 'outputs'}" in done.stdout
    assert tree_hash(repo / "scenarios" / "base") == before
    assert git_status(repo) == ""  # scenarios/*/outputs/ and .quetzal/ are git-ignored


MAP_STEP = """speed = argv["speed"]
(outputs / f"speed_{argv['index']}.csv").write_text(f"speed,time_min\\n{speed},{60 / speed:.3f}\\n")
print("RETURN:", json.dumps({"speed_file": f"outputs/speed_{argv['index']}.csv"}))
"""
MERGE_STEP = """rows = [p.read_text().splitlines()[1] for p in sorted(outputs.glob("speed_*.csv"))]
(outputs / "merged.csv").write_text("speed,time_min\\n" + "\\n".join(rows) + "\\n")
print(f"merged {len(rows)} runs")
"""


def test_map_fans_a_step_out_over_a_parameter_list_then_merges(baked_repo, tmp_path, step_start):
    """A Map over a --params list; the merge step reads the first result (``$[0]``). Warm, every
    step and iteration is forked from the one process that preloaded the notebooks' imports."""
    write_notebook(baked_repo, "speed", MAP_STEP)
    write_notebook(baked_repo, "merge", MERGE_STEP)
    speed_payload = {
        "notebook_path": "notebooks/speed.ipynb", "scenario_path_S3.$": "$.scenario_path_S3",
        "launcher_arg": {"training_folder": "/tmp", "speed.$": "$.speed", "index.$": "$.index",
                         "params.$": "$.launcher_arg.params"},
        "metadata.$": "$.metadata"}
    merge_payload = {"notebook_path": "notebooks/merge.ipynb",
                     "scenario_path_S3.$": "$[0].scenario_path_S3",
                     "launcher_arg.$": "$[0].launcher_arg", "metadata.$": "$[0].metadata"}
    write_definition(baked_repo, {
        "Fan": {"Type": "Map", "ItemsPath": "$.launcher_arg.params.fan.speeds",
                "ItemSelector": {"speed.$": "$$.Map.Item.Value", "index.$": "$$.Map.Item.Index",
                                 "scenario_path_S3.$": "$.scenario_path_S3",
                                 "launcher_arg.$": "$.launcher_arg", "metadata.$": "$.metadata"},
                "ItemProcessor": {"StartAt": "speed",
                                  "States": {"speed": lambda_task(speed_payload, End=True)}},
                "Next": "merge"},
        "merge": lambda_task(merge_payload, End=True),
    }, "Fan")
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"fan": {"speeds": [10, 20, 30]}}))

    done = invoke(baked_repo, tmp_path, "run", "--local", "base", "--params", str(params))

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("[quetzal] warm start:") == (step_start == "warm"), done.stdout
    outputs = run_folder(baked_repo) / "bucket" / "base" / "outputs"
    assert (outputs / "merged.csv").read_text().splitlines() == [
        "speed,time_min", "10,6.000", "20,3.000", "30,2.000"]
    logs = run_folder(baked_repo) / "bucket" / "base" / "logs"
    assert "merged 3 runs" in (logs / "merge.txt").read_text()
    assert "RETURN:" in (logs / "speed.txt").read_text()
    for index in range(3):
        assert any(line.split()[:2] == [f"Fan[{index}]", ">"] and "ok" in line.split()
                   for line in done.stdout.splitlines()), done.stdout


def test_step_over_the_time_limit_fails_with_the_timeout_message(baked_repo, tmp_path):
    """On a busy machine the notebook may be stopped before it prints anything: every assertion
    holds either way (the log's tail ends with the handler's own line)."""
    write_notebook(baked_repo, "slow", 'print("starting", flush=True)\ntime.sleep(60)\n')
    write_definition(baked_repo, {"slow": lambda_task(step_payload("slow"), End=True)}, "slow")
    (baked_repo / ".env.local").write_text("LAMBDA_TIME_LIMIT=3\n")
    before = tree_hash(baked_repo / "scenarios" / "base")

    done = invoke(baked_repo, tmp_path, "run", "--local", "base")

    assert done.returncode == 1, done.stdout + done.stderr
    assert "Failed state: slow" in done.stdout
    assert "Error: NotebookTimeout" in done.stdout
    assert "before the Lambda time limit" in done.stdout and "LAMBDA_TIME_LIMIT" in done.stdout
    assert "  | [quetzal] stopped after " in done.stdout  # the log's tail
    assert any(line.split()[:2] == ["slow", "failed"] for line in done.stdout.splitlines())
    assert tree_hash(baked_repo / "scenarios" / "base") == before


def test_task_timeout_seconds_raises_states_timeout_that_catch_handles(baked_repo, tmp_path):
    write_notebook(baked_repo, "slow", 'time.sleep(60)\n')
    write_definition(baked_repo, {
        "slow": lambda_task(step_payload("slow"), TimeoutSeconds=2, Next="after",
                            Catch=[{"ErrorEquals": ["States.TaskFailed"], "Next": "wrong"},
                                   {"ErrorEquals": ["States.Timeout"], "Next": "after"}]),
        "wrong": {"Type": "Fail", "Error": "TaskFailedMatchedATimeout"},
        "after": {"Type": "Succeed"},
    }, "slow")

    done = invoke(baked_repo, tmp_path, "run", "--local", "base")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "slow: States.Timeout caught, going to after" in done.stdout


def test_step_over_the_memory_size_fails_as_lambda_would(baked_repo, tmp_path):
    write_notebook(baked_repo, "hungry", "block = bytearray(300 * 2**20)\nblock[::4096] = b'x' * 76800\n")
    write_definition(baked_repo, {"hungry": lambda_task(step_payload("hungry"), End=True)}, "hungry")
    (baked_repo / ".env.local").write_text("LAMBDA_MEMORY_SIZE=128\n")

    done = invoke(baked_repo, tmp_path, "run", "--local", "base")

    assert done.returncode == 1, done.stdout + done.stderr
    assert "Error: Runtime.OutOfMemory" in done.stdout
    assert "LAMBDA_MEMORY_SIZE=128 MB" in done.stdout


@pytest.mark.parametrize("state, expected", [
    ({"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage", "End": True},
     "state 'bad': Resource 'arn:aws:states:::sqs:sendMessage' is not supported locally"),
    ({"Type": "Map", "ItemReader": {}, "End": True,
      "ItemProcessor": {"StartAt": "x", "States": {"x": {"Type": "Succeed"}}}},
     "state 'bad': field 'ItemReader' is not supported by the local runner"),
    ({"Type": "Pass", "Parameters": {"x.$": "States.MathRandom(1, 9)"}, "End": True},
     "States.MathRandom is not an intrinsic function this runner supports"),
])
def test_unsupported_definition_fails_before_anything_runs(baked_repo, tmp_path, state, expected):
    states = {"ok": lambda_task(step_payload("preparation"), Next="bad"), "bad": state}
    write_definition(baked_repo, states, "ok")

    done = invoke(baked_repo, tmp_path, "run", "--local", "base")

    assert done.returncode == 1
    assert expected in done.stderr, done.stderr
    assert not (baked_repo / ".quetzal").exists()


def test_missing_notebook_is_refused_before_anything_runs(baked_repo, tmp_path):
    write_definition(baked_repo, {"first": lambda_task(step_payload("preparation"), Next="typo"),
                                  "typo": lambda_task(step_payload("preparaton"), End=True)}, "first")
    done = invoke(baked_repo, tmp_path, "run", "--local", "base")
    assert done.returncode == 1
    assert "runs notebooks/preparaton.ipynb, not found" in done.stderr, done.stderr
    assert not (baked_repo / ".quetzal").exists()


def counting(name: str):
    """A dict method that records the call (a pass over the object) before answering."""
    def method(self, *args):
        self.walks.append(self.where)
        return getattr(dict, name)(self, *args)
    return method


class CountedStates(dict):
    """A ``States`` object that records each pass through it (every walk, copy or serialization
    iterates it) under its path; its deep copy records the copy and counts on."""

    def __init__(self, states, walks, where):
        super().__init__(states)
        self.walks, self.where = walks, where

    __iter__, items, keys, values = (counting(name) for name in ("__iter__", "items", "keys", "values"))

    def __deepcopy__(self, memo):
        return CountedStates({name: copy.deepcopy(state, memo) for name, state in self.items()},
                             self.walks, self.where)


def counted(machine, walks, where="States"):
    """``machine`` with each of its ``States`` objects, nested ones included, counting its passes."""
    states = {name: dict(state) for name, state in machine["States"].items()}
    for name, state in states.items():
        if "Branches" in state:
            state["Branches"] = [counted(branch, walks, f"{where}.{name}.Branches[{index}].States")
                                 for index, branch in enumerate(state["Branches"])]
        for key in ("Iterator", "ItemProcessor"):
            if key in state:
                state[key] = counted(state[key], walks, f"{where}.{name}.{key}.States")
    return dict(machine, States=CountedStates(states, walks, where))


class ChecksDone(Exception):
    """Raised where a local run reads the scenario's params, right after its pre-run checks."""


def test_a_local_run_passes_over_each_states_object_four_times_before_its_first_step(baked_repo, monkeypatch):
    """From ``local_definition`` to the end of the interpreter's checks, each States object (the
    top one, a Map processor's, a Parallel branch's) is copied once by ``ported``, walked once in
    the copy (porting, finding and rendering the Fargate steps), serialized once to fill the
    placeholders, and the filled definition, a new one, walked once by the interpreter for every
    check. The definition is wrapped where it is loaded and where it is filled (parsed from text)
    so that its States objects count each pass; the run stops where it would read the scenario.
    A backend ECS step (ported, then a rendered Fargate step), a Map with ItemProcessor and a
    Parallel, so that every pass has work."""
    from quetzal_deploy.local import runner
    from quetzal_deploy.pipeline import definition
    from quetzal_deploy.settings import load_settings

    settings = load_settings(baked_repo)
    walks, lines, render = [], [], definition.render

    def loaded(path):
        machine = definition.load_definition(path)
        notebook = definition.notebook_paths(machine)[0]
        environment = [{"Name": "NOTEBOOK_PATH", "Value": notebook},
                       {"Name": "SCENARIO_PATH_S3", "Value.$": "$.scenario_path_S3"}]
        machine["States"]["Far"] = {"Type": "Task", "Resource": "arn:aws:states:::ecs:runTask.sync",
                                    "Parameters": {"Overrides": {"ContainerOverrides": [
                                        {"Environment": environment}]}}, "End": True}
        inner = {"StartAt": "inner", "States": {"inner": {"Type": "Pass", "End": True}}}
        machine["States"]["Fan"] = {"Type": "Map", "ItemsPath": "$.items", "End": True,
                                    "ItemProcessor": inner}
        machine["States"]["Both"] = {"Type": "Parallel", "End": True, "Branches": [
            {"StartAt": "left", "States": {"left": {"Type": "Pass", "End": True}}}]}
        return counted(machine, walks)

    def stop(*args):
        raise ChecksDone()

    monkeypatch.setattr(runner, "load_definition", loaded)
    monkeypatch.setattr(definition, "render", lambda machine, values: counted(render(machine, values), walks))
    monkeypatch.setattr(runner, "scenario_params", stop)

    with pytest.raises(ChecksDone):
        runner.run_local(settings, "base", out=lines.append)

    assert Counter(walks) == {"States": 4, "States.Fan.ItemProcessor.States": 4,
                              "States.Both.Branches[0].States": 4}, walks
    assert [line for line in lines if line.startswith("Note:")] == [
        "Note: step-functions.json: the backend's ECS runTask.sync notebook steps became Fargate steps "
        "(arn:aws:states:::ecs:runTask.waitForTaskToken with a Payload) in Far; run `invoke update-steps "
        "--fix` to write this into the file."]
    assert any("Map state 'Fan' uses ItemProcessor" in line for line in lines), lines


@pytest.mark.parametrize(("scenario", "message"), [
    ("..", "'..' is not a scenario name: a scenario name cannot be empty, '.' or '..'"),
    ("base/../..", "cannot contain '/'"),
    ("missing", "Scenario 'missing' not found in"),
])
def test_unknown_or_escaping_scenario_is_refused(baked_repo, tmp_path, scenario, message):
    done = invoke(baked_repo, tmp_path, "run", "--local", scenario)
    assert done.returncode == 1
    assert message in done.stderr and "Traceback" not in done.stderr
    assert scenario != "missing" or "available: base" in done.stderr
    assert not (baked_repo / ".quetzal").exists()


def test_a_link_leading_outside_the_scenario_is_refused_before_anything_runs(baked_repo, tmp_path):
    """The local copy of the scenario follows links as upload-scenarios does: only inside it."""
    secret = tmp_path / "credentials"
    secret.write_text("[default]\naws_secret_access_key = x\n")
    inputs = baked_repo / "scenarios" / "base" / "inputs"
    (inputs / "params-copy.json").symlink_to(inputs / "params.json")  # inside: followed
    (inputs / "leak.txt").symlink_to(secret)
    done = invoke(baked_repo, tmp_path, "run", "--local", "base")
    assert done.returncode == 1
    assert "leak.txt" in done.stderr and "outside" in done.stderr and "Traceback" not in done.stderr
    assert not list((baked_repo / ".quetzal").rglob("leak.txt"))

    (inputs / "leak.txt").unlink()
    done = invoke(baked_repo, tmp_path, "run", "--local", "base")
    assert done.returncode == 0, done.stdout + done.stderr
    copied = run_folder(baked_repo) / "bucket" / "base" / "inputs" / "params-copy.json"
    assert copied.read_text() == (inputs / "params.json").read_text() and not copied.is_symlink()


def test_choice_picks_a_variant_and_an_unknown_one_is_refused(baked_repo, tmp_path):
    write_definition(baked_repo, {
        "Variant": {"Type": "Choice", "Choices": [{"Variable": "$.choice", "StringEquals": "pt",
                                                   "Next": "assignment"}], "Default": "preparation"},
        "preparation": lambda_task(step_payload("preparation"), End=True),
        "assignment": lambda_task(step_payload("assignment"), End=True),
    }, "Variant")

    refused = invoke(baked_repo, tmp_path, "run", "--local", "base", "--choice", "road")
    assert refused.returncode == 1
    assert "--choice 'road' is not a pipeline variant" in refused.stderr and "pt" in refused.stderr
    assert not (baked_repo / ".quetzal").exists()

    done = invoke(baked_repo, tmp_path, "run", "--local", "base", "--choice", "pt")
    assert done.returncode == 0, done.stdout + done.stderr
    outputs = {p.name for p in (run_folder(baked_repo) / "bucket" / "base" / "outputs").iterdir()}
    assert "assignment_summary.csv" in outputs and "preparation_summary.csv" not in outputs


def test_summary_warns_when_a_state_nears_the_256_kb_limit():
    records = [StepRecord("small", status="ok", seconds=1.0, state_kb=3.0),
               StepRecord("Fan[1] > big", status="ok", seconds=2.0, peak_memory_mb=512, state_kb=230.0)]
    lines = summary(records, memory_mb=1024, storage_mb=512, timeout_s=60)
    assert lines[0].split()[:3] == ["step", "status", "time"]
    assert any(line.startswith("Fan[1] > big") and "512 MB" in line for line in lines)
    warnings = [line for line in lines if line.startswith("WARNING")]
    assert len(warnings) == 1 and "Fan[1] > big passes on 230 KB" in warnings[0]


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_ctrl_c_stops_the_run_and_its_notebook(baked_repo, tmp_path, signal_name):
    """Ctrl-C (SIGINT to the invoke process) or SIGTERM leaves no notebook running behind it, and
    stops cleanly: no thread's traceback."""
    import signal
    import time

    pid_file = tmp_path / "notebook.pid"
    write_notebook(baked_repo, "slow", f'Path({str(pid_file)!r}).write_text(str(os.getpid()))\n'
                                       'time.sleep(120)\n')
    write_definition(baked_repo, {"slow": lambda_task(step_payload("slow"), End=True)}, "slow")
    process = subprocess.Popen([sys.executable, "-m", "invoke", "run", "--local", "base"], cwd=baked_repo,
                               env=no_aws_environment(tmp_path), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180  # an event, bounded generously for a loaded machine
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline and process.poll() is None, process.stdout.read()
            time.sleep(0.2)
        notebook_pid = int(pid_file.read_text())

        process.send_signal(getattr(signal, signal_name))
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()  # nothing left behind if an assertion failed

    assert process.returncode != 0, output
    assert "Traceback" not in output and "Exception in thread" not in output, output
    deadline = time.monotonic() + 60  # killed before invoke exits; reaped by init soon after
    while process_state(notebook_pid) not in {"", "Z"}:
        assert time.monotonic() < deadline, f"notebook {notebook_pid} still running after Ctrl-C"
        time.sleep(0.1)
