"""The task boundary (``quetzal_task``) as users meet it, through ``invoke`` in a baked repo: every
task's ``--help``, one line for an unexpected error, ``--debug`` / ``QUETZAL_DEBUG=1``."""

import inspect

import pytest

from fixtures.tasks import run_task
from quetzal_deploy.tasks import ns
from quetzal_deploy.tasks.common import ISSUES

TASKS = sorted(ns.task_names)
# A model's own task, decorated as the package's are: it stands in for a bug of the package, which a
# test cannot plant in the package itself without a fake.
BROKEN_TASK = '''
from quetzal_deploy.tasks.common import quetzal_task


@quetzal_task
def broken(settings):
    """Read a key the settings do not have."""
    return {}["missing-" + settings.model_name]


ns.add_task(broken)
'''
NO_DEBUG = {"QUETZAL_DEBUG": "", "INVOKE_DEBUG": ""}


@pytest.mark.parametrize("name", TASKS)
def test_every_task_shows_its_help_after_its_name(default_bake, name):
    """``invoke <task> --help`` prints the task's help and runs nothing, positional argument or not
    (``invoke run --help`` used to ask for AWS credentials, ``upload-scenarios --help`` for a
    scenario named --help)."""
    done = run_task(default_bake, name, "--help", env={"AWS_PROFILE": "no-such-profile"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"Usage: inv[oke] [--core-opts] {name} ")
    assert inspect.getdoc(ns[name]).split("\n")[0][:40] in " ".join(done.stdout.split())
    assert done.stderr == ""


def test_a_positional_task_shows_its_help_with_its_options_given(default_bake):
    done = run_task(default_bake, "upload-scenarios", "--dry-run", "-h")
    assert done.returncode == 0, done.stderr
    assert "--with-outputs" in done.stdout and done.stderr == ""


def test_task_bodies_take_only_what_they_use():
    """No body takes invoke's context; --profile/--region come from the decorator, not each body."""
    bodies = {name: inspect.signature(inspect.unwrap(ns[name].body)).parameters for name in TASKS}
    assert [name for name, parameters in bodies.items() if "c" in parameters] == []
    with_profile = [name for name, parameters in bodies.items() if "profile" in parameters]
    assert with_profile == ["doctor"]  # it checks the profile itself, before any settings exist
    assert "region" in inspect.signature(ns["run"].body).parameters  # ... and the options still exist


@pytest.fixture
def broken_repo(baked_repo):
    with (baked_repo / "tasks.py").open("a", encoding="utf-8") as tasks:
        tasks.write(BROKEN_TASK)
    return baked_repo


def test_an_unexpected_error_is_one_line_saying_it_is_a_bug(broken_repo):
    done = run_task(broken_repo, "broken", env=NO_DEBUG)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("ERROR: `invoke broken` stopped on an unexpected KeyError: "
                               "'missing-quetzal-test'")
    assert "is a bug in quetzal-deploy" in lines[0] and ISSUES in lines[0] and "--debug" in lines[0]


@pytest.mark.parametrize("how", ["QUETZAL_DEBUG=1", "invoke --debug"])
def test_debug_shows_the_traceback_and_the_log(broken_repo, how):
    if how == "QUETZAL_DEBUG=1":
        done = run_task(broken_repo, "broken", env={"QUETZAL_DEBUG": "1"})
    else:
        done = run_task(broken_repo, "--debug", "broken", env=NO_DEBUG)
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert 'return {}["missing-" + settings.model_name]' in done.stderr  # the failing line, in tasks.py
    assert "invoke broken" in done.stderr and "settings: Settings(" in done.stderr  # the log lines
    assert done.stderr.rstrip().splitlines()[-1].startswith("ERROR: `invoke broken` stopped")
    assert "botocore" not in done.stderr


def test_a_task_logs_nothing_without_debug(default_bake):
    quiet = run_task(default_bake, "config", env=NO_DEBUG)
    assert quiet.returncode == 0 and quiet.stderr == ""
    loud = run_task(default_bake, "config", env={"QUETZAL_DEBUG": "1"})
    assert loud.returncode == 0 and "DEBUG quetzal_deploy" in loud.stderr
    assert loud.stdout == quiet.stdout


def test_debug_shows_which_aws_endpoint_and_clients_a_task_uses(aws, baked_repo):
    done = run_task(baked_repo, "executions", env={"QUETZAL_DEBUG": "1"})
    assert f"AWS session: profile (the chain's), region ca-central-1, endpoint {aws}" in done.stderr
    assert "AWS client: stepfunctions" in done.stderr
    assert done.stderr.rstrip().splitlines()[-1].startswith("ERROR: ")  # no state machine: a known error
