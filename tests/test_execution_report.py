"""``invoke executions --report <execution>``: the run report of an execution on AWS, against
moto server, opened in headless Chromium with no network.

Real: the execution, run by moto's Step Functions engine (switched on through ``/moto-api/config``):
a Pass step, a Map whose iterations are Pass states, and a Task invoking the model's image Lambda,
which moto cannot invoke, so the execution fails there for real; its history is moto's.
Seeded by the test, as the handler would have written them on AWS (moto cannot run the image):
the scenario's output layer and OD matrix, and the failing notebook's log in the bucket.
"""

import json
import re

import test_executions
from test_executions import MODEL, create_machine, notebook_task, run

from fixtures.browser import render
from fixtures.tasks import run_task

model, executing = test_executions.model, test_executions.executing  # the fixtures, shared

CRS84 = {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}}
LAYER = {"type": "FeatureCollection", "crs": CRS84, "features": [{"type": "Feature", "properties": {},
         "geometry": {"type": "LineString", "coordinates": [[-73.58, 45.50], [-73.56, 45.51]]}}]}
MATRIX = {"a": {"a": 0, "b": 3}, "b": {"a": 4, "b": 0}}
LOG = ("loading the network\nTraceback (most recent call last):\n  File \"assignment.py\", line 3\n"
       "KeyError: 'zone'\n")


def test_report_of_a_failed_execution_shows_its_steps_map_iterations_outputs_and_error(model, boto,
                                                                                         executing):
    account = boto.client("sts").get_caller_identity()["Account"]
    create_machine(boto, {
        "preparation": {"Type": "Pass", "Result": {"zones": [1, 2, 3]}, "ResultPath": "$.fan", "Next": "fan"},
        "fan": {"Type": "Map", "ItemsPath": "$.fan.zones", "ResultPath": None, "Next": "assignment",
                "Iterator": {"StartAt": "speed", "States": {"speed": {"Type": "Pass", "End": True}}}},
        "assignment": notebook_task("assignment", account, End=True),
    })
    code, output = run(model)
    assert code == 1, output
    # What the failed run's steps wrote (`invoke run` clears outputs/ and logs/ before it starts).
    s3 = boto.client("s3")
    s3.put_object(Bucket=MODEL, Key="base/outputs/links.geojson", Body=json.dumps(LAYER).encode())
    s3.put_object(Bucket=MODEL, Key="base/outputs/links.json", Body=json.dumps(MATRIX).encode())
    s3.put_object(Bucket=MODEL, Key="base/logs/assignment.txt", Body=LOG.encode())
    sfn = boto.client("stepfunctions")
    [execution] = sfn.list_executions(stateMachineArn=sfn.list_state_machines()["stateMachines"][0]
                                      ["stateMachineArn"])["executions"]

    done = run_task(model, "executions", "--report", execution["name"])

    assert done.returncode == 0, done.stdout + done.stderr
    [line] = [line for line in done.stdout.splitlines() if line.startswith("Report:")]
    page = model / ".quetzal" / "executions" / execution["name"] / "report.html"
    assert line.split(":", 1)[1].strip() == str(page)
    shown = render(page, "report-aws-execution", model.parent)
    assert shown.network_requests == []
    assert 'id="status">FAILED' in shown.dom
    assert 'data-step="preparation" data-status="ok"' in shown.dom
    steps = re.findall(r'data-step="([^"]*)" data-status="([^"]*)"', shown.dom)
    for index in range(3):
        assert (f"fan[{index}] &gt; speed", "ok") in steps, steps
    assert 'data-step="assignment" data-status="failed"' in shown.dom
    failed = sfn.describe_execution(executionArn=execution["executionArn"])
    assert failed["error"] in shown.dom.split('id="run-error"', 1)[1].split("</div>", 1)[0]
    log = shown.dom.split('data-log="logs/assignment.txt"', 1)[1].split("</details>", 1)[0]
    assert " open" in log.split(">", 1)[0] and 'class="err"' in log and "KeyError" in log
    assert 'data-unformatted="links.geojson"' in shown.dom and 'data-matrix="links.json"' in shown.dom


def test_open_shows_the_execution_report_in_the_users_browser(model, boto, executing, tmp_path):
    """``--open`` hands the report's file:// URL to the browser ``BROWSER`` names (a recorder here);
    ``--tiles`` names the tile host in the page."""
    import sys

    create_machine(boto, {"preparation": {"Type": "Pass", "End": True}})
    code, output = run(model)
    assert code == 0, output
    sfn = boto.client("stepfunctions")
    [execution] = sfn.list_executions(stateMachineArn=sfn.list_state_machines()["stateMachines"][0]
                                      ["stateMachineArn"])["executions"]
    opened, recorder = tmp_path / "opened.txt", tmp_path / "browser.py"
    recorder.write_text(f"import sys\nopen({str(opened)!r}, 'w').write(sys.argv[1])\n")

    done = run_task(model, "executions", "--report", execution["name"], "--open", "--tiles",
                    "https://tiles.example.org/{z}/{x}/{y}.png",
                    env={"BROWSER": f"{sys.executable} {recorder} %s"})

    assert done.returncode == 0, done.stdout + done.stderr
    page = model / ".quetzal" / "executions" / execution["name"] / "report.html"
    assert opened.read_text() == page.as_uri()
    assert 'id="tile-host">tiles.example.org</b>' in page.read_text()


def test_open_and_tiles_need_report(model):
    done = run_task(model, "executions", "--open")
    assert done.returncode == 2 and "ERROR: --open and --tiles go with --report <execution>." in done.stderr


def test_report_of_an_unknown_execution_names_the_command_that_lists_them(model, boto):
    create_machine(boto, {"preparation": {"Type": "Pass", "End": True}})

    done = run_task(model, "executions", "--report", "no-such-run")

    assert done.returncode == 1
    assert "No execution 'no-such-run' of quetzal-test: list them with `invoke executions`" \
        in done.stderr
    assert not (model / ".quetzal" / "executions").exists()


def test_history_steps_follow_iterations_retries_and_request_ids():
    """A history in the shapes seen: moto links an iteration's start to a sibling iteration's last
    event; a retried Task is scheduled twice in one state; a lambda:invoke output names its request."""
    from datetime import UTC, datetime

    from quetzal_deploy.report.execution import history_steps

    def event(id_, previous, kind, **details):
        key = {"MapIterationStarted": "mapIterationStartedEventDetails", "TaskScheduled":
               "taskScheduledEventDetails", "TaskFailed": "taskFailedEventDetails",
               "TaskSucceeded": "taskSucceededEventDetails"}.get(kind, "stateEnteredEventDetails"
                                                                  if kind.endswith("Entered") else
                                                                  "stateExitedEventDetails")
        return {"id": id_, "previousEventId": previous, "type": kind,
                "timestamp": datetime.fromtimestamp(1_700_000_000 + id_, UTC), key: details}

    scheduled = json.dumps({"Payload": {"notebook_path": "notebooks/model.ipynb"}})
    events = [
        event(1, 0, "MapStateEntered", name="fan"),
        event(2, 1, "MapIterationStarted", name="fan", index=0),
        event(3, 2, "PassStateEntered", name="speed"),
        event(4, 3, "PassStateExited", name="speed", output="{}"),
        event(5, 4, "MapIterationStarted", name="fan", index=1),  # linked to iteration 0's last event
        event(6, 5, "PassStateEntered", name="speed"),
        event(7, 6, "PassStateExited", name="speed", output="{}"),
        event(8, 7, "MapIterationSucceeded", name="fan", index=1),
        event(9, 8, "MapStateExited", name="fan", output="{}"),
        event(10, 9, "TaskStateEntered", name="model"),
        event(11, 10, "TaskScheduled", resourceType="lambda", parameters=scheduled),
        event(12, 11, "TaskFailed", error="Lambda.TooManyRequestsException", cause="slow down"),
        event(13, 12, "TaskScheduled", resourceType="lambda", parameters=scheduled),
        event(14, 13, "TaskSucceeded", output=json.dumps({"SdkResponseMetadata": {"RequestId": "r-2"}})),
        event(15, 14, "TaskStateExited", name="model", output="x" * 2048),
    ]

    steps = history_steps(events, None, None)

    assert [(s.label, s.status, s.attempt) for s in steps] == [
        ("fan[0] > speed", "ok", 1), ("fan[1] > speed", "ok", 1), ("model", "failed", 1), ("model", "ok", 2)]
    first, second = steps[2:]
    assert first.error == "Lambda.TooManyRequestsException: slow down" and first.seconds == 1
    assert second.notebook == "notebooks/model.ipynb" and second.request_id == "r-2"
    assert second.state_kb == 2.0


def test_peak_memory_comes_from_the_lambdas_report_lines(model, boto):
    """The REPORT lines Lambda writes after each request, put in moto's CloudWatch Logs by the test
    (moto cannot run the image that would write them)."""
    import time

    from quetzal_deploy.aws import Aws
    from quetzal_deploy.report.execution import peak_memories
    from quetzal_deploy.settings import load_settings

    logs, group = boto.client("logs"), f"/aws/lambda/{MODEL}"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    now = int(time.time() * 1000)
    logs.put_log_events(logGroupName=group, logStreamName="s", logEvents=[
        {"timestamp": now, "message": "START RequestId: r-1 Version: $LATEST"},
        {"timestamp": now + 1, "message": "REPORT RequestId: r-1\tDuration: 812.20 ms\tBilled Duration: "
                                          "813 ms\tMemory Size: 2048 MB\tMax Memory Used: 1337 MB"},
    ])
    settings = load_settings(model)

    assert peak_memories(settings, Aws(settings), now / 1000 - 60) == {"r-1": 1337.0}
