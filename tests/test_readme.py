"""The README's first two commands are the project's promise: keep them true."""

import os
import re
import subprocess
import sys
from pathlib import Path

from fixtures.bake import TEMPLATE

README = (TEMPLATE / "README.md").read_text(encoding="utf-8")
COMMANDS = re.findall(r"```\n(.+?)\n```", README)
MAIN_JOB = ("bash .ci/setup.sh && python3 -m cookiecutter . --no-input -f -o build "
            "&& cd build/quetzal-test && python3 -m invoke run --local base")
TESTS = "bash .ci/setup.sh && python3 -m pytest -n 2 --dist loadgroup"


def test_readme_opens_with_the_main_job_and_the_tests():
    assert COMMANDS[:2] == [MAIN_JOB, TESTS]


def test_ci_runs_the_readme_test_command_exactly():
    ci = (TEMPLATE / ".ci" / "run").read_text(encoding="utf-8")
    assert TESTS in ci.splitlines()


def fresh_machine_environment(home: Path) -> dict:
    """No AWS variables and no git identity, as on a machine just set up."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GIT_", "QUETZAL_"))}
    env.update(HOME=str(home), GIT_CONFIG_NOSYSTEM="1", AWS_EC2_METADATA_DISABLED="true")
    return env


def test_main_job_bakes_and_runs_the_pipeline_locally(tmp_path):
    """The main job after set-up, with the build folder moved to a temporary one."""
    env = fresh_machine_environment(tmp_path / "home")
    (tmp_path / "home").mkdir()
    bake = subprocess.run(
        [sys.executable, "-m", "cookiecutter", ".", "--no-input", "-f", "-o", str(tmp_path)],
        cwd=TEMPLATE, capture_output=True, text=True, env=env,
    )
    assert bake.returncode == 0, bake.stderr
    repo = Path(tmp_path, "quetzal-test")
    run = subprocess.run([sys.executable, "-m", "invoke", "run", "--local", "base"], cwd=repo,
                         capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Run SUCCEEDED" in run.stdout
    outputs = list((repo / ".quetzal" / "runs").glob("*/bucket/base/outputs/*_summary.csv"))
    assert {p.name for p in outputs} == {"preparation_summary.csv", "assignment_summary.csv"}
