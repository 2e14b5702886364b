"""The model's own checks: settings, pipeline definition, and every notebook on the base scenario."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from quetzal_deploy.pipeline.definition import load_definition, notebook_paths
from quetzal_deploy.runtime.convert import script_source
from quetzal_deploy.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
DEFINITION = load_definition(ROOT / "step-functions.json")
NOTEBOOKS = notebook_paths(DEFINITION)


def test_settings_load():
    settings = load_settings(ROOT)
    assert settings.bucket == settings.model_name
    assert 128 <= settings.memory_mb <= 10240


def test_every_step_has_its_notebook():
    assert NOTEBOOKS, "step-functions.json invokes no notebook"
    missing = [path for path in NOTEBOOKS if not (ROOT / path).is_file()]
    assert not missing


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebook_runs_on_base_scenario(notebook, tmp_path):
    """Converted as the image build converts it, with the Lambda's AWS_EXECUTION_ENV set."""
    scenario = tmp_path / "base"
    shutil.copytree(ROOT / "scenarios" / "base", scenario)
    script_path = tmp_path / "step.py"
    script_path.write_text(script_source(ROOT / notebook, notebook), encoding="utf-8")
    argv = json.dumps({"training_folder": str(scenario), "params": {}})
    env = {**os.environ, "AWS_EXECUTION_ENV": load_settings(ROOT).execution_env}
    done = subprocess.run(
        [sys.executable, str(script_path), argv],
        cwd=ROOT / Path(notebook).parent, capture_output=True, text=True, timeout=300, env=env,
    )
    assert done.returncode == 0, done.stderr
    outputs = list((scenario / "outputs").iterdir())
    assert outputs, f"{notebook} wrote no outputs"
