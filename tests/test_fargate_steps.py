"""Fargate steps: the step-functions.json convention, its rendering by update-steps (statelint,
moto server), and local runs (in this process and in the image) mixing Lambda and Fargate steps.

A step is marked for Fargate by writing it as a Lambda step whose Resource is
``arn:aws:states:::ecs:runTask.waitForTaskToken`` (no FunctionName needed) and whose
``TimeoutSeconds`` is its own time limit.
"""

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
from statelint.linter import Linter
from test_run_local import invoke, lambda_task, run_folder, step_payload, write_definition, write_notebook

from fixtures.tasks import run_task
from quetzal_deploy.pipeline.definition import (
    ECS_RUN_TASK,
    FARGATE_START_ALLOWANCE_S,
    DefinitionError,
    deployable,
    family_of,
    machine_states,
    notebook_paths,
)
from quetzal_deploy.runtime.event import read_event
from quetzal_deploy.settings import load_settings
from quetzal_deploy.sizing import FARGATE_SIZES, suggest

MODEL = "quetzal-test"
SUBNETS = "subnet-0a1b2c3d,subnet-4e5f6a7b"
GROUPS = "sg-0123456789abcdef0"


def fargate_task(payload: dict, **fields) -> dict:
    """A Fargate step as a modeller writes it: a Lambda step with the ECS resource."""
    return {"Type": "Task", "Resource": ECS_RUN_TASK, "Parameters": {"Payload": payload},
            "OutputPath": "$.Payload", **fields}


def mixed_pipeline() -> tuple[dict, str]:
    """A Lambda step, a Fargate step, a Map whose iterations are Fargate steps, a Lambda step.

    Each step passes on what the previous one RETURNed: demand and periods (Lambda) reach the
    Fargate step's notebook, its flows reach each period's, and their loads reach the last step's.
    """
    common = {"scenario_path_S3.$": "$.scenario_path_S3", "metadata.$": "$.metadata"}
    return {
        "prepare": lambda_task(step_payload("prepare"), Next="assign"),
        "assign": fargate_task({"notebook_path": "notebooks/assign.ipynb", **common,
                                "periods.$": "$.periods", "launcher_arg": {"demand.$": "$.demand"}},
                               TimeoutSeconds=7200, Next="Fan"),
        "Fan": {"Type": "Map", "ItemsPath": "$.periods", "ResultPath": "$.fan", "Next": "report",
                "Parameters": {**common, "launcher_arg": {"period.$": "$$.Map.Item.Value",
                                                          "flows.$": "$.flows"}},
                "Iterator": {"StartAt": "period", "States": {
                    "period": fargate_task(step_payload("period"), TimeoutSeconds=600, End=True)}}},
        "report": lambda_task({"notebook_path": "notebooks/report.ipynb", **common,
                               "launcher_arg": {"flows.$": "$.flows", "loads.$": "$.fan[*].load"}}, End=True),
    }, "prepare"


def write_mixed_notebooks(repo: Path) -> None:
    write_notebook(repo, "prepare",
                   'print("RETURN:", json.dumps({"demand": 120, "periods": ["am", "pm"]}))\n')
    write_notebook(repo, "assign", 'print("RETURN:", json.dumps({"flows": 2 * argv["demand"]}))\n')
    write_notebook(repo, "period", 'p = argv["period"]\n'
                                   '(outputs / f"{p}.csv").write_text(str(argv["flows"]))\n'
                                   'load = {"load": argv["flows"] // 2, "period": p}\n'
                                   'print("RETURN:", json.dumps(load))\n')
    write_notebook(repo, "report", '(outputs / "report.json").write_text(json.dumps(argv))\n')


# --- the convention and its rendering -------------------------------------------------------


@pytest.fixture
def settings(default_bake):
    return replace(load_settings(default_bake), fargate_subnets=tuple(SUBNETS.split(",")),
                   fargate_security_groups=(GROUPS,))


def test_a_fargate_step_as_written_is_valid_asl():
    states, start = mixed_pipeline()
    assert Linter.validate({"StartAt": start, "States": states}) == []


def test_rendering_fills_the_ecs_state_and_statelint_accepts_it(settings):
    states, start = mixed_pipeline()
    rendered = deployable(machine_states({"StartAt": start, "States": states}), settings, "123456789012")

    assert Linter.validate(rendered) == []
    assert not re.findall(r"\$\{[a-z_]+\}", json.dumps(rendered))
    assign = rendered["States"]["assign"]
    parameters = assign["Parameters"]
    assert assign["Resource"] == ECS_RUN_TASK and assign["OutputPath"] == "$.Payload"
    assert parameters["LaunchType"] == "FARGATE"
    assert parameters["Cluster"] == f"arn:aws:ecs:ca-central-1:123456789012:cluster/{MODEL}-steps"
    assert parameters["TaskDefinition"] == f"{MODEL}-step"
    assert parameters["NetworkConfiguration"] == {"AwsvpcConfiguration": {
        "Subnets": SUBNETS.split(","), "SecurityGroups": [GROUPS], "AssignPublicIp": "DISABLED"}}
    assert assign["TimeoutSeconds"] == 7200 + FARGATE_START_ALLOWANCE_S
    assert assign["HeartbeatSeconds"] > 0 and assign["Retry"][0]["ErrorEquals"] == ["ECS.AmazonECSException"]
    override = parameters["Overrides"]["ContainerOverrides"][0]
    assert override["Name"] == "step"
    environment = {item["Name"]: item.get("Value", item.get("Value.$")) for item in override["Environment"]}
    assert environment == {
        "QUETZAL_TASK_TOKEN": "$$.Task.Token",
        "QUETZAL_TIME_LIMIT_S": "7200",
        "QUETZAL_EVENT__notebook_path": '"notebooks/assign.ipynb"',
        "QUETZAL_EVENT__scenario_path_S3": "States.JsonToString($.scenario_path_S3)",
        "QUETZAL_EVENT__metadata": "States.JsonToString($.metadata)",
        "QUETZAL_EVENT__periods": "States.JsonToString($.periods)",
        "QUETZAL_EVENT__launcher_arg__demand": "States.JsonToString($.demand)",
    }
    # The Lambda steps are untouched, the Fargate step inside the Map is rendered too.
    assert rendered["States"]["prepare"]["Resource"] == "arn:aws:states:::lambda:invoke"
    period = rendered["States"]["Fan"]["Iterator"]["States"]["period"]
    assert period["Parameters"]["TaskDefinition"] == f"{MODEL}-step"
    assert notebook_paths(rendered) == ["notebooks/prepare.ipynb", "notebooks/assign.ipynb",
                                        "notebooks/period.ipynb", "notebooks/report.ipynb"]


def test_static_event_fields_read_back_as_the_container_reads_them(settings):
    states = {"one": fargate_task({"notebook_path": "notebooks/a.ipynb", "launcher_arg": {"x": [1, "é"]},
                                   "scenario_path_S3": "base/"}, End=True)}
    rendered = deployable(machine_states({"StartAt": "one", "States": states}), settings, "123456789012")
    environment = rendered["States"]["one"]["Parameters"]["Overrides"]["ContainerOverrides"][0]["Environment"]
    event = read_event(None, {item["Name"]: item["Value"] for item in environment if "Value" in item})
    assert event == {"notebook_path": "notebooks/a.ipynb", "launcher_arg": {"x": [1, "é"]},
                     "scenario_path_S3": "base/"}


def test_a_field_name_holding_the_separator_is_refused(settings):
    states = {"one": fargate_task({"launcher_arg": {"my__value.$": "$.x"}}, End=True)}
    with pytest.raises(DefinitionError, match="without '__'"):
        deployable(machine_states({"StartAt": "one", "States": states}), settings, "123456789012")


@pytest.mark.parametrize("model", ["paris", "task", "quetzal-paris-2030", "x" * 57])
def test_the_task_definition_family_never_switches_the_front_end_to_whole_model_ecs(model):
    """Quenedi's backend runs a model in its ECS mode when a family starting with <model>-task exists:
    ours must not start so, for this model nor for any model whose name is a start of ours."""
    family = family_of(model)
    assert not any(family.startswith(f"{family[:end]}-task") for end in range(1, len(family)))


def test_a_model_name_holding_task_cannot_have_fargate_steps(settings):
    """paris-tasks-step would switch a model named paris to the front end's whole-model ECS mode."""
    named = replace(settings, model_name="paris-tasks")
    states = {"one": fargate_task(step_payload("one"), End=True)}
    with pytest.raises(DefinitionError, match="without '-task'"):
        deployable(machine_states({"StartAt": "one", "States": states}), named, "1")
    lambda_only = {"one": lambda_task(step_payload("one"), End=True)}
    assert deployable(machine_states({"StartAt": "one", "States": lambda_only}), named, "1")


# --- update-steps against moto server -------------------------------------------------------


@pytest.fixture
def machine(boto):
    """The state machine and the bucket, as `invoke infra` leaves them (update-steps writes steps.json)."""
    boto.client("s3").create_bucket(Bucket=MODEL,
                                    CreateBucketConfiguration={"LocationConstraint": "ca-central-1"})
    role = boto.client("iam").create_role(RoleName=f"{MODEL}-sfn", AssumeRolePolicyDocument="{}")
    created = boto.client("stepfunctions").create_state_machine(
        name=MODEL, definition=json.dumps({"StartAt": "w", "States": {"w": {"Type": "Pass", "End": True}}}),
        roleArn=role["Role"]["Arn"])
    return created["stateMachineArn"]


def test_update_steps_deploys_fargate_steps_with_the_network_filled(baked_repo, boto, machine):
    write_mixed_notebooks(baked_repo)
    write_definition(baked_repo, *mixed_pipeline())
    (baked_repo / ".env.local").write_text(
        f"FARGATE_SUBNETS={SUBNETS}\nFARGATE_SECURITY_GROUPS={GROUPS}\nFARGATE_ASSIGN_PUBLIC_IP=yes\n"
        "FARGATE_CLUSTER=shared-cluster\n")

    done = run_task(baked_repo, "update-steps")

    assert done.returncode == 0, done.stderr
    deployed = json.loads(boto.client("stepfunctions").describe_state_machine(
        stateMachineArn=machine)["definition"])
    account = boto.client("sts").get_caller_identity()["Account"]
    assert Linter.validate(deployed) == []
    parameters = deployed["States"]["assign"]["Parameters"]
    assert parameters["Cluster"] == f"arn:aws:ecs:ca-central-1:{account}:cluster/shared-cluster"
    assert parameters["NetworkConfiguration"]["AwsvpcConfiguration"] == {
        "Subnets": SUBNETS.split(","), "SecurityGroups": [GROUPS], "AssignPublicIp": "ENABLED"}
    assert "notebooks/assign.ipynb" in done.stdout and "notebooks/period.ipynb" in done.stdout
    steps = boto.client("s3").get_object(Bucket=MODEL, Key="_common/steps.json")["Body"].read()
    assert json.loads(steps) == [{"name": "default", "steps": [
        {"name": name, "path": f"notebooks/{name}.ipynb"}
        for name in ("prepare", "assign", "period", "report")]}]


def test_update_steps_refuses_fargate_steps_without_a_network(baked_repo, boto, machine):
    write_mixed_notebooks(baked_repo)
    write_definition(baked_repo, *mixed_pipeline())

    done = run_task(baked_repo, "update-steps")

    assert done.returncode == 1
    assert "assign, period on Fargate" in done.stderr and "FARGATE_SUBNETS" in done.stderr
    assert "Traceback" not in done.stderr


# --- local runs ------------------------------------------------------------------------------


def check_mixed_run(repo: Path, done) -> None:
    """Every step ran on its platform and the state flowed through RETURN across both kinds."""
    assert done.returncode == 0, done.stdout + done.stderr
    outputs = run_folder(repo) / "bucket" / "base" / "outputs"
    assert (outputs / "am.csv").read_text() == (outputs / "pm.csv").read_text() == "240"
    report = json.loads((outputs / "report.json").read_text())
    assert report["flows"] == 240 and report["loads"] == [120, 120]
    platforms = {}
    for line in done.stdout.splitlines():
        cells = line.split()
        if cells and cells[0] in {"prepare", "assign", "report", "Fan[0]", "Fan[1]"} and "ok" in cells:
            platforms[cells[0] if cells[1] != ">" else f"{cells[0]} > {cells[2]}"] = \
                "Fargate" if "Fargate" in cells else "Lambda" if "Lambda" in cells else "?"
    assert platforms == {"prepare": "Lambda", "assign": "Fargate", "Fan[0] > period": "Fargate",
                         "Fan[1] > period": "Fargate", "report": "Lambda"}, done.stdout
    header = next(line for line in done.stdout.splitlines() if line.startswith("step "))
    assert header.split()[-6:] == ["ran", "on", "suggested", "(peak", "+", "20%)"], header


def test_local_run_mixes_lambda_and_fargate_steps_and_state_flows_through_return(baked_repo, tmp_path):
    write_mixed_notebooks(baked_repo)
    write_definition(baked_repo, *mixed_pipeline())

    done = invoke(baked_repo, tmp_path, "run", "--local", "base")

    check_mixed_run(baked_repo, done)
    assert "Fargate steps: of 16384 MB memory, 21 GiB storage" in done.stdout
    prepare = next(line for line in done.stdout.splitlines() if line.startswith("prepare "))
    assert re.search(r"Lambda  +Lambda \d+ MB, /tmp 512 MB$", prepare), prepare  # the sizing column


def test_a_step_over_the_lambda_limit_suggests_fargate_and_succeeds_there(baked_repo, tmp_path):
    write_notebook(baked_repo, "long", 'time.sleep(5)\nprint("RETURN:", json.dumps({"done": True}))\n')
    (baked_repo / ".env.local").write_text("LAMBDA_TIME_LIMIT=2\n")  # stands for 900 s
    write_definition(baked_repo, {"long": lambda_task(step_payload("long"), End=True)}, "long")

    on_lambda = invoke(baked_repo, tmp_path, "run", "--local", "base")

    assert on_lambda.returncode == 1, on_lambda.stdout + on_lambda.stderr
    assert "Error: NotebookTimeout" in on_lambda.stdout
    assert "run the step on Fargate" in on_lambda.stdout
    for old in (baked_repo / ".quetzal" / "runs").iterdir():
        old.rename(tmp_path / old.name)
    write_definition(baked_repo, {"long": fargate_task(step_payload("long"), TimeoutSeconds=3600,
                                                       End=True)}, "long")

    on_fargate = invoke(baked_repo, tmp_path, "run", "--local", "base")

    assert on_fargate.returncode == 0, on_fargate.stdout + on_fargate.stderr
    row = next(line.split() for line in on_fargate.stdout.splitlines() if line.startswith("long "))
    assert "ok" in row and "Fargate" in row
    assert (run_folder(baked_repo) / "bucket" / "base" / "logs" / "long.txt").is_file()


def test_a_fargate_step_over_its_own_time_limit_fails_with_its_message(baked_repo, tmp_path):
    write_notebook(baked_repo, "long", 'time.sleep(60)\n')
    write_definition(baked_repo, {"long": fargate_task(step_payload("long"), TimeoutSeconds=3,
                                                       End=True)}, "long")

    done = invoke(baked_repo, tmp_path, "run", "--local", "base")

    assert done.returncode == 1, done.stdout + done.stderr
    assert "Error: NotebookTimeout" in done.stdout
    assert "before the Fargate time limit" in done.stdout and "TimeoutSeconds" in done.stdout


def test_a_state_too_big_for_ecs_overrides_fails_the_fargate_step_as_ecs_would(baked_repo, tmp_path):
    """The event reaches a Fargate step in RunTask's overrides, which ECS caps at 8,192 characters
    (Lambda's 256 KiB does not apply): a bigger state fails there, catchable, with the fix."""
    write_notebook(baked_repo, "grow", 'print("RETURN:", json.dumps({"launcher_arg": {"params": '
                                       '{"zones": ["z%05d" % i for i in range(1500)]}}}))\n')
    write_notebook(baked_repo, "assign", 'print("never runs")\n')
    write_definition(baked_repo, {
        "grow": lambda_task(step_payload("grow"), Next="assign"),
        "assign": fargate_task(step_payload("assign"), TimeoutSeconds=600, End=True),
    }, "grow")

    done = invoke(baked_repo, tmp_path, "run", "--local", "base")

    assert done.returncode == 1, done.stdout + done.stderr
    assert "ECS.InvalidParameterException" in done.stdout and "at most 8,192" in done.stdout
    assert "never runs" not in done.stdout


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.xdist_group("docker")
def test_docker_run_starts_fargate_steps_with_the_command_line_entry_point(
        baked_repo, tmp_path, docker_engine, lambda_base_image, monkeypatch):
    monkeypatch.setenv("QUETZAL_BASE_IMAGE", lambda_base_image)
    write_mixed_notebooks(baked_repo)
    write_definition(baked_repo, *mixed_pipeline())

    done = invoke(baked_repo, tmp_path, "run", "--local", "--docker", "base")

    check_mixed_run(baked_repo, done)
    assert "prepare | START RequestId" in done.stdout  # Lambda steps behind the emulator
    assert "assign | [quetzal] notebooks/assign.ipynb on base/" in done.stdout  # the entry point's log
    assert "assign | START RequestId" not in done.stdout


@pytest.mark.parametrize(("seconds", "memory_mb", "tmp_mb", "expected"), [
    (60, 3000, 100, "Lambda 3600 MB, /tmp 512 MB"),
    (60, 50, 1000, "Lambda 128 MB, /tmp 1200 MB"),
    (1200, 3000, 100, "Fargate 0.5 vCPU, 4096 MB, 21 GiB"),  # too long for Lambda
    (60, 20000, 100, "Fargate 4 vCPU, 24576 MB, 21 GiB"),  # too big for Lambda
    (60, 1000, 150 * 1024, "Fargate 0.25 vCPU, 2048 MB, 180 GiB"),
    (60, 110 * 1024, 100, "too big for Fargate: split the step"),
    (None, None, None, "-"),
])
def test_sizing_suggests_the_smallest_allowed_size_with_headroom(seconds, memory_mb, tmp_mb, expected):
    assert suggest(seconds, memory_mb, tmp_mb).text == expected


def test_fargate_sizes_are_the_pairs_ecs_accepts():
    assert (256, 512) in FARGATE_SIZES and (16384, 122880) in FARGATE_SIZES
    assert (1024, 16384) not in FARGATE_SIZES and (8192, 18432) not in FARGATE_SIZES
    assert len(FARGATE_SIZES) == len(set(FARGATE_SIZES)) == 3 + 4 + 7 + 13 + 23 + 12 + 12


def test_rollback_points_the_fargate_steps_at_the_same_image(baked_repo, boto):
    """push, update and rollback register a task definition revision running the Lambda's new image."""
    ecr, lam, ecs = boto.client("ecr"), boto.client("lambda"), boto.client("ecs")
    repository_uri = ecr.create_repository(repositoryName=MODEL)["repository"]["repositoryUri"]
    for tag in ("v1", "v2"):
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                    "config": {"digest": f"sha256:{tag * 32}", "size": 1}, "layers": []}
        ecr.put_image(repositoryName=MODEL, imageManifest=json.dumps(manifest), imageTag=tag)
    role = boto.client("iam").create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    lam.create_function(FunctionName=MODEL, Role=role, PackageType="Image",
                        Code={"ImageUri": f"{repository_uri}:v2"})
    ecs.register_task_definition(
        family=f"{MODEL}-step", requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="4096",
        memory="16384", executionRoleArn=role, taskRoleArn=role, tags=[{"key": "model", "value": MODEL}],
        containerDefinitions=[{"name": "step", "image": f"{repository_uri}:v2", "essential": True,
                               "entryPoint": ["python", "-m", "quetzal_deploy.runtime.cli"]}])

    done = run_task(baked_repo, "rollback", "--to", "v1")

    assert done.returncode == 0, done.stdout + done.stderr
    assert lam.get_function(FunctionName=MODEL)["Code"]["ImageUri"] == f"{repository_uri}:v1"
    latest = ecs.describe_task_definition(taskDefinition=f"{MODEL}-step", include=["TAGS"])
    definition = latest["taskDefinition"]
    assert definition["revision"] == 2 and f"Fargate steps ({MODEL}-step:2) now run v1" in done.stdout
    assert definition["containerDefinitions"][0]["image"] == f"{repository_uri}:v1"
    assert definition["containerDefinitions"][0]["entryPoint"][-1] == "quetzal_deploy.runtime.cli"
    assert (definition["cpu"], definition["memory"], definition["taskRoleArn"]) == ("4096", "16384", role)
    assert latest["tags"] == [{"key": "model", "value": MODEL}]


@pytest.mark.parametrize("broken", [
    {"one": 5},
    {"one": {"Type": "Map", "Iterator": 7, "End": True}},
    {"one": {"Type": "Parallel", "Branches": [3, {"States": None}], "End": True}},
    {"one": {"Type": "Task", "Resource": ECS_RUN_TASK, "Parameters": {"Overrides": 1}, "End": True}},
])
def test_malformed_states_are_left_for_validation_to_report(settings, broken):
    states = {**broken, "far": fargate_task(step_payload("far"), End=True)}
    rendered = deployable(machine_states({"StartAt": "one", "States": states}), settings, "1")
    assert rendered["States"]["one"] == broken["one"]
    assert notebook_paths(rendered) == ["notebooks/far.ipynb"]


def test_a_fargate_time_limit_must_be_whole_seconds(settings):
    states = {"one": fargate_task(step_payload("one"), TimeoutSeconds="4h", End=True)}
    with pytest.raises(DefinitionError, match="TimeoutSeconds, its time limit, must be a whole number"):
        deployable(machine_states({"StartAt": "one", "States": states}), settings, "1")
