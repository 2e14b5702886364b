"""`invoke update-steps` in a baked repo against moto server: deploy, dry run, and every bad input."""

import json
import re

import pytest

from fixtures.aws import REGION
from fixtures.tasks import run_task

MODEL = "quetzal-test"  # the default bake's model name
PLACEHOLDER_DEFINITION = {"StartAt": "wait", "States": {"wait": {"Type": "Pass", "End": True}}}


@pytest.fixture
def machine(boto):
    """The model's state machine as `invoke infra` leaves it: a placeholder definition (and the bucket)."""
    boto.client("s3").create_bucket(Bucket=MODEL, CreateBucketConfiguration={"LocationConstraint": REGION})
    role = boto.client("iam").create_role(RoleName=f"{MODEL}-sfn", AssumeRolePolicyDocument="{}")
    created = boto.client("stepfunctions").create_state_machine(
        name=MODEL, definition=json.dumps(PLACEHOLDER_DEFINITION), roleArn=role["Role"]["Arn"]
    )
    return created["stateMachineArn"]


def deployed(boto, arn):
    return json.loads(boto.client("stepfunctions").describe_state_machine(stateMachineArn=arn)["definition"])


def test_update_steps_deploys_the_rendered_definition(baked_repo, boto, machine):
    done = run_task(baked_repo, "update-steps")
    assert done.returncode == 0, done.stderr
    definition = deployed(boto, machine)
    account = boto.client("sts").get_caller_identity()["Account"]
    assert not re.findall(r"\$\{[a-z_][a-z0-9_]*\}", json.dumps(definition))
    assert list(definition["States"]) == ["preparation", "assignment"]
    for step in ("preparation", "assignment"):
        parameters = definition["States"][step]["Parameters"]
        assert parameters["FunctionName"] == f"arn:aws:lambda:ca-central-1:{account}:function:{MODEL}"
        assert parameters["Payload"]["notebook_path"] == f"notebooks/{step}.ipynb"
        assert parameters["Payload"]["scenario_path_S3.$"] == "$.scenario_path_S3"
    assert "notebooks/preparation.ipynb, notebooks/assignment.ipynb" in done.stdout
    published = boto.client("s3").get_object(Bucket=MODEL, Key="_common/steps.json")
    assert json.loads(published["Body"].read()) == [{"name": "default", "steps": [
        {"name": "preparation", "path": "notebooks/preparation.ipynb"},
        {"name": "assignment", "path": "notebooks/assignment.ipynb"}]}]
    assert published["ContentType"] == "application/json" and "checksum" in published["Metadata"]
    assert "_common/steps.json (default: 2 step(s))" in done.stdout


def test_dry_run_prints_the_definition_and_changes_nothing(baked_repo, boto, machine):
    done = run_task(baked_repo, "update-steps", "--dry-run")
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    account = boto.client("sts").get_caller_identity()["Account"]
    assert printed["States"]["assignment"]["Parameters"]["FunctionName"].split(":")[4] == account
    assert deployed(boto, machine) == PLACEHOLDER_DEFINITION


def test_missing_state_machine_says_to_run_infra(baked_repo, aws):
    done = run_task(baked_repo, "update-steps")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "run `invoke infra` first" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def break_json(repo):
    (repo / "step-functions.json").write_text('{\n  "StartAt": "a",\n  "States": {,}\n}\n')


def break_asl(repo):
    path = repo / "step-functions.json"
    definition = json.loads(path.read_text())
    del definition["States"]["preparation"]["Next"]
    path.write_text(json.dumps(definition))


def remove_notebook(repo):
    (repo / "notebooks" / "assignment.ipynb").unlink()


def add_unknown_placeholder(repo):
    path = repo / "step-functions.json"
    definition = json.loads(path.read_text())
    definition["States"]["assignment"]["Parameters"]["Payload"]["bucket_region"] = "${bucket_region}"
    path.write_text(json.dumps(definition))


def duplicate_a_name_in_a_branch(repo):
    path = repo / "step-functions.json"
    definition = json.loads(path.read_text())
    inner = {**definition["States"]["assignment"], "End": True}
    inner.pop("Next", None)
    branch = {"StartAt": "preparation", "States": {"preparation": inner}}
    definition["States"]["assignment"] = {"Type": "Parallel", "End": True, "Branches": [branch]}
    path.write_text(json.dumps(definition))


def make_notebook_path_a_number(repo):
    path = repo / "step-functions.json"
    definition = json.loads(path.read_text())
    definition["States"]["assignment"]["Parameters"]["Payload"]["notebook_path"] = 5
    path.write_text(json.dumps(definition))


BAD_INPUTS = {
    "invalid-json": (break_json, "not valid JSON (line 3, column 14"),
    "invalid-asl": (break_asl, 'does not have required field "Next"'),
    "missing-notebook": (remove_notebook, "notebooks/assignment.ipynb"),
    "unknown-placeholder": (add_unknown_placeholder, "unknown placeholder(s) bucket_region"),
    "duplicate-name": (duplicate_a_name_in_a_branch, "state name 'preparation' is used 2 times (States, "
                                                     "States.assignment.Branches[0].States)"),
    "notebook-path-number": (make_notebook_path_a_number, "notebook_path must be a string"),
}


@pytest.mark.parametrize("breaks, message", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_definition_is_refused_and_nothing_is_deployed(baked_repo, boto, machine, breaks, message):
    breaks(baked_repo)
    for args in (["update-steps"], ["update-steps", "--dry-run"]):
        done = run_task(baked_repo, *args)
        assert done.returncode == 1, done.stdout
        assert done.stderr.startswith("ERROR: ") and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert deployed(boto, machine) == PLACEHOLDER_DEFINITION


def test_item_processor_warns_and_max_attempts_99999999_is_accepted(baked_repo, boto, machine):
    """Step Functions accepts MaxAttempts up to 99999999 (statelint's ceiling is off by one), and
    a Map's ItemProcessor deploys but hides its steps from the front end: a warning says so."""
    path = baked_repo / "step-functions.json"
    definition = json.loads(path.read_text())
    definition["States"]["preparation"]["Retry"][0]["MaxAttempts"] = 99999999
    inner = definition["States"].pop("assignment")
    inner.pop("Next", None)
    inner["End"] = True
    processor = {"StartAt": "assignment", "States": {"assignment": inner}}
    definition["States"]["fan"] = {"Type": "Map", "End": True, "ItemsPath": "$.launcher_arg.items",
                                   "ItemProcessor": processor}
    definition["States"]["preparation"]["Next"] = "fan"
    path.write_text(json.dumps(definition))

    done = run_task(baked_repo, "update-steps")

    assert done.returncode == 0, done.stderr
    assert "Warning: Map state 'fan' uses ItemProcessor" in done.stderr
    assert "Rename ItemProcessor to Iterator" in done.stderr
    assert deployed(boto, machine)["States"]["preparation"]["Retry"][0]["MaxAttempts"] == 99999999


def test_a_definition_copied_from_another_account_deploys_as_the_models_own(baked_repo, boto, machine):
    """The backend's form: the model's function by a foreign account's ARN with a -dev name."""
    foreign = "arn:aws:lambda:ca-central-1:111122223333:function:quetzal-test-dev:$LATEST"
    path = baked_repo / "step-functions.json"
    copied = json.loads(path.read_text())
    for state in copied["States"].values():
        state["Parameters"]["FunctionName"] = foreign
    path.write_text(json.dumps(copied))

    done = run_task(baked_repo, "update-steps")

    assert done.returncode == 0, done.stderr
    account = boto.client("sts").get_caller_identity()["Account"]
    for state in deployed(boto, machine)["States"].values():
        assert state["Parameters"]["FunctionName"] == f"arn:aws:lambda:{REGION}:{account}:function:{MODEL}"
    notes = [line for line in done.stderr.splitlines() if line.startswith("Note:")]
    assert len(notes) == 1 and foreign in notes[0] and "preparation, assignment" in notes[0], done.stderr
