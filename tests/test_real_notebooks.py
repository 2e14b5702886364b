"""Notebooks written as existing quetzal models write them, through the handler's core.

Python-literal ``RETURN:`` lines merged deeply, ``end_of_notebook`` anywhere in the output,
IPython magics and shell escapes, nested ``notebooks/<group>/`` folders, the model-wide
``inputs/`` folder and ``AWS_EXECUTION_ENV``: real notebooks run in real child processes, on a
local folder standing in for the bucket.
"""

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from fixtures.bake import SRC
from quetzal_deploy.contract.params import deep_merge
from quetzal_deploy.runtime.convert import convert_folder, script_source
from quetzal_deploy.runtime.errors import NotebookError
from quetzal_deploy.runtime.handler import run_step
from quetzal_deploy.runtime.notebook import log_name, parse_returns
from quetzal_deploy.runtime.storage import FolderStorage

TEMPLATE = Path(__file__).resolve().parents[1] / "{{cookiecutter.model_name}}"
HEADER = """import json, os, sys
from pathlib import Path
argv = json.loads(sys.argv[1])
on_lambda = bool(os.environ.get("AWS_EXECUTION_ENV"))
training_folder = Path(argv["training_folder"])
"""


def write_notebook(path: Path, *cells: str) -> Path:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}")]
    notebook.cells += [nbformat.v4.new_code_cell(source) for source in cells]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    return path


@pytest.fixture
def model(tmp_path):
    """A task root (the image's code folder) and a bucket folder holding scenario ``base/``."""
    root, bucket = tmp_path / "task", tmp_path / "bucket"
    (bucket / "base" / "inputs").mkdir(parents=True)
    (bucket / "base" / "inputs" / "params.json").write_text('[{"category": "general", "params": []}]')
    (root / "notebooks").mkdir(parents=True)
    return root, bucket


def step(model, tmp_path, notebook_path, launcher_arg=None, **options):
    root, bucket = model
    event = {"notebook_path": notebook_path, "scenario_path_S3": "base/",
             "launcher_arg": launcher_arg or {"training_folder": "/tmp",
                                              "params": {"general": {"speed": 30}}},
             "metadata": {"user_email": "modeller@example.org"}}
    return run_step(event, storage=FolderStorage(bucket), workdir=tmp_path / "work", task_root=root,
                    time_left_s=120, image_tag="test", out=lambda line: None, **options)


def test_python_literal_return_is_merged_deeply(model, tmp_path):
    """As existing models print it; the Map after it still finds training_folder and the params."""
    write_notebook(model[0] / "notebooks" / "prep.ipynb", HEADER,
                   "d = {'launcher_arg': {'params': {'exec_id': [0, 1]}}}\nprint('RETURN:', d)",
                   "print('RETURN:', {'done': (True, None), 'launcher_arg': {'params': {'general': "
                   "{'mode': 'fast'}}}})")

    event = step(model, tmp_path, "notebooks/prep.ipynb").event

    assert event["launcher_arg"] == {"training_folder": "/tmp", "params": {
        "general": {"speed": 30, "mode": "fast"}, "exec_id": [0, 1]}}
    assert event["done"] == [True, None] and event["scenario_path_S3"] == "base/"


@pytest.mark.parametrize("line, reason", [
    ("RETURN: {'a': __import__('os').getcwd()}", "neither JSON nor a Python literal"),
    ("RETURN: {'a': {1, 2}}", "neither JSON nor a Python literal"),
    ("RETURN: done", "neither JSON nor a Python literal"),
    ("RETURN: [1, 2]", "must be a JSON object or a Python dict"),
])
def test_return_that_is_neither_json_nor_a_dict_literal_names_notebook_and_line(line, reason):
    with pytest.raises(NotebookError) as caught:
        parse_returns([line.removeprefix("RETURN:").strip()], "notebooks/g/prep.ipynb")
    assert str(caught.value).startswith("notebooks/g/prep.ipynb ")
    assert reason in str(caught.value) and line[8:30] in str(caught.value)


def test_deep_merge_replaces_lists_and_scalars_and_keeps_the_rest():
    base = {"a": {"b": 1, "c": [1]}, "d": 2}
    assert deep_merge(base, {"a": {"c": [2], "e": {"f": 3}}, "d": {"g": 4}}) == {
        "a": {"b": 1, "c": [2], "e": {"f": 3}}, "d": {"g": 4}}
    assert base == {"a": {"b": 1, "c": [1]}, "d": 2}


@pytest.mark.parametrize("stop", [
    "end_of_notebook",  # a bare, undefined name: its NameError names it
    "print(f'[{len(outputs)} files] end_of_notebook: nothing left to do')",
])
def test_end_of_notebook_anywhere_in_the_output_ends_the_step(model, tmp_path, stop):
    write_notebook(model[0] / "notebooks" / "early.ipynb", HEADER,
                   "outputs = training_folder / 'outputs'\noutputs.mkdir()\n"
                   "(outputs / 'partial.csv').write_text('a\\n1\\n')\nprint('RETURN:', {'x': 1})",
                   stop, "raise RuntimeError('never reached')")

    result = step(model, tmp_path, "notebooks/early.ipynb")

    assert result.event["x"] == 1
    bucket = model[1] / "base"
    assert (bucket / "outputs" / "partial.csv").read_text() == "a\n1\n"
    assert "end_of_notebook" in (bucket / "logs" / "early.txt").read_text()


def test_nested_notebook_runs_in_its_folder_and_logs_under_its_group(model, tmp_path):
    root = model[0]
    write_notebook(root / "notebooks" / "pt" / "assignment" / "run.ipynb", HEADER,
                   "sys.path.insert(0, '..')\nfrom helpers import SPEED\n"
                   "print('cwd', Path.cwd().name, 'speed', SPEED)")

    (root / "notebooks" / "pt" / "helpers.py").write_text("SPEED = 42\n")

    result = step(model, tmp_path, "notebooks/pt/assignment/run.ipynb")

    assert result.log_key == "base/logs/pt/assignment/run.txt"
    assert "cwd assignment speed 42" in (model[1] / result.log_key).read_text()
    assert log_name("notebooks/prep.ipynb") == "logs/prep.txt"
    assert log_name("model/prep.py") == "logs/model/prep.txt"


def test_model_wide_inputs_are_copied_first_and_scenario_files_win(model, tmp_path):
    root, bucket = model
    (root / "inputs" / "zones").mkdir(parents=True)
    (root / "inputs" / "zones" / "zones.csv").write_text("zone\n1\n")
    (root / "inputs" / "params.json").write_text("model-wide: overridden by the scenario's")
    write_notebook(root / "notebooks" / "reads.ipynb", HEADER,
                   "inputs = training_folder / 'inputs'\n"
                   "print('RETURN:', {'zones': (inputs / 'zones' / 'zones.csv').read_text(), "
                   "'params': json.loads((inputs / 'params.json').read_text())})")

    result = step(model, tmp_path, "notebooks/reads.ipynb")

    assert result.event["zones"] == "zone\n1\n"
    assert result.event["params"] == [{"category": "general", "params": []}]
    assert result.downloaded == 3
    assert not (bucket / "base" / "inputs" / "zones").exists()  # inputs/ is never uploaded


def test_extra_env_reaches_the_notebook(model, tmp_path):
    write_notebook(model[0] / "notebooks" / "env.ipynb", HEADER,
                   "print('RETURN:', {'env': os.environ.get('AWS_EXECUTION_ENV')})")
    result = step(model, tmp_path, "notebooks/env.ipynb",
                  extra_env={"AWS_EXECUTION_ENV": "AWS_Lambda_python3.13"})
    assert result.event["env"] == "AWS_Lambda_python3.13"


MAGICS = [
    "%matplotlib inline\n%config InlineBackend.figure_format = 'retina'",
    "%load_ext autoreload\n%autoreload 2\nimport json",
    "if True:\n    %matplotlib inline\nprint('after the magics')",
    "%%time\nprint('timed cell')",
]


def test_display_magics_are_dropped_and_the_script_runs(tmp_path):
    notebook = write_notebook(tmp_path / "notebooks" / "magics.ipynb", *MAGICS)

    source = script_source(notebook)

    kept = [line for line in source.splitlines() if "pass  # dropped: %" not in line]
    assert not [line for line in kept if "%" in line], source
    assert source.count("# dropped: %") == 6
    done = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["after the magics", "timed cell"]


def test_display_prints_in_the_script_and_an_import_of_it_still_wins(tmp_path):
    """Notebooks call Jupyter's ``display()`` builtin; a script has no such name."""
    shown = write_notebook(tmp_path / "notebooks" / "shown.ipynb", "display({'trips': 3}, 'ok')")
    done = subprocess.run([sys.executable, "-c", script_source(shown)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "{'trips': 3} ok\n"
    imported = write_notebook(tmp_path / "notebooks" / "imported.ipynb",
                              "from pprint import pprint as display\ndisplay('kept')")
    done = subprocess.run([sys.executable, "-c", script_source(imported)], capture_output=True, text=True)
    assert done.stdout == "'kept'\n", done.stderr


def test_shell_escapes_and_other_magics_are_refused_with_cell_and_fix(tmp_path):
    write_notebook(tmp_path / "notebooks" / "g" / "shell.ipynb",
                   "import os\n!pip install geopandas", "%run ../common.ipynb",
                   "files = !ls\n%cd ..", "%%bash\necho hi", "x = 1 % 2\nprint(x != 3)")

    with pytest.raises(NotebookError) as caught:
        convert_folder(tmp_path / "notebooks")

    message = str(caught.value)
    assert message.startswith("notebooks/g/shell.ipynb uses IPython syntax")
    expected = [
        "cell 2, line 2: `!pip install geopandas` is IPython syntax a script cannot run. "
        "Fix: add the package to requirements.txt",
        "cell 3, line 1: `%run ../common.ipynb` is IPython syntax a script cannot run. Fix: move "
        "the shared code to a .py module",
        "cell 4, line 1: `files = !ls` is IPython syntax a script cannot run. Fix: run the command "
        "with subprocess.run",
        "cell 4, line 2: `%cd ..` is IPython syntax a script cannot run. Fix: use os.chdir",
        "cell 5, line 1: `%%bash` is IPython syntax a script cannot run. Fix: run the command",
    ]
    for part in expected:
        assert f"notebooks/g/shell.ipynb, {part}" in message, message
    assert "cell 6" not in message and "%matplotlib" in message  # the dropped ones are listed
    assert not (tmp_path / "notebooks" / "g" / "shell.py").exists()


def test_build_conversion_covers_every_depth_and_skips_checkpoints(tmp_path):
    notebooks = tmp_path / "notebooks"
    write_notebook(notebooks / "prep.ipynb", "print('prep')")
    write_notebook(notebooks / "pt" / "road" / "assign.ipynb", "%matplotlib inline\nprint('assign')")
    write_notebook(notebooks / "pt" / ".ipynb_checkpoints" / "assign-checkpoint.ipynb", "!ls")

    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, "-m", "quetzal_deploy.runtime.convert", "notebooks"],
                          cwd=tmp_path, capture_output=True, text=True, env=env)

    assert done.returncode == 0, done.stderr
    assert "Converted 2 notebook(s)" in done.stdout
    assert (notebooks / "prep.py").is_file() and (notebooks / "pt" / "road" / "assign.py").is_file()
    write_notebook(notebooks / "pt" / "bad.ipynb", "!pip install x")
    failed = subprocess.run([sys.executable, "-m", "quetzal_deploy.runtime.convert", "notebooks"],
                            cwd=tmp_path, capture_output=True, text=True, env=env)
    assert failed.returncode == 1 and failed.stderr.startswith("ERROR: notebooks/pt/bad.ipynb")
    assert "Traceback" not in failed.stderr


def test_notebook_with_a_shell_escape_fails_the_step_before_running(model, tmp_path):
    write_notebook(model[0] / "notebooks" / "pip.ipynb", HEADER, "!pip install pandas")
    with pytest.raises(NotebookError, match=r"pip.ipynb, cell 3, line 1: `!pip install pandas`"):
        step(model, tmp_path, "notebooks/pip.ipynb")
    assert "requirements.txt" in (model[1] / "base" / "logs" / "pip.txt").read_text()
