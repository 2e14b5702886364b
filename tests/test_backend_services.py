"""Definitions and code shaped like the backend's services (systragroup/quetzal-network-editor-backend,
``services/``) run as copied: foreign-account ARNs, ``-dev`` names, ``:$LATEST``, ECS
``runTask.sync`` notebook steps, ``"Payload.$": "$"``, a plain ``handler(event, context)`` module.

The definitions here are our own, written in the shapes those services use (not copies of them).
"""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_run_local import invoke, run_folder, step_payload, write_definition, write_notebook

from quetzal_deploy.pipeline.definition import ECS_RUN_TASK, DefinitionError
from quetzal_deploy.pipeline.porting import handler_module_problem, ported

FOREIGN = "arn:aws:lambda:ca-central-1:111122223333:function:"
OURS = "arn:aws:lambda:${region}:${account_id}:function:${function_name}"
AUTH = "arn:aws:lambda:${region}:${account_id}:function:${auth_function_name}"
RETRY = [{"ErrorEquals": ["Lambda.ServiceException"], "IntervalSeconds": 2, "MaxAttempts": 2,
          "BackoffRate": 2}]
SETTINGS = SimpleNamespace(function_name="quetzal-test", auth_function="quetzal-api-auth")


def foreign_task(function: str, payload: dict, **fields) -> dict:
    return {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "OutputPath": "$.Payload",
            "Parameters": {"Payload": payload, "FunctionName": function}, "Retry": RETRY, **fields}


def ecs_sync_task(notebook: str, **fields) -> dict:
    """A notebook step in the backend's whole-model ECS shape (per-step container variables)."""
    environment = [
        {"Name": "notebook_path", "Value": notebook}, {"Name": "model", "Value": "quetzal-test"},
        {"Name": "scenario_path_S3", "Value.$": "$.scenario_path_S3"},
        {"Name": "launcher_arg", "Value.$": "States.JsonToString($.launcher_arg)"},
        {"Name": "METADATA", "Value.$": "States.JsonToString($.metadata)"}]
    return {"Type": "Task", "Resource": "arn:aws:states:::ecs:runTask.sync", "InputPath": "$",
            "ResultPath": "$.ecs_result",
            "Parameters": {"LaunchType": "FARGATE",
                           "Cluster": "arn:aws:ecs:ca-central-1:111122223333:cluster/quetzal-test",
                           "TaskDefinition": "arn:aws:ecs:ca-central-1:111122223333:task-definition/x-task",
                           "Overrides": {"ContainerOverrides": [{"Name": "quetzal-test",
                                                                 "Environment": environment}]},
                           "NetworkConfiguration": {"AwsvpcConfiguration": {
                               "Subnets": ["subnet-0"], "SecurityGroups": ["sg-0"],
                               "AssignPublicIp": "ENABLED"}}},
            **fields}


def map_matching_shape() -> dict:
    """preparation, a Map over exec_id of one notebook, merge: each on ``<model>-dev`` by full ARN."""
    dev = FOREIGN + "quetzal-test-dev"
    item = {"notebook_path": "notebooks/assignment.ipynb", "scenario_path_S3.$": "$.scenario_path_S3",
            "metadata.$": "$.metadata", "launcher_arg.$": "$.launcher_arg"}
    return {"StartAt": "preparation", "States": {
        "preparation": foreign_task(dev, step_payload("preparation"), Next="Map"),
        "Map": {"Type": "Map", "ItemsPath": "$.launcher_arg.params.exec_id",
                "Parameters": {"scenario_path_S3.$": "$.scenario_path_S3", "metadata.$": "$.metadata",
                               "launcher_arg": {"training_folder.$": "$.launcher_arg.training_folder",
                                                "params": {"exec_id.$": "$$.Map.Item.Value"}}},
                "Iterator": {"StartAt": "matching",
                             "States": {"matching": foreign_task(dev, item, End=True)}},
                "Next": "merge"},
        "merge": foreign_task(dev + ":$LATEST", {
            "notebook_path": "notebooks/preparation.ipynb", "scenario_path_S3.$": "$[0].scenario_path_S3",
            "launcher_arg.$": "$[0].launcher_arg", "metadata.$": "$[0].metadata"}, End=True)}}


def test_the_models_function_under_any_real_name_becomes_the_placeholder():
    definition = map_matching_shape()
    own = ported(definition, SETTINGS)
    states = own.definition["States"]
    assert states["preparation"]["Parameters"]["FunctionName"] == OURS
    assert states["Map"]["Iterator"]["States"]["matching"]["Parameters"]["FunctionName"] == OURS
    assert states["merge"]["Parameters"]["FunctionName"] == OURS
    assert states["merge"]["Retry"] == RETRY and states["merge"]["OutputPath"] == "$.Payload"
    notes = own.notes()
    assert len(notes) == 2, notes  # the -dev ARN once (three states), the :$LATEST form once
    assert "preparation, matching" in notes[0] and "--fix" in notes[0]
    assert definition["States"]["preparation"]["Parameters"]["FunctionName"].startswith(FOREIGN)  # a copy


@pytest.mark.parametrize("function", [
    "quetzal-test", "quetzal-test:$LATEST", "111122223333:function:quetzal-test-dev",
    FOREIGN + "quetzal-test:$LATEST", FOREIGN + "any-name-at-all"])
def test_every_form_of_the_models_function_is_recognised(function):
    """The model's function by name (any qualifier, account or stage suffix), or any function a
    Task sends a notebook to."""
    own = ported({"StartAt": "s", "States": {"s": foreign_task(function, step_payload("p"), End=True)}},
                 SETTINGS)
    assert own.definition["States"]["s"]["Parameters"]["FunctionName"] == OURS


def test_a_direct_lambda_resource_is_recognised_and_other_functions_are_kept():
    other = FOREIGN + "someone-elses-function"
    definition = {"StartAt": "a", "States": {
        "a": {"Type": "Task", "Resource": FOREIGN + "quetzal-test-dev", "Next": "auth"},
        "auth": foreign_task(FOREIGN + "quetzal-api-auth:$LATEST", {"authorization.$": "$.authorization"},
                             Next="other"),
        "other": foreign_task(other, {"x": 1}, End=True)}}
    states = ported(definition, SETTINGS).definition["States"]
    assert states["a"]["Resource"] == OURS
    assert states["auth"]["Parameters"]["FunctionName"] == AUTH
    assert states["other"]["Parameters"]["FunctionName"] == other


def test_an_ecs_notebook_step_becomes_a_fargate_step_with_the_same_event():
    own = ported({"StartAt": "t", "States": {"t": ecs_sync_task("notebooks/x.ipynb", Next="u"),
                                             "u": {"Type": "Succeed"}}}, SETTINGS)
    state = own.definition["States"]["t"]
    assert state == {"Type": "Task", "Resource": ECS_RUN_TASK, "OutputPath": "$.Payload",
                     "InputPath": "$", "Next": "u",
                     "Parameters": {"Payload": {"notebook_path": "notebooks/x.ipynb",
                                                "scenario_path_S3.$": "$.scenario_path_S3",
                                                "launcher_arg.$": "$.launcher_arg",
                                                "metadata.$": "$.metadata"}}}
    assert "runTask.sync" in own.notes()[0]


def test_a_task_sending_the_whole_state_is_refused_with_the_payload_to_write():
    definition = {"StartAt": "api call", "States": {"api call": {
        "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "OutputPath": "$.Payload",
        "Parameters": {"Payload.$": "$", "FunctionName": FOREIGN + "quetzal-osm-api-dev:$LATEST"},
        "End": True}}}  # osm_importer's shape: its one function, under another name than the model's
    with pytest.raises(DefinitionError, match=r"Task 'api call' sends \{\"Payload.\$\": \"\$\"\}.*"
                                              r"\"notebook_path\": \"notebooks/<step>.ipynb\""):
        ported(definition, SETTINGS)


HANDLER_MODULE = """import os

def handler(event, context):
    params = event['launcher_arg']['params']
    bucket = os.environ['BUCKET_NAME']
    return {'bucket': bucket, 'params': params}
"""


def test_a_handler_module_is_recognised_and_a_script_calling_it_is_not():
    assert "defines handler(event, context) and never calls it" in handler_module_problem(
        "main.py", HANDLER_MODULE)
    assert handler_module_problem("main.py", HANDLER_MODULE + "\nhandler({}, None)\n") is None
    assert handler_module_problem("step.py", "print('RETURN:', {'a': 1})\n") is None


def write_raw_definition(repo: Path, definition: dict) -> None:
    (repo / "step-functions.json").write_text(json.dumps(definition, indent=4))


def test_a_copied_definition_runs_locally_and_fix_writes_the_placeholders(baked_repo, tmp_path):
    dev = FOREIGN + "quetzal-test-dev"
    definition = {"StartAt": "preparation", "States": {
        "preparation": foreign_task(dev, step_payload("preparation"), Next="assignment"),
        "assignment": foreign_task(dev, step_payload("assignment"), End=True)}}
    write_raw_definition(baked_repo, definition)

    done = invoke(baked_repo, tmp_path, "run", "--local", "base")

    assert done.returncode == 0, done.stdout + done.stderr
    notes = [line for line in done.stdout.splitlines() if line.startswith("Note:")]
    assert len(notes) == 1 and "quetzal-test-dev" in notes[0] and "preparation, assignment" in notes[0]
    outputs = run_folder(baked_repo) / "bucket" / "base" / "outputs"
    assert (outputs / "assignment_summary.csv").is_file()

    fixed = invoke(baked_repo, tmp_path, "update-steps", "--fix")

    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    written = json.loads((baked_repo / "step-functions.json").read_text())
    assert [s["Parameters"]["FunctionName"] for s in written["States"].values()] == [OURS, OURS]
    assert written["States"]["preparation"]["Retry"] == RETRY
    again = invoke(baked_repo, tmp_path, "update-steps", "--fix")
    assert again.returncode == 0 and "nothing to fix" in again.stdout
    assert (baked_repo / "step-functions.json").read_text() == json.dumps(written, indent=2) + "\n"


def test_ecs_notebook_steps_run_locally_as_fargate_steps(baked_repo, tmp_path):
    """quetzal_test's shape: an Authorization state (skipped locally), then ECS notebook steps."""
    env = baked_repo / ".env"
    env.write_text(env.read_text() + "AUTH_FUNCTION_NAME=quetzal-api-auth\n")
    write_raw_definition(baked_repo, {"StartAt": "Authorization", "States": {
        "Authorization": foreign_task(FOREIGN + "quetzal-api-auth:$LATEST", {
            "authorization.$": "$.authorization", "model": "quetzal-test",
            "scenario_path_S3.$": "$.scenario_path_S3", "launcher_arg.$": "$.launcher_arg",
            "metadata.$": "$.metadata"}, Next="test 1"),
        "test 1": ecs_sync_task("notebooks/preparation.ipynb", Next="test 2"),
        "test 2": ecs_sync_task("notebooks/assignment.ipynb", End=True)}})

    done = invoke(baked_repo, tmp_path, "run", "--local", "base")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "Authorization: skipped locally" in done.stdout
    assert any(line.split()[:3] == ["test", "2", "ok"] and "Fargate" in line
               for line in done.stdout.splitlines()), done.stdout
    outputs = run_folder(baked_repo) / "bucket" / "base" / "outputs"
    assert (outputs / "preparation_summary.csv").is_file() and (outputs / "assignment_summary.csv").is_file()


def test_whole_state_payload_and_handler_module_are_refused_before_the_run(baked_repo, tmp_path):
    write_raw_definition(baked_repo, {"StartAt": "api call", "States": {"api call": {
        "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "OutputPath": "$.Payload",
        "Parameters": {"Payload.$": "$", "FunctionName": FOREIGN + "quetzal-test:$LATEST"}, "End": True}}})
    done = invoke(baked_repo, tmp_path, "run", "--local", "base")
    assert done.returncode == 1 and "Task 'api call' sends" in done.stderr, done.stdout + done.stderr
    assert not (baked_repo / ".quetzal").exists()

    (baked_repo / "notebooks" / "main.py").write_text(HANDLER_MODULE)
    write_definition(baked_repo, {"api call": foreign_task(FOREIGN + "quetzal-test", {
        **step_payload("x"), "notebook_path": "notebooks/main.py"}, End=True)}, "api call")
    done = invoke(baked_repo, tmp_path, "run", "--local", "base")
    assert done.returncode == 1
    assert "notebooks/main.py is a Lambda handler module" in done.stderr, done.stdout + done.stderr
    assert not (baked_repo / ".quetzal").exists()


def test_another_function_is_still_refused_locally_with_the_auth_hint(baked_repo, tmp_path):
    write_definition(baked_repo, {"other": foreign_task(FOREIGN + "someone-elses", {"x": 1}, End=True)},
                     "other")
    done = invoke(baked_repo, tmp_path, "run", "--local", "base")
    assert done.returncode == 1
    assert "someone-elses" in done.stderr and "AUTH_FUNCTION_NAME" in done.stderr, done.stderr


def test_an_existing_bucket_in_env_names_the_bucket_and_a_bad_one_is_refused(baked_repo):
    from quetzal_deploy.errors import ConfigError
    from quetzal_deploy.settings import load_settings

    env = baked_repo / ".env"
    env.write_text(env.read_text().replace("EXISTING_BUCKET_NAME=\n", "EXISTING_BUCKET_NAME=quetzal-api\n"))
    settings = load_settings(baked_repo)
    assert (settings.bucket, settings.existing_bucket, settings.function_name) == (
        "quetzal-api", "quetzal-api", "quetzal-test")
    env.write_text(env.read_text().replace("=quetzal-api\n", "=Bad_Bucket\n"))
    with pytest.raises(ConfigError, match="EXISTING_BUCKET_NAME='Bad_Bucket' in .env"):
        load_settings(baked_repo)


def test_a_step_that_writes_and_returns_nothing_is_a_warning_in_the_summary(baked_repo, tmp_path):
    write_notebook(baked_repo, "idle", "if manual:\n    (outputs / 'x.csv').write_text('a\\n')\n")
    write_notebook(baked_repo, "counts", "print('RETURN:', {'count': 3})\n")
    write_definition(baked_repo, {"idle": foreign_task(OURS, step_payload("idle"), Next="counts"),
                                  "counts": foreign_task(OURS, step_payload("counts"), Next="prep"),
                                  "prep": foreign_task(OURS, step_payload("preparation"), End=True)}, "idle")

    done = invoke(baked_repo, tmp_path, "run", "--local", "base")

    assert done.returncode == 0, done.stdout + done.stderr
    warnings = [line for line in done.stdout.splitlines() if "wrote no file" in line]
    assert len(warnings) == 1 and warnings[0].startswith("WARNING: idle (notebooks/idle.ipynb)"), done.stdout


def test_step_scripts_and_modules_beside_the_notebooks_are_not_git_ignored(baked_repo):
    """A ported handler's step script and its module live in notebooks/ and must be committed
    (conversion writes no .py into the repo: it happens in the image and in a run's folder)."""
    import subprocess

    for name in ("osm.py", "main.py", "group/helpers.py"):
        path = baked_repo / "notebooks" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text("print('step')\n")
        ignored = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=baked_repo)
        assert ignored.returncode == 1, f"notebooks/{name} is git-ignored"
