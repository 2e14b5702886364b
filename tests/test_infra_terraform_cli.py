"""quetzal_deploy.infra.terraform.Terraform: how it calls the CLI and how it fails.

The commands go to a recording runner (the class takes a
``subprocess.run``-compatible runner) or, for the failure, to a real file that cannot run.
"""

import subprocess

import pytest

from quetzal_deploy.infra.terraform import Terraform, TerraformError


class Recorder:
    def __init__(self, returncodes):
        self.calls, self.returncodes = [], list(returncodes)

    def __call__(self, command, **options):
        self.calls.append((command, options))
        return subprocess.CompletedProcess(command, self.returncodes.pop(0), "", "boom")


def test_commands_are_argument_lists_run_in_the_folder_without_a_shell(tmp_path):
    runner = Recorder([1, 0])
    terraform = Terraform(tmp_path, executable=r"C:\tools\terraform.exe", env={"AWS_PROFILE": "p"},
                          runner=runner)
    terraform.use_workspace("quetzal-paris")
    assert [command for command, _ in runner.calls] == [
        [r"C:\tools\terraform.exe", "workspace", "select", "quetzal-paris"],
        [r"C:\tools\terraform.exe", "workspace", "new", "quetzal-paris"],
    ]
    for _, options in runner.calls:
        assert options["cwd"] == tmp_path and "shell" not in options
        assert options["env"]["AWS_PROFILE"] == "p" and options["env"]["TF_IN_AUTOMATION"] == "1"


def test_quiet_failure_carries_terraform_message(tmp_path):
    terraform = Terraform(tmp_path, executable="terraform", runner=Recorder([1]))
    expected = "`terraform workspace select default` failed with exit code 1: boom"
    with pytest.raises(TerraformError, match=expected):
        terraform.delete_workspace("quetzal-paris")


def test_plan_tells_changes_from_no_changes(tmp_path):
    runner = Recorder([2, 0, 1])
    terraform = Terraform(tmp_path, executable="terraform", runner=runner)
    assert terraform.plan("m.tfplan", "m.tfvars", {"create_lambda": "false"}) is True
    assert terraform.plan("m.tfplan", "m.tfvars", {}) is False
    with pytest.raises(TerraformError, match="see its output above"):
        terraform.plan("m.tfplan", "m.tfvars", {})
    assert runner.calls[0][0] == ["terraform", "plan", "-input=false", "-detailed-exitcode",
                                  "-var-file=m.tfvars", "-var=create_lambda=false", "-out=m.tfplan"]


def test_an_executable_that_cannot_run_is_a_clear_error(tmp_path):
    not_executable = tmp_path / "terraform"
    not_executable.write_text("not a program")
    terraform = Terraform(tmp_path, executable=str(not_executable))
    with pytest.raises(TerraformError, match="could not run .*Install Terraform"):
        terraform.init()


class Terminal:
    def isatty(self):
        return True


def test_no_colour_codes_when_the_output_is_not_a_terminal(tmp_path, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TF_CLI_ARGS_plan", "-parallelism=4")
    terraform = Terraform(tmp_path, executable="terraform")  # pytest's stdout is no terminal
    assert terraform.env["TF_CLI_ARGS_plan"] == "-no-color -parallelism=4"
    assert terraform.env["TF_CLI_ARGS_workspace_new"] == terraform.env["TF_CLI_ARGS_apply"] == "-no-color"


def test_colour_on_a_terminal_unless_no_color_is_set(tmp_path, monkeypatch):
    monkeypatch.setattr("quetzal_deploy.infra.terraform.sys.stdout", Terminal())
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("TF_CLI_ARGS_apply", raising=False)
    assert "TF_CLI_ARGS_apply" not in Terraform(tmp_path, executable="terraform").env
    monkeypatch.setenv("NO_COLOR", "1")
    assert Terraform(tmp_path, executable="terraform").env["TF_CLI_ARGS_apply"] == "-no-color"
