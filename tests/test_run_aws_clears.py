"""`invoke run` on AWS as the front end's Run button: it refuses while an execution of the scenario
runs, and clears the last run's `outputs/` and `logs/` under the scenario's lease before it starts.

Against moto server's S3 and Step Functions over HTTP. moto cannot invoke image Lambdas, so a run's
results are written by the test, as the handler would; with moto's engine off, an execution
started by the test (as another modeller's front end would start it) stays RUNNING. Where a run
must be caught half way, a botocore ``before-send`` hook holds its request until the test lets it
go: the test waits on that event, never on a clock.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC

import boto3
import pytest
import test_executions
from test_executions import EMAIL, MODEL, create_machine, run

from fixtures.aws import REGION
from fixtures.tasks import run_task
from quetzal_deploy.aws import Aws
from quetzal_deploy.contract.execution import execution_input
from quetzal_deploy.pipeline.executions import run_remote
from quetzal_deploy.settings import load_settings
from quetzal_deploy.sync import s3sync
from quetzal_deploy.sync.lease import LEASES, Lease
from quetzal_deploy.sync.s3sync import SyncError

# the fixtures of test_executions, used here too
executing, model = test_executions.executing, test_executions.model

HELD_S = 120  # how long a held request waits for the test before it goes on anyway
LAST_RUN = {  # what a run left: outputs (a folder marker, a stale layer a step no longer writes), logs
    "outputs/": b"",
    "outputs/links.geojson": b"{}",
    "outputs/stale.geojson": b"{}",
    "logs/preparation.txt": b"first run",
    "logs/preparation-2.txt": b"second run",
}


def keys(s3, prefix: str = "base/") -> set[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=MODEL, Prefix=prefix)
    return {item["Key"][len(prefix):] for page in pages for item in page.get("Contents", [])}


def leave_last_run(s3, scenario: str = "base") -> None:
    for rel, body in LAST_RUN.items():
        s3.put_object(Bucket=MODEL, Key=f"{scenario}/{rel}", Body=body)


def executions(boto, arn: str) -> list[dict]:
    """The machine's executions, newest first, every page."""
    pages = boto.client("stepfunctions").get_paginator("list_executions").paginate(stateMachineArn=arn)
    return [e for page in pages for e in page["executions"]]


def start_as_front_end(boto, arn: str, scenario: str, email: str, name: str) -> str:
    """An execution as another modeller's front end starts it (moto's engine off: it stays RUNNING)."""
    payload = execution_input(scenario, {}, "default", [], email, "token")
    return boto.client("stepfunctions").start_execution(stateMachineArn=arn, name=name,
                                                         input=json.dumps(payload))["executionArn"]


def test_second_run_clears_the_first_runs_outputs_and_logs(model, boto):
    """On the module's versioned bucket: the previous results get delete markers, their versions
    stay. moto's engine is off (it fails on a machine's second execution): the first run is
    stopped, as a user would stop it, and its results are written as its steps would."""
    s3 = boto.client("s3")
    s3.put_bucket_versioning(Bucket=MODEL, VersioningConfiguration={"Status": "Enabled"})
    arn = create_machine(boto, {"preparation": {"Type": "Pass", "End": True}})
    assert run(model, wait=False)[0] == 0
    [first] = executions(boto, arn)
    boto.client("stepfunctions").stop_execution(executionArn=first["executionArn"])
    leave_last_run(s3)

    done = run_task(model, "run", "base", "--no-wait")

    assert done.returncode == 0, done.stdout + done.stderr
    assert (f"Cleared the last run's results, as the front end does: s3://{MODEL}/base/ "
            "outputs/ (3 object(s)) and logs/ (2 object(s)).") in done.stdout
    assert keys(s3) == {"inputs/params.json"}, "stale.geojson, the logs and the folder marker are gone"
    versions = s3.list_object_versions(Bucket=MODEL, Prefix="base/")
    assert {v["Key"] for v in versions["DeleteMarkers"]} == {f"base/{rel}" for rel in LAST_RUN}
    assert {v["Key"] for v in versions["Versions"]} >= {f"base/{rel}" for rel in LAST_RUN}
    assert [e["status"] for e in executions(boto, arn)] == ["RUNNING", "ABORTED"]
    assert s3.get_object(Bucket=MODEL, Key=f"{LEASES}base.json")["Body"].read().count(b'"released"') == 1


def test_keep_outputs_keeps_the_last_runs_results(model, boto, executing):
    s3 = boto.client("s3")
    arn = create_machine(boto, {"preparation": {"Type": "Pass", "End": True}})
    leave_last_run(s3)

    done = run_task(model, "run", "base", "--keep-outputs")

    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Kept s3://{MODEL}/base/outputs/ and logs/ (--keep-outputs)." in done.stdout
    assert keys(s3) == {"inputs/params.json", *LAST_RUN}
    assert [e["status"] for e in executions(boto, arn)] == ["SUCCEEDED"]


def test_running_execution_of_the_scenario_refuses_naming_who_when_and_how_to_stop(model, boto):
    """The front end's execution of ``base`` started first, then 100 of another scenario: it is on
    the second page of ListExecutions, which the check reads too."""
    s3 = boto.client("s3")
    arn = create_machine(boto, {"preparation": {"Type": "Pass", "End": True}})
    theirs = start_as_front_end(boto, arn, "base", "colleague@example.com", "front-end-base")
    for i in range(100):
        start_as_front_end(boto, arn, "other", EMAIL, f"other-{i:03}")
    first_page = boto.client("stepfunctions").list_executions(stateMachineArn=arn, statusFilter="RUNNING")
    assert theirs not in [e["executionArn"] for e in first_page["executions"]] and "nextToken" in first_page
    leave_last_run(s3)

    done = run_task(model, "run", "base")

    assert done.returncode == 1
    started = boto.client("stepfunctions").describe_execution(executionArn=theirs)["startDate"]
    assert done.stderr.strip() == (
        f"ERROR: scenario 'base' is already running on AWS: execution front-end-base, started "
        f"{started.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC by colleague@example.com. "
        "Nothing was cleared and no run was started. Follow it with `invoke executions`; or stop it "
        f"(`aws stepfunctions stop-execution --execution-arn {theirs} --region {REGION}`, or Stop "
        "execution in the Step Functions console) and re-run.")
    assert keys(s3) == {"inputs/params.json", *LAST_RUN}
    assert len(executions(boto, arn)) == 101


def test_running_execution_of_another_scenario_does_not_refuse(model, boto):
    s3 = boto.client("s3")
    arn = create_machine(boto, {"preparation": {"Type": "Pass", "End": True}})
    start_as_front_end(boto, arn, "other", "colleague@example.com", "front-end-other")
    leave_last_run(s3)

    code, output = run(model, wait=False)

    assert code == 0, output
    assert keys(s3) == {"inputs/params.json"}
    assert sorted(e["name"].startswith("base-") for e in executions(boto, arn)) == [False, True]


def test_upload_holding_the_lease_refuses_before_anything_is_deleted(model, boto):
    s3 = boto.client("s3")
    arn = create_machine(boto, {"preparation": {"Type": "Pass", "End": True}})
    leave_last_run(s3)

    with Lease(s3, MODEL, "base", "uploader@example.com"):
        done = run_task(model, "run", "base")

    assert done.returncode == 1
    assert "is being uploaded by uploader@example.com" in done.stderr
    assert "no run was started" in done.stderr
    assert keys(s3) == {"inputs/params.json", *LAST_RUN}
    assert executions(boto, arn) == []


def test_an_upload_or_a_second_run_is_refused_while_a_run_clears(model, boto):
    """The run's DeleteObjects is held (a slow network): meanwhile an upload of the scenario and a
    second modeller's run of it are refused, naming the run; let go, the run clears and starts."""
    s3 = boto.client("s3")
    arn = create_machine(boto, {"preparation": {"Type": "Pass", "End": True}})
    leave_last_run(s3)
    reached, release = threading.Event(), threading.Event()

    def hold(**_):
        reached.set()
        release.wait(HELD_S)

    session = boto3.Session(region_name=REGION)
    session.events.register("before-send.s3.DeleteObjects", hold)
    settings = load_settings(model)
    lines, ended = [], {}
    running = threading.Thread(target=lambda: ended.setdefault("code", run_remote(
        settings, Aws(settings, session), "base", wait=False, out=lines.append)))
    running.start()
    try:
        assert reached.wait(HELD_S), "the run reached its first delete"
        done = run_task(model, "upload-scenarios", "base", "--yes",
                        env={"QUETZAL_USER_EMAIL": "b@example.com"})
        second = run_task(model, "run", "base", env={"QUETZAL_USER_EMAIL": "b@example.com"})
    finally:
        release.set()
        running.join(HELD_S)

    assert done.returncode == 1
    assert f"is being cleared for a run by {EMAIL}" in done.stderr and "nothing was uploaded" in done.stderr
    assert second.returncode == 1
    assert f"is being cleared for a run by {EMAIL}" in second.stderr and "no run was started" in second.stderr
    assert ended == {"code": 0}, lines
    assert keys(s3) == {"inputs/params.json"}
    assert len(executions(boto, arn)) == 1


def test_failed_deletes_are_named_per_key_and_nothing_starts(model, boto, monkeypatch):
    """A bucket policy denies deleting two outputs: each is named, with S3's reason; the others
    are deleted, in DeleteObjects batches (``DELETE_BATCH`` lowered from S3's 1,000 to 2 so
    batching shows on a few objects), and no execution starts."""
    s3 = boto.client("s3")
    arn = create_machine(boto, {"preparation": {"Type": "Pass", "End": True}})
    leave_last_run(s3)
    for name in ("a.csv", "b.csv"):
        s3.put_object(Bucket=MODEL, Key=f"base/outputs/kept/{name}", Body=b"x")
    s3.put_bucket_policy(Bucket=MODEL, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject",
        "Resource": f"arn:aws:s3:::{MODEL}/base/outputs/kept/*"}]}))
    monkeypatch.setattr(s3sync, "DELETE_BATCH", 2)
    session = boto3.Session(region_name=REGION)
    batches = []
    session.events.register("before-parameter-build.s3.DeleteObjects",
                            lambda params, **_: batches.append(len(params["Delete"]["Objects"])))
    settings = load_settings(model)

    with pytest.raises(SyncError) as raised:
        run_remote(settings, Aws(settings, session), "base", out=print)

    assert str(raised.value) == "\n".join([
        f"could not delete 2 of 5 object(s) under s3://{MODEL}/base/outputs/:",
        "  base/outputs/kept/a.csv: Access Denied",
        "  base/outputs/kept/b.csv: Access Denied",
        "Fix the cause (permissions, object lock) and re-run."])
    assert batches == [2, 2, 1]
    assert keys(s3) == {"inputs/params.json", "outputs/kept/a.csv", "outputs/kept/b.csv",
                        "logs/preparation.txt", "logs/preparation-2.txt"}
    assert executions(boto, arn) == []


def test_keep_outputs_with_local_is_refused(baked_repo):
    """A local run writes a folder of its own: there is no last run in the bucket to keep."""
    done = run_task(baked_repo, "run", "--local", "--keep-outputs", "base")
    assert done.returncode == 2
    assert "ERROR: --keep-outputs keeps the results of the last run on AWS" in done.stderr
    assert not (baked_repo / ".quetzal" / "runs").exists()
