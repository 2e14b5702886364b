"""The front end's (Quenedi's) rules, from files shaped as it writes and reads them.

- Scenario names: it accepts any name without ``/`` or ``#`` that is not ``_common``; every flow
  here accepts the same names (one check, ``runtime.names``), as key parts and folder names.
- GeoJSON layers: it refuses one whose ``crs.properties.name`` is not CRS84 / EPSG:4326; the
  template's samples carry it, and runs warn per output layer without it.
- ``info.json``: it reads ``description``, ``model_tag``, ``last_modified_date`` (parsed by
  JavaScript's ``Date``) and ``last_modified_email``.

The end-to-end test drives a scenario named ``scénario d'été`` through upload, local run and
download, against moto server over HTTP.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import unicodedata
from datetime import datetime
from pathlib import Path, PurePosixPath

import pytest
from cookiecutter.exceptions import FailedHookException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_run_local import invoke as invoke_local
from test_run_local import lambda_task, step_payload, write_definition, write_notebook

from fixtures.bake import bake
from quetzal_deploy.contract.layers import (
    CRS84,
    EDGE_BYTES,
    FRONT_END_CRS,
    crs_warnings,
    file_reader,
    layer_crs,
)
from quetzal_deploy.pipeline.definition import machine_states, state_objects
from quetzal_deploy.pipeline.front_steps import display_warnings, front_end_steps, notebook_step
from quetzal_deploy.runtime.errors import InvalidEvent
from quetzal_deploy.runtime.event import scenario_prefix
from quetzal_deploy.runtime.names import InvalidScenarioName, check_scenario_name
from quetzal_deploy.runtime.storage import FolderStorage

TEMPLATE = Path(__file__).resolve().parents[1] / "{{cookiecutter.model_name}}"
SUMMER = "scénario d'été"
EMAIL = "modeller@example.com"
ACCEPTED = [SUMMER, "A&B", "(test)", "base copy", "`touch x`", "$(touch x)", "a;b|c", "-rf", "x,y",
            "'", '"', "*", "~", " ", ".hidden", "_common2", "back\\slash", "日本語", "x" * 200]
REFUSED = {
    "": "cannot be empty", ".": "'.' or '..'", "..": "'.' or '..'", "_common": "reserved",
    "a/b": "cannot contain '/'", "base/inputs": "cannot contain '/'", "a#b": "cannot contain '#'",
    "a\nb": "control characters", "a\x00b": "control characters", "a\x7f": "control characters",
    "a\x85": "control characters", "a\u2028b": "line breaks", "é" * 101: "at most 200 bytes",
    "x" * 300: "at most 200 bytes in UTF-8 (this one has 300)",
}
PROPERTY_EXAMPLES = 400


def front_end_accepts(name: str) -> bool:
    """The front end's own rule (ScenariosExplorer's form): required, no '/', no '#', not _common."""
    return name != "" and "/" not in name and "#" not in name and name != "_common"


def usable_segment(name: str) -> bool:
    """What a folder name and a key part need on top of it."""
    return (name not in {".", ".."} and len(name.encode("utf-8", "surrogatepass")) <= 200
            and not any(unicodedata.category(c) in {"Cc", "Zl", "Zp", "Cs"} for c in name))


@pytest.mark.parametrize("name", ACCEPTED)
def test_front_end_names_are_accepted_by_every_check(name):
    assert check_scenario_name(name) == name
    assert scenario_prefix(f"{name}/") == f"{name}/"


@pytest.mark.parametrize("name", REFUSED, ids=[repr(n)[:30] for n in REFUSED])
def test_unusable_names_are_refused_saying_why(name):
    with pytest.raises(InvalidScenarioName, match=re.escape(REFUSED[name])):
        check_scenario_name(name)
    with pytest.raises(InvalidEvent, match="scenario folder like 'base/'"):
        scenario_prefix(f"{name}/")


@pytest.mark.parametrize("prefix", ["base/inputs/", "/base/", "base//", "a/b/", "../base"])
def test_event_takes_exactly_one_scenario_folder(prefix):
    with pytest.raises(InvalidEvent, match="one name, ending with '/' when it has one"):
        scenario_prefix(prefix)


def test_a_bare_name_is_that_scenario_folder():
    """The microservice screens send a call id without the trailing '/'."""
    assert scenario_prefix("0f1e2d3c-aaaa-4bbb-8ccc-123456789abc") == "0f1e2d3c-aaaa-4bbb-8ccc-123456789abc/"


def test_scenario_names_property(tmp_path):
    """For any text: accepted exactly when the front end accepts it and it is a usable segment;
    an accepted name is one path segment, a folder that can be made, and the event's prefix."""
    seen = {"accepted": 0, "refused": 0}
    alphabet = st.one_of(st.characters(codec="utf-8"), st.sampled_from("/#._\x00\n\u2028 é'&()"))

    @settings(max_examples=PROPERTY_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.one_of(st.text(alphabet, max_size=30), st.sampled_from(["_common", ".", "..", "x" * 201]),
                     st.text(st.characters(codec="utf-8"), min_size=60, max_size=80).map(lambda t: t * 3)))
    def check(name):
        expected = front_end_accepts(name) and usable_segment(name)
        try:
            accepted = check_scenario_name(name) == name
        except InvalidScenarioName:
            accepted = False
        assert accepted is expected, name
        seen["accepted" if accepted else "refused"] += 1
        if accepted:
            assert PurePosixPath(f"{name}/inputs/params.json").parts[0] == name
            folder = tmp_path / name
            folder.mkdir(exist_ok=True)
            assert folder.parent == tmp_path and folder.name == name
            assert scenario_prefix(f"{name}/") == f"{name}/"

    check()
    print(f"scenario names property: {seen['accepted']} accepted, {seen['refused']} refused")
    assert seen["accepted"] >= PROPERTY_EXAMPLES // 10 and seen["refused"] >= PROPERTY_EXAMPLES // 10


# ---- GeoJSON CRS -------------------------------------------------------------------------------

def geojson(crs: dict | None, features: int = 1, crs_last: bool = False) -> bytes:
    feature = {"type": "Feature", "properties": {"index": "n0", "note": "x" * 50},
               "geometry": {"type": "Point", "coordinates": [-73.5, 45.5]}}
    layer = {"type": "FeatureCollection", "features": [feature] * features}
    if crs is not None:
        layer = {**layer, "crs": crs} if crs_last else {"type": layer["type"], "crs": crs, **layer}
    return json.dumps(layer, indent=1).encode()


def named(name: str) -> dict:
    return {"type": "name", "properties": {"name": name}}


@pytest.mark.parametrize("features", [1, 2000], ids=["small", "large"])
@pytest.mark.parametrize("crs_last", [False, True], ids=["crs-first", "crs-last"])
@pytest.mark.parametrize("crs", [CRS84, named("EPSG:4326"), named("urn:ogc:def:crs:EPSG:4326"),
                                 named("EPSG:2154"), None],
                         ids=["crs84", "epsg", "urn-epsg", "lambert", "none"])
def test_layer_crs_reads_what_the_front_end_checks(tmp_path, crs, crs_last, features):
    path = tmp_path / "layer.geojson"
    path.write_bytes(geojson(crs, features, crs_last))
    assert (path.stat().st_size > 2 * EDGE_BYTES) is (features > 1)
    expected = crs["properties"]["name"] if crs else None
    assert layer_crs(path.stat().st_size, file_reader(path)) == expected
    warnings = crs_warnings([("outputs/layer.geojson", path.stat().st_size, file_reader(path))])
    assert bool(warnings) is (expected not in FRONT_END_CRS)
    if warnings:
        assert warnings[0].startswith("WARNING: outputs/layer.geojson: ") and "refuses" in warnings[0]


@pytest.mark.parametrize("body", [b"", b"[1, 2]", b"{not json"])
def test_unreadable_layer_is_a_warning_not_a_crash(tmp_path, body):
    path = tmp_path / "broken.geojson"
    path.write_bytes(body)
    [warning] = crs_warnings([("broken.geojson", len(body), file_reader(path))])
    assert "not a GeoJSON object" in warning


def test_every_sample_geojson_carries_the_front_end_crs():
    samples = sorted((TEMPLATE / "scenarios" / "base").rglob("*.geojson"))
    assert len(samples) == 5
    for path in samples:
        assert json.loads(path.read_text())["crs"] == CRS84, path


def test_local_run_warns_per_output_layer_without_a_crs(baked_repo, tmp_path):
    write_notebook(baked_repo, "layers", (
        f"crs = {json.dumps(CRS84)}\n"
        "point = {'type': 'Feature', 'properties': {'index': 1}, "
        "'geometry': {'type': 'Point', 'coordinates': [0, 0]}}\n"
        "(outputs / 'good.geojson').write_text(json.dumps("
        "{'type': 'FeatureCollection', 'crs': crs, 'features': [point]}))\n"
        "(outputs / 'bare.geojson').write_text(json.dumps("
        "{'type': 'FeatureCollection', 'features': [point]}))\n"
        "(outputs / 'od').mkdir()\n"
        "(outputs / 'od' / 'lambert.geojson').write_text(json.dumps({'type': 'FeatureCollection', "
        "'crs': {'type': 'name', 'properties': {'name': 'EPSG:2154'}}, 'features': [point]}))\n"))
    write_definition(baked_repo, {"layers": lambda_task(step_payload("layers"), End=True)}, "layers")

    done = invoke_local(baked_repo, tmp_path, "run", "--local", "base")

    assert done.returncode == 0, done.stdout + done.stderr
    warnings = [line for line in done.stdout.splitlines() if line.startswith("WARNING:")]
    assert warnings == [
        "WARNING: outputs/bare.geojson: it has no crs member; the front end refuses the layer. Write it "
        f"in WGS 84 with \"crs\": {json.dumps(CRS84)} (or EPSG:4326).",
        "WARNING: outputs/od/lambert.geojson: its CRS is 'EPSG:2154'; the front end refuses the layer. "
        f"Write it in WGS 84 with \"crs\": {json.dumps(CRS84)} (or EPSG:4326).",
    ]


# ---- a scenario named as the front end allows, end to end ---------------------------------------

def run_invoke(repo: Path, *args: str, answer: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=repo, input=answer,
                          env={**os.environ, "QUETZAL_USER_EMAIL": EMAIL},
                          capture_output=True, text=True, timeout=600)


def succeeded(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def front_end_date(value: str) -> datetime:
    """What JavaScript's ``new Date(value)`` accepts from ``toISOString``: 2026-11-28T09:45:00.123Z."""
    assert len(value) == 24 and value.endswith("Z") and value[19] == ".", value
    return datetime.fromisoformat(value)


def test_scenario_named_as_the_front_end_allows_is_uploaded_run_and_downloaded(baked_repo, boto):
    bucket = "quetzal-test"
    s3 = boto.client("s3")
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": boto.region_name})
    s3.put_object(Bucket=bucket, Key=f"{SUMMER}/info.json", Body=json.dumps(
        {"description": "été 2030", "model_tag": "v3", "last_modified_date": "2026-01-02T03:04:05.678Z",
         "last_modified_email": "someone@front.end"}).encode())
    folder = baked_repo / "scenarios" / SUMMER
    shutil.copytree(baked_repo / "scenarios" / "base", folder)
    (folder / "info.json").write_text(json.dumps({"description": "été 2030, night buses"}))

    out = succeeded(run_invoke(baked_repo, "upload-scenarios", SUMMER))
    keys = {item["Key"] for item in s3.list_objects_v2(Bucket=bucket, Prefix=f"{SUMMER}/")["Contents"]}
    assert f"{SUMMER}/inputs/pt/links.geojson" in keys and f"{SUMMER}/styles.json" in keys
    assert f"synced to s3://{bucket}/{SUMMER}/" in out
    info = json.loads(s3.get_object(Bucket=bucket, Key=f"{SUMMER}/info.json")["Body"].read())
    assert info["description"] == "été 2030, night buses" and info["model_tag"] == "v3"
    assert info["last_modified_email"] == EMAIL and front_end_date(info["last_modified_date"]).year > 2026 - 1
    assert front_end_date(info["last_modified_date"]) > front_end_date("2026-01-02T03:04:05.678Z")
    assert "locked" in succeeded(run_invoke(baked_repo, "lock-scenario", SUMMER))
    lock = json.loads(s3.get_object(Bucket=bucket, Key="_common/lock.json")["Body"].read())
    assert lock == ["base", SUMMER]

    out = succeeded(run_invoke(baked_repo, "run", "--local", SUMMER))
    assert "Run SUCCEEDED" in out and "WARNING" not in out
    [run] = (baked_repo / ".quetzal" / "runs").iterdir()
    ran = run / "bucket" / SUMMER
    layers = sorted((ran / "outputs").glob("*.geojson"))
    assert layers and all(json.loads(p.read_text())["crs"] == CRS84 for p in layers)
    assert sorted(p.name for p in (ran / "outputs").glob("*.md")) == ["report.md"]
    report = (ran / "outputs" / "report.md").read_text()
    assert report.index("# preparation") < report.index("# assignment")
    run_info = json.loads((ran / "info.json").read_text())
    assert run_info["model_tag"] == "local" and run_info["description"] == "été 2030, night buses"
    assert run_info["last_modified_email"] == EMAIL and front_end_date(run_info["last_modified_date"])

    shutil.rmtree(folder)
    out = succeeded(run_invoke(baked_repo, "download-scenario", SUMMER))
    assert f"{SUMMER}: downloaded to" in out
    assert (folder / "inputs" / "pt" / "links.geojson").read_bytes() == \
        (baked_repo / "scenarios" / "base" / "inputs" / "pt" / "links.geojson").read_bytes()
    assert json.loads((folder / "info.json").read_text()) == info


def test_names_the_front_end_refuses_stop_every_flow_before_aws(baked_repo, aws):
    for args in (["upload-scenarios", "a#b"], ["download-scenario", "_common"], ["lock-scenario", "a/b"],
                 ["unlock-scenario", ".."], ["run", "base/inputs/"], ["run", "--local", "x" * 300]):
        done = run_invoke(baked_repo, *args)
        assert done.returncode == 1 and "is not a scenario name" in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr


# ---- _common/steps.json ----------------------------------------------------------------------------

def backend_tabs(definition: dict) -> dict[str, list[list[str]]]:
    """What the front end's backend shows per tab (read from its Step Functions walk, not copied):
    tabs 'default' + each top-level Choice's StringEquals; each shown step is a list of state names
    (a Parallel's branches row by row, a Map's Iterator states, any other state alone)."""
    tabs = ["default"] + [rule["StringEquals"] for state in definition["States"].values()
                          if state["Type"] == "Choice" for rule in state["Choices"]]
    shown = {}
    for tab in tabs:
        rows, states, current = [], definition["States"], definition["StartAt"]
        while current is not None:
            state = states[current]
            if state["Type"] == "Choice":
                current = state.get("Default") if tab == "default" else next(
                    rule["Next"] for rule in state["Choices"] if rule["StringEquals"] == tab)
                continue
            if state["Type"] == "Parallel":
                branches = [list(b["States"]) for b in state["Branches"]]
                rows += [list(row) for row in zip(*branches, strict=False)]  # the shortest branch
            elif state["Type"] == "Map":
                inner, at = state["Iterator"]["States"], state["Iterator"]["StartAt"]
                while at is not None:
                    rows.append([at])
                    at = inner[at].get("Next")
            else:
                rows.append([current])
            current = state.get("Next")
        shown[tab] = rows
    return shown


def task(notebook: str | None, **fields) -> dict:
    payload = {"notebook_path": notebook, "scenario_path_S3.$": "$.scenario_path_S3"} if notebook else {}
    return {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "f", "Payload": payload}, **fields}


FRONT_END_SHAPED = {
    "StartAt": "Authorization",
    "States": {
        "Authorization": task(None, Next="Variant"),
        "Variant": {"Type": "Choice", "Default": "preparation", "Choices": [
            {"Variable": "$.choice", "StringEquals": "pt only", "Next": "pt preparation"},
            {"Variable": "$.choice", "StringEquals": "é2030", "Next": "fan out"}]},
        "preparation": task("notebooks/1_prep/preparation.ipynb", Next="both"),
        "pt preparation": task("notebooks/1_prep/pt.ipynb", Next="both"),
        "both": {"Type": "Parallel", "Next": "fan out", "Branches": [
            {"StartAt": "road", "States": {"road": task("notebooks/2_model/road.ipynb", Next="road 2"),
                                           "road 2": task("notebooks/2_model/road2.ipynb", End=True)}},
            {"StartAt": "pt", "States": {"pt": task("notebooks/2_model/pt.ipynb", End=True)}}]},
        "fan out": {"Type": "Map", "ItemsPath": "$.launcher_arg.params.exec_id", "Next": "merge",
                    "Iterator": {"StartAt": "assignment", "States": {
                        "assignment": task("notebooks/3_assign/assignment.ipynb", Next="skim"),
                        "skim": task("notebooks/3_assign/skim.ipynb", End=True)}}},
        "merge": task("notebooks/4_end/merge.ipynb", Next="done"),
        "done": {"Type": "Succeed"},
    },
}


def test_steps_json_has_a_tab_per_variant_with_the_steps_the_backend_shows():
    published = front_end_steps(FRONT_END_SHAPED)
    shown = backend_tabs(FRONT_END_SHAPED)
    assert [entry["name"] for entry in published] == list(shown) == ["default", "pt only", "é2030"]
    states = dict(state_objects(machine_states(FRONT_END_SHAPED)))
    for entry in published:
        notebook_states = [name for row in shown[entry["name"]] for name in row
                           if notebook_step(name, states[name])]
        # Every notebook runs, "road 2" too, though the backend shows a Parallel's rows up to the
        # shortest branch only: update-steps warns about that.
        assert [s["name"] for s in entry["steps"] if s["name"] != "road 2"] == notebook_states, entry["name"]
        for step in entry["steps"]:
            assert step["path"] == states[step["name"]]["Parameters"]["Payload"]["notebook_path"]
    assert [s["name"] for s in published[0]["steps"]] == \
        ["preparation", "road", "pt", "road 2", "assignment", "skim", "merge"]
    assert [s["name"] for s in published[2]["steps"]] == ["assignment", "skim", "merge"]
    assert display_warnings(machine_states(FRONT_END_SHAPED)) == [
        "Parallel state 'both' has branches of [1, 2] states: the front end shows its steps "
        "row by row, only the first 1."]


def test_steps_json_follows_item_processor_and_survives_a_loop():
    definition = {"StartAt": "again", "States": {
        "again": {"Type": "Choice", "Default": "map", "Choices": [
            {"Variable": "$.done", "BooleanEquals": True, "Next": "end"}]},
        "map": {"Type": "Map", "Next": "again", "ItemProcessor": {
            "StartAt": "one", "States": {"one": task("notebooks/one.ipynb", End=True)}}},
        "end": {"Type": "Succeed"}}}
    assert front_end_steps(definition) == [
        {"name": "default", "steps": [{"name": "one", "path": "notebooks/one.ipynb"}]}]
    [warning] = display_warnings(machine_states(definition))
    assert "'again' has a rule without StringEquals" in warning


# ---- region --------------------------------------------------------------------------------------

def test_bake_in_another_region_than_the_front_end_says_so(tmp_path, capfd):
    bake(tmp_path / "same")
    assert "front end works in" not in capfd.readouterr().out
    repo = bake(tmp_path / "other", aws_region="eu-west-3")
    out = capfd.readouterr().out
    assert "NOTE: the model is in eu-west-3 but the front end works in ca-central-1" in out
    assert out.rstrip().endswith("or use a front end deployed in eu-west-3."), "the bake's last words"
    assert "FRONT_END_REGION=ca-central-1" in (repo / ".env").read_text()
    bake(tmp_path / "moved", aws_region="eu-west-3", front_end_region="eu-west-3")
    assert "NOTE" not in capfd.readouterr().out


def test_bake_refuses_a_front_end_region_that_does_not_exist(tmp_path):
    with pytest.raises(FailedHookException):
        bake(tmp_path, front_end_region="mars-north-1")
    assert not any(tmp_path.iterdir())


def test_doctor_warns_when_the_model_and_the_front_end_are_in_different_regions(baked_repo, aws):
    done = run_invoke(baked_repo, "doctor", "--region", "eu-west-3")
    [line] = [line for line in done.stdout.splitlines() if line.startswith("!")]
    assert line.split()[1:3] == ["front", "end"]
    assert "the model is in eu-west-3, the front end in ca-central-1" in line
    assert "fix: deploy the model in FRONT_END_REGION" in done.stdout
    (baked_repo / ".env.local").write_text("FRONT_END_REGION=eu-west-3\n")
    assert not [line for line in run_invoke(baked_repo, "doctor", "--region", "eu-west-3").stdout.splitlines()
                if line.startswith("!")]


# ---- the local stand-in for the bucket -----------------------------------------------------------

def test_folder_storage_replaces_a_file_whole_for_parallel_readers(tmp_path):
    """Parallel Map steps of a local run read the scenario while others upload theirs: as with S3,
    a reader gets the old object or the new one, never a half-copied file."""
    versions = [b"a" * 4_000_000, b"b" * 3_000_000]
    bucket, work = FolderStorage(tmp_path / "bucket"), tmp_path / "work"
    (work / "outputs").mkdir(parents=True)
    (work / "outputs" / "zones.csv").write_bytes(versions[0])
    bucket.upload_tree(work, "base/")
    target, seen, done = tmp_path / "bucket" / "base" / "outputs" / "zones.csv", set(), threading.Event()
    listed, errors = [], []

    def read_while_writing():
        try:
            while not done.is_set():
                seen.add(len(target.read_bytes()))
                listed.append(bucket.list_keys("base/"))
        except Exception as ex:  # a listing that trips over a file being written
            errors.append(ex)

    reader = threading.Thread(target=read_while_writing)
    reader.start()
    try:
        for round_ in range(30):
            (work / "outputs" / "zones.csv").write_bytes(versions[round_ % 2])
            bucket.upload_tree(work, "base/")
    finally:
        done.set()
        reader.join(timeout=60)
    assert not errors, errors
    assert all(keys == ["base/outputs/zones.csv"] for keys in listed), "a listing showed a part file"
    assert seen <= {len(v) for v in versions}, "a reader saw a partly written file"
