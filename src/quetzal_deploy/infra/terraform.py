"""The terraform CLI, run as a list of arguments (no shell), the same way on every OS."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from quetzal_deploy.errors import QuetzalError

INSTALL_HINT = (
    "Install Terraform >= 1.5 (https://developer.hashicorp.com/terraform/install, "
    "or `winget install Hashicorp.Terraform` / `brew install terraform`) and make sure "
    "`terraform` is on PATH."
)
# `terraform plan -detailed-exitcode`: 0 = no changes, 2 = changes, anything else = failure.
PLAN_CHANGES = 2
# The commands run here; TF_CLI_ARGS_<command> adds -no-color to each when output is not a terminal.
COMMANDS = ("init", "plan", "apply", "destroy", "output", "workspace_new", "workspace_select",
            "workspace_delete")

Runner = Callable[..., subprocess.CompletedProcess]
log = logging.getLogger(__name__)


class TerraformError(QuetzalError):
    """A terraform command failed or terraform is not installed."""


class Terraform:
    """Runs terraform in one working folder; ``runner`` is ``subprocess.run``-compatible."""

    def __init__(
        self,
        workdir: Path,
        *,
        executable: str | None = None,
        env: Mapping[str, str] | None = None,
        runner: Runner = subprocess.run,
    ):
        self.workdir = workdir
        self._executable = executable
        self.env = {**os.environ, "TF_IN_AUTOMATION": "1", **(env or {})}
        if not colour_wanted(self.env):
            self.env.update(without_colour(self.env))
        self.runner = runner

    @property
    def executable(self) -> str:
        if self._executable is None:
            self._executable = shutil.which("terraform")
        if self._executable is None:
            raise TerraformError(f"terraform was not found on PATH. {INSTALL_HINT}")
        return self._executable

    def call(self, args: Sequence[str], quiet: bool) -> subprocess.CompletedProcess:
        """Run ``terraform args...``; its output goes to the terminal unless ``quiet``."""
        output = subprocess.PIPE if quiet else None
        log.debug("terraform %s (in %s)", " ".join(args), self.workdir)
        try:
            return self.runner([self.executable, *args], cwd=self.workdir, env=self.env,
                               stdout=output, stderr=output, text=True, check=False)
        except OSError as ex:
            raise TerraformError(f"could not run {self.executable}: {ex}. {INSTALL_HINT}") from ex

    def run(self, *args: str, quiet: bool = False, ok_codes: Sequence[int] = (0,)) -> int:
        """Run terraform; an exit code outside ``ok_codes`` stops the flow with its message."""
        done = self.call(args, quiet)
        if done.returncode not in ok_codes:
            detail = (done.stderr or done.stdout or "").strip() if quiet else "see its output above"
            raise TerraformError(
                f"`terraform {' '.join(args)}` failed with exit code {done.returncode}: {detail}"
            )
        return done.returncode

    def succeeds(self, *args: str) -> bool:
        """Run quietly; True on exit 0 (for commands whose failure is an answer)."""
        return self.call(args, quiet=True).returncode == 0

    def init(self, backend_config: Path | None = None) -> None:
        extra = [f"-backend-config={backend_config.name}"] if backend_config else []
        self.run("init", "-input=false", *extra)

    def use_workspace(self, name: str) -> None:
        """Select the workspace ``name``, creating it when it does not exist yet."""
        if not self.succeeds("workspace", "select", name):
            self.run("workspace", "new", name)

    def has_workspace(self, name: str) -> bool:
        return self.succeeds("workspace", "select", name)

    def delete_workspace(self, name: str) -> None:
        """Delete ``name`` (terraform refuses while it still tracks resources)."""
        self.run("workspace", "select", "default", quiet=True)
        self.run("workspace", "delete", name)

    def plan(self, plan_file: str, var_file: str, variables: Mapping[str, str]) -> bool:
        """Write a plan to ``plan_file``; True when it changes anything."""
        code = self.run("plan", "-input=false", "-detailed-exitcode", f"-var-file={var_file}",
                        *var_args(variables), f"-out={plan_file}", ok_codes=(0, PLAN_CHANGES))
        return code == PLAN_CHANGES

    def apply(self, plan_file: str) -> None:
        self.run("apply", "-input=false", plan_file)

    def plan_destroy(self, plan_file: str, var_file: str, variables: Mapping[str, str]) -> None:
        """``terraform plan -destroy``: proves the provider, credentials and state work (quietly)."""
        self.run("plan", "-destroy", "-input=false", f"-var-file={var_file}", *var_args(variables),
                 f"-out={plan_file}", quiet=True)

    def destroy(self, var_file: str, variables: Mapping[str, str]) -> None:
        self.run("destroy", "-input=false", "-auto-approve", f"-var-file={var_file}",
                 *var_args(variables))

    def show_json(self, plan_file: str) -> dict:
        """A saved plan as ``terraform show -json`` describes it."""
        done = self.call(["show", "-json", plan_file], quiet=True)
        try:
            if done.returncode != 0:
                raise ValueError((done.stderr or "").strip())
            return json.loads(done.stdout)
        except ValueError as ex:
            raise TerraformError(f"`terraform show -json {plan_file}` failed: {ex}") from ex

    def outputs(self) -> dict[str, object]:
        """The root module's outputs after an apply: ``{name: value}``."""
        done = self.call(["output", "-json"], quiet=True)
        if done.returncode != 0:
            raise TerraformError(f"`terraform output -json` failed: {(done.stderr or '').strip()}")
        try:
            return {name: body.get("value") for name, body in json.loads(done.stdout or "{}").items()}
        except (ValueError, AttributeError) as ex:
            raise TerraformError(f"`terraform output -json` printed no JSON object: {ex}") from ex


def colour_wanted(env: Mapping[str, str]) -> bool:
    """Colour codes only on a terminal, and never with NO_COLOR set."""
    return sys.stdout.isatty() and not env.get("NO_COLOR")


def without_colour(env: Mapping[str, str]) -> dict[str, str]:
    """TF_CLI_ARGS_<command> values that add -no-color, keeping what the user already set."""
    found = {f"TF_CLI_ARGS_{command}": env.get(f"TF_CLI_ARGS_{command}", "") for command in COMMANDS}
    return {key: f"-no-color {value}".strip() for key, value in found.items()}


def var_args(variables: Mapping[str, str]) -> list[str]:
    return [f"-var={key}={value}" for key, value in variables.items()]
