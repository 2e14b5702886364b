"""Remote runs (`run_remote`) and `invoke executions` against moto server's Step Functions engine.

What is emulated: moto executes state machines (its ASL interpreter, switched on through
``/moto-api/config``) but cannot invoke image Lambdas. So the pipelines here are made of Pass and
Fail states named like the model's steps, and a Task whose Lambda invocation fails for real in
moto; the notebook logs a failure report reads are uploaded by the test, as the handler would.
"""

import json
import subprocess
import urllib.request

import pytest

from fixtures.tasks import run_task
from quetzal_deploy.aws import Aws
from quetzal_deploy.contract.params import ParamsError
from quetzal_deploy.errors import QuetzalError
from quetzal_deploy.pipeline.executions import run_remote
from quetzal_deploy.settings import load_settings

MODEL = "quetzal-test"
EMAIL = "modeller@example.com"
PARAMS = [
    {"info": "base parameters"},
    {"category": "general", "params": [
        {"name": "speed", "text": "speed", "value": 20, "type": "Number"},
        {"name": "label", "text": "label", "value": "base", "type": "String"},
    ]},
    {"category": "other", "model": "fast", "params": [{"name": "x", "value": 1, "type": "Number"}]},
    {"variants": ["2030", "2040"], "choices": ["2030", "2040"], "model": ["fast"]},
]


def set_execution(endpoint: str, enabled: bool) -> None:
    body = json.dumps({"stepfunctions": {"execute_state_machine": enabled}}).encode()
    request = urllib.request.Request(f"{endpoint}/moto-api/config", data=body, method="POST")
    urllib.request.urlopen(request, timeout=30).close()


@pytest.fixture
def executing(aws):
    """moto runs the executions it starts (off again afterwards, for the other tests)."""
    set_execution(aws, True)
    yield
    set_execution(aws, False)


@pytest.fixture
def model(baked_repo, boto):
    """The model's bucket with the base scenario, and a git identity for the run's metadata."""
    subprocess.run(["git", "config", "user.email", EMAIL], cwd=baked_repo, check=True)
    s3 = boto.client("s3")
    s3.create_bucket(Bucket=MODEL, CreateBucketConfiguration={"LocationConstraint": "ca-central-1"})
    s3.put_object(Bucket=MODEL, Key="base/inputs/params.json", Body=json.dumps(PARAMS).encode())
    return baked_repo


def create_machine(boto, states, start="preparation"):
    role = boto.client("iam").create_role(RoleName=f"{MODEL}-sfn", AssumeRolePolicyDocument="{}")
    created = boto.client("stepfunctions").create_state_machine(
        name=MODEL, roleArn=role["Role"]["Arn"], definition=json.dumps({"StartAt": start, "States": states})
    )
    return created["stateMachineArn"]


def notebook_task(step, account, **end):
    """A Task as step-functions.json has it: moto cannot invoke the image Lambda, so it fails."""
    return {
        "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "OutputPath": "$.Payload",
        "Parameters": {
            "FunctionName": f"arn:aws:lambda:ca-central-1:{account}:function:{MODEL}",
            "Payload": {"notebook_path": f"notebooks/{step}.ipynb",
                        "scenario_path_S3.$": "$.scenario_path_S3"},
        },
        **end,
    }


def run(repo, scenario="base", **kwargs):
    settings = load_settings(repo)
    lines = []
    code = run_remote(settings, Aws(settings), scenario, out=lines.append, **kwargs)
    return code, "\n".join(lines)


def test_successful_run_sends_the_front_end_input_and_follows_each_state(model, boto, executing, tmp_path):
    arn = create_machine(boto, {"preparation": {"Type": "Pass", "Next": "assignment"},
                                "assignment": {"Type": "Pass", "End": True}})
    overrides = tmp_path / "params.json"
    overrides.write_text(json.dumps({"general": {"speed": 35}, "extra": {"flag": True}}))

    code, output = run(model, params=str(overrides))

    assert code == 0, output
    for step in ("preparation", "assignment"):
        assert f"→ {step}" in output and f"✓ {step}" in output
    assert "Execution SUCCEEDED" in output
    sfn = boto.client("stepfunctions")
    [execution] = sfn.list_executions(stateMachineArn=arn)["executions"]
    sent = json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])
    assert sent == {
        "authorization": "",
        "scenario_path_S3": "base/",
        "choice": "default",
        "variants": [],
        "launcher_arg": {"training_folder": "/tmp",
                         "params": {"general": {"speed": 35, "label": "base"}, "extra": {"flag": True}}},
        "metadata": {"user_email": EMAIL},
    }


def test_failed_task_shows_state_error_and_the_notebook_log_tail(model, boto, executing):
    account = boto.client("sts").get_caller_identity()["Account"]
    arn = create_machine(boto, {"preparation": {"Type": "Pass", "Next": "assignment"},
                                "assignment": notebook_task("assignment", account, End=True)})
    log = "\n".join(f"log line {i:02d}" for i in range(30))
    boto.client("s3").put_object(Bucket=MODEL, Key="base/logs/assignment.txt", Body=log.encode())

    code, output = run(model, keep_outputs=True)  # the log the handler would write: kept, not cleared

    assert code == 1
    sfn = boto.client("stepfunctions")
    [execution] = sfn.list_executions(stateMachineArn=arn)["executions"]
    failed = sfn.describe_execution(executionArn=execution["executionArn"])
    assert failed["status"] == "FAILED"
    assert "✓ preparation" in output and "✓ assignment" not in output
    assert f"✗ assignment ({failed['error']})" in output
    assert "Failed state: assignment" in output
    assert f"Error: {failed['error']}" in output
    assert f"Last 20 lines of s3://{MODEL}/base/logs/assignment.txt:" in output
    assert "log line 10" in output and "log line 29" in output and "log line 09" not in output


def test_fail_state_cause_is_shown_as_the_handler_message(model, boto, executing):
    cause = json.dumps({"errorType": "NotebookFailed", "errorMessage": "assignment.ipynb: ZeroDivisionError"})
    create_machine(boto, {"preparation": {"Type": "Pass", "Next": "assignment"},
                          "assignment": {"Type": "Fail", "Error": "NotebookFailed", "Cause": cause}})

    code, output = run(model)

    assert code == 1
    assert "Error: NotebookFailed" in output
    assert "Cause: NotebookFailed: assignment.ipynb: ZeroDivisionError" in output


def test_invoke_run_takes_the_chosen_variant(model, boto, executing):
    """`invoke run` (the run task's remote path) as a user types it, on a Choice pipeline."""
    arn = create_machine(boto, {
        "choose": {"Type": "Choice", "Default": "preparation",
                   "Choices": [{"Variable": "$.choice", "StringEquals": "fast", "Next": "shortcut"}]},
        "preparation": {"Type": "Pass", "End": True},
        "shortcut": {"Type": "Pass", "End": True},
    }, start="choose")

    done = run_task(model, "run", "base", "--choice", "fast", env={"QUETZAL_AUTHORIZATION": "token-123"})

    assert done.returncode == 0, done.stdout + done.stderr
    assert "✓ shortcut" in done.stdout and "preparation" not in done.stdout
    sfn = boto.client("stepfunctions")
    [execution] = sfn.list_executions(stateMachineArn=arn)["executions"]
    sent = json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])
    assert sent["choice"] == "fast" and sent["variants"] == ["2030", "2040"]
    assert sent["authorization"] == "token-123"
    assert sent["launcher_arg"]["params"] == {"other": {"x": 1}}


def test_invoke_run_failure_exits_non_zero_with_the_report(model, boto, executing):
    create_machine(boto, {"preparation": {"Type": "Fail", "Error": "NotebookFailed", "Cause": "boom"}})

    done = run_task(model, "run", "base")

    assert done.returncode == 1
    assert "Failed state: preparation" in done.stdout and "Cause: boom" in done.stdout
    assert "Traceback" not in done.stderr


def test_missing_scenario_starts_nothing(model, boto):
    arn = create_machine(boto, {"preparation": {"Type": "Pass", "End": True}})
    with pytest.raises(QuetzalError, match=r"invoke upload-scenarios nowhere"):
        run(model, scenario="nowhere")
    assert boto.client("stepfunctions").list_executions(stateMachineArn=arn)["executions"] == []


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not valid JSON (line 1, column 2"),
    ("[1]", 'must be a JSON object: {"category": {"name": value}} or flat {"name": value}'),
])
def test_bad_params_file_starts_nothing(model, boto, tmp_path, content, message):
    arn = create_machine(boto, {"preparation": {"Type": "Pass", "End": True}})
    params = tmp_path / "params.json"
    params.write_text(content)
    with pytest.raises(ParamsError) as raised:  # the boundary shows it as an ERROR line
        run(model, params=params)
    assert message in str(raised.value)
    assert boto.client("stepfunctions").list_executions(stateMachineArn=arn)["executions"] == []


def test_executions_lists_the_last_runs_newest_first(model, boto):
    """Executions stay RUNNING here: moto's engine is off (it fails on overlapping executions)."""
    arn = create_machine(boto, {"preparation": {"Type": "Pass", "End": True}})
    for other in ("other", "third"):
        boto.client("s3").put_object(Bucket=MODEL, Key=f"{other}/inputs/params.json", Body=b"[]")
    for scenario in ("base", "other", "third"):
        assert run(model, scenario=scenario, wait=False)[0] == 0
    started = boto.client("stepfunctions").list_executions(stateMachineArn=arn)["executions"]
    newest = sorted(started, key=lambda e: e["startDate"], reverse=True)

    done = run_task(model, "executions", "--last", "2")

    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.strip().splitlines()
    assert header.split() == ["STARTED", "(UTC)", "STATUS", "DURATION", "NAME"]
    assert [row.split()[-1] for row in rows] == [e["name"] for e in newest[:2]]
    assert [row.split()[2] for row in rows] == ["RUNNING", "RUNNING"]


def test_executions_without_state_machine_says_to_run_infra(model):
    done = run_task(model, "executions")
    assert done.returncode == 1
    assert "run `invoke infra` first" in done.stderr and "Traceback" not in done.stderr


def test_remote_run_warns_per_output_layer_the_front_end_would_refuse(model, boto, executing):
    """After a run on AWS the outputs in the bucket are checked, a big layer by its first and
    last bytes only; a same-name .json (an OD matrix) is not a layer."""
    scenario, s3 = "scénario d'été", boto.client("s3")
    crs = {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}}
    point = {"type": "Feature", "properties": {"index": 1, "note": "x" * 60},
             "geometry": {"type": "Point", "coordinates": [0, 0]}}
    layers = {"ok.geojson": {"type": "FeatureCollection", "crs": crs, "features": [point]},
              "big.geojson": {"type": "FeatureCollection", "features": [point] * 3000},
              "big.json": {"1": {"2": 3}}}
    s3.put_object(Bucket=MODEL, Key=f"{scenario}/inputs/params.json", Body=json.dumps(PARAMS).encode())
    for name, body in layers.items():
        s3.put_object(Bucket=MODEL, Key=f"{scenario}/outputs/{name}", Body=json.dumps(body).encode())
    create_machine(boto, {"preparation": {"Type": "Pass", "End": True}})

    done = run_task(model, "run", scenario, "--keep-outputs")  # the outputs a step would write

    assert done.returncode == 0, done.stdout + done.stderr
    warnings = [line for line in done.stdout.splitlines() if line.startswith("WARNING")]
    assert warnings == [f"WARNING: s3://{MODEL}/{scenario}/outputs/big.geojson: it has no crs member; the "
                        f"front end refuses the layer. Write it in WGS 84 with \"crs\": {json.dumps(crs)} "
                        "(or EPSG:4326)."]
