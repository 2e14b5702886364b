"""Run parameters (``contract/params.py``, their one home): the front end's params.json read
robustly, ``--params`` nested or flat, what a notebook reads."""

import json

import pytest
from test_run_local import invoke, run_folder, write_notebook

from quetzal_deploy.contract.params import (
    ParamsError,
    checked_entries,
    front_end_params,
    load_overrides,
    merge_params,
    params_file_entries,
    run_params,
    scenario_params,
)

FRONT_END = [
    {"info": "Parameters of the model."},
    {"category": "general", "params": [
        {"name": "speed", "text": "speed", "value": 20, "type": "Number"},
        {"name": "label", "text": "label", "value": "base", "type": "String"}]},
    {"category": "fast", "model": ["fast"], "params": [{"name": "boost", "value": 2, "type": "Number"}]},
    {"variants": ["2030", "2040"], "choices": ["2030", "2040"], "model": "fast"},
]


def test_front_end_entries_give_the_chosen_variant():
    entries = checked_entries(FRONT_END, "params.json")
    assert front_end_params(entries, "default") == ({"general": {"speed": 20, "label": "base"}}, [])
    assert front_end_params(entries, "fast") == ({"fast": {"boost": 2}}, ["2030", "2040"])


@pytest.mark.parametrize("overrides, expected", [
    ({"general": {"speed": 35}}, {"general": {"speed": 35, "label": "base"}}),
    ({"speed": 35, "exec_id": [0, 1]}, {"general": {"speed": 20, "label": "base"}, "speed": 35,
                                        "exec_id": [0, 1]}),
])
def test_overrides_nested_or_flat_are_merged_deeply(overrides, expected):
    defaults, _ = front_end_params(FRONT_END, "default")
    assert merge_params(defaults, overrides) == expected


@pytest.mark.parametrize("entries, message", [
    ([1], "entry 1 (1) is not a category, info or variants object"),
    ({"general": {}}, "must be an array of entries"),
    ([{"category": "general"}], "entry 1 (category 'general') needs 'params'"),
    ([{"category": "general", "params": [{"value": 3}]}], '{"value": 3} is not a parameter'),
    ([{"info": "x"}, {"name": "speed"}], "entry 2"),
    ([{"info": "x", "model": 3}], "'model' that is not a name"),
    ([{"variants": "2030"}], "'variants' that is not a list"),
])
def test_other_shapes_are_clear_errors(entries, message):
    with pytest.raises(ParamsError, match="^scenarios/base/inputs/params.json") as caught:
        checked_entries(entries, "scenarios/base/inputs/params.json")
    assert message in str(caught.value)


@pytest.mark.parametrize("make, message", [
    (lambda path: path.mkdir(), "is a folder; name a JSON file"),
    (lambda path: path.write_bytes(b'{"label": "\xe9t\xe9"}'), "is not UTF-8 text (byte 11)"),
    (lambda path: path.write_text('{"a": '), "is not valid JSON (line 1, column 7"),
    (lambda path: path.write_text("[1]"), "must be a JSON object"),
])
def test_bad_params_files_are_clear_errors(tmp_path, make, message):
    path = tmp_path / "params.json"
    make(path)
    with pytest.raises(ParamsError, match=f"^--params file {path}") as caught:
        load_overrides(path)
    assert message in str(caught.value)
    with pytest.raises(ParamsError, match=f"^Parameters file {path}"):
        if path.is_dir() or not path.read_bytes().startswith(b"["):
            params_file_entries(path)
        else:
            raise ParamsError(f"Parameters file {path}")  # "[1]" is checked above


def test_absent_params_file_is_no_parameter(tmp_path):
    assert params_file_entries(tmp_path / "params.json") == []
    assert scenario_params(tmp_path, "default") == ({}, [])


def test_a_scenario_folder_gives_the_params_of_its_inputs_for_the_chosen_variant(tmp_path):
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "params.json").write_text(json.dumps(FRONT_END))
    assert scenario_params(tmp_path, "fast") == ({"fast": {"boost": 2}}, ["2030", "2040"])
    (tmp_path / "inputs" / "params.json").write_text("[1]")
    with pytest.raises(ParamsError, match="entry 1 .1. is not a category"):
        scenario_params(tmp_path, "default")


ECHO = '(outputs / "params.json").write_text(json.dumps(argv["params"]))\n'


def test_run_local_takes_flat_params_and_refuses_a_broken_params_json(baked_repo, tmp_path):
    write_notebook(baked_repo, "preparation", ECHO)
    params = tmp_path / "flat.json"
    params.write_text(json.dumps({"pt_speed_kmh": 33, "exec_id": [0, 1]}))

    done = invoke(baked_repo, tmp_path, "run", "--local", "base", "--params", str(params))

    assert done.returncode == 0, done.stdout + done.stderr
    sent = json.loads((run_folder(baked_repo) / "bucket/base/outputs/params.json").read_text())
    assert sent["pt_speed_kmh"] == 33 and sent["exec_id"] == [0, 1]
    assert sent["general"]["pt_speed_kmh"] == 20  # the front end's defaults still sent

    (baked_repo / "scenarios/base/inputs/params.json").write_text("[1]")
    broken = invoke(baked_repo, tmp_path, "run", "--local", "base")
    assert broken.returncode == 1
    assert (f"ERROR: {baked_repo / 'scenarios/base/inputs/params.json'}: entry 1 (1) is not a category, "
            "info or variants object") in broken.stderr  # the contract's error, shown as ours
    assert "Traceback" not in broken.stderr and "This is a bug" not in broken.stderr
    folder = invoke(baked_repo, tmp_path, "run", "--local", "base", "--params", str(tmp_path))
    assert folder.returncode == 1
    assert f"ERROR: --params file {tmp_path} is a folder; name a JSON file" in folder.stderr
    assert "This is a bug" not in folder.stderr


def test_a_notebook_sees_the_params_a_run_sends(tmp_path):
    """run_params (the template notebook's reader): the chosen variant's categories only (another
    variant's same-named category once overwrote the default's), then the run's overrides."""
    path = tmp_path / "params.json"
    path.write_text(json.dumps([*FRONT_END, {"category": "general", "model": "fast",
                                              "params": [{"name": "speed", "value": 90}]}]))
    assert run_params(path) == {"general": {"speed": 20, "label": "base"}}
    assert run_params(path, {"general": {"speed": 35}, "exec_id": 1}) == {
        "general": {"speed": 35, "label": "base"}, "exec_id": 1}
    assert run_params(path, choice="fast") == {"general": {"speed": 90}, "fast": {"boost": 2}}
    assert run_params(tmp_path / "absent.json", {"speed": 1}) == {"speed": 1}


def test_a_notebook_reading_a_broken_params_file_is_told_which_entry(tmp_path):
    """run_params checks the file as the tools do (one reader): the entry, not a KeyError."""
    path = tmp_path / "params.json"
    path.write_text('[{"category": "general"}]')
    with pytest.raises(ParamsError, match=r"entry 1 \(category 'general'\) needs 'params'"):
        run_params(path)


def test_notebooks_baked_before_the_move_still_import_run_params():
    """Baked ``notebooks/*.ipynb`` import ``quetzal_deploy.runtime.params.run_params`` (the template's
    import until params moved to the contract): the old path is the same reader."""
    from quetzal_deploy.runtime.params import run_params as old_path

    assert old_path is run_params
