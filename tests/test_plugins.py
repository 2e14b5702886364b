"""Plugin hooks, used by a test model for real: a baked repo with a ``quetzal_plugins.py`` written
here, driven as a user does (``invoke`` in the repo) against moto over HTTP and the Docker engine."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from fixtures.aws import REGION
from fixtures.tasks import run_task
from quetzal_deploy.plugins import PluginError, image_files, plugin_manager
from quetzal_deploy.settings import load_settings

BUCKET = "quetzal-test"  # the default bake's bucket


def write_plugins(repo: Path, source: str) -> Path:
    path = repo / "quetzal_plugins.py"
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


def failure(done) -> str:
    """The task failed with a one-line ERROR, no traceback; returns what it printed."""
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done.stdout + done.stderr


def bucket_keys(s3) -> dict[str, str]:
    listed = s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return {item["Key"]: item["ETag"] for item in listed}


CHECKS = """
    import json
    from quetzal_deploy.plugins import Refuse, Warn, hookimpl

    @hookimpl
    def quetzal_check_scenario(name, folder):
        params = json.loads((folder / "inputs" / "params.json").read_text())
        speeds = [p["value"] for entry in params for p in entry.get("params", [])
                  if p["name"] == "pt_speed_kmh"]
        if any(speed <= 0 for speed in speeds):
            return Refuse(f"pt_speed_kmh must be positive, got {speeds}")
        if not (folder / "README.md").exists():
            return Warn("no README.md describing the scenario")
"""


def set_speed(scenario: Path, speed: float) -> None:
    path = scenario / "inputs" / "params.json"
    params = json.loads(path.read_text())
    for entry in params:
        for param in entry.get("params", []):
            if param["name"] == "pt_speed_kmh":
                param["value"] = speed
    path.write_text(json.dumps(params))


def test_a_check_refuses_an_upload_and_nothing_is_sent(baked_repo, boto):
    s3 = boto.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    write_plugins(baked_repo, CHECKS)
    scenarios = baked_repo / "scenarios"
    (scenarios / "fast").mkdir()
    (scenarios / "fast" / "inputs").mkdir()
    (scenarios / "fast" / "inputs" / "params.json").write_text((scenarios / "base" / "inputs" /
                                                               "params.json").read_text())
    set_speed(scenarios / "base", 0)

    env = {"QUETZAL_USER_EMAIL": "modeller@example.com"}
    out = failure(run_task(baked_repo, "upload-scenarios", "fast,base", "--yes", env=env))
    assert ("ERROR: plugin quetzal_plugins.py refused scenario base: pt_speed_kmh must be positive, got [0]"
            in out)
    assert "Nothing was uploaded." in out
    assert "WARNING: plugin quetzal_plugins.py on scenario fast: no README.md" in out
    assert bucket_keys(s3) == {}  # not even the scenario that passed

    set_speed(scenarios / "base", 20)
    (scenarios / "base" / "README.md").write_text("The reference scenario.\n")
    done = run_task(baked_repo, "upload-scenarios", "base", "--yes", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stdout
    assert "base/README.md" in bucket_keys(s3)


AFTER_RUN = """
    import json
    from quetzal_deploy.plugins import hookimpl

    @hookimpl
    def quetzal_after_local_run(scenario, summary, settings):
        report = settings.root / "reports" / f"{scenario}.json"
        report.parent.mkdir(exist_ok=True)
        report.write_text(json.dumps({
            "status": summary.status,
            "steps": [[step.label, step.status] for step in summary.steps],
            "outputs": sorted(p.name for p in summary.outputs.glob("*")),
        }))
        if summary.succeeded:
            assert (summary.outputs / "{required}").exists(), "{required} is missing from the outputs"
"""


def test_after_a_local_run_a_hook_writes_a_report_and_can_fail_the_task(baked_repo):
    write_plugins(baked_repo, AFTER_RUN.replace("{required}", "assignment_summary.csv"))
    done = run_task(baked_repo, "run", "--local", "base")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((baked_repo / "reports" / "base.json").read_text())
    assert report["status"] == "SUCCEEDED"
    assert report["steps"] == [["preparation", "ok"], ["assignment", "ok"]]
    assert {"preparation_summary.csv", "assignment_summary.csv", "report.md"} <= set(report["outputs"])

    source = write_plugins(baked_repo, AFTER_RUN.replace("{required}", "skims.csv"))
    out = failure(run_task(baked_repo, "run", "--local", "base"))
    assert "Run SUCCEEDED" in out  # the run's own report comes first
    line = next(n for n, text in enumerate(source.read_text().splitlines(), 1) if "assert" in text)
    assert (f"ERROR: plugin quetzal_plugins.py, hook quetzal_after_local_run, raised at "
            f"quetzal_plugins.py:{line}: AssertionError: skims.csv is missing from the outputs") in out

    add_import_cell(baked_repo / "notebooks" / "preparation.ipynb", "raise ValueError('no zones')\n")
    out = failure(run_task(baked_repo, "run", "--local", "base"))
    assert "Run FAILED" in out and "ERROR" not in out  # the hook ran and did not fail the task itself
    report = json.loads((baked_repo / "reports" / "base.json").read_text())
    assert report["status"] == "FAILED" and report["steps"] == [["preparation", "failed"]]


def test_a_plugin_module_with_a_syntax_error_stops_the_task_before_it_starts(baked_repo):
    write_plugins(baked_repo, """
        from quetzal_deploy.plugins import hookimpl

        @hookimpl
        def quetzal_after_local_run(summary)
            pass
    """)
    out = failure(run_task(baked_repo, "run", "--local", "base"))
    assert "ERROR: plugin quetzal_plugins.py does not load: line 5: expected ':'" in out
    assert "Running" not in out and not (baked_repo / ".quetzal" / "runs").exists()


@pytest.mark.parametrize("body, message", [
    # the line is the plugin's own, not that of the library that raised (here json's decoder)
    ('json.loads("{zones")', "raised at quetzal_plugins.py:7: JSONDecodeError: Expecting property name"),
    ('return "looks fine"', "returned 'looks fine' for base: return Refuse(message), Warn(message), "
                            "a list, or None."),
])
def test_a_failing_check_names_the_plugin_and_the_hook(baked_repo, body, message):
    write_plugins(baked_repo, f"""
        import json
        from quetzal_deploy.plugins import hookimpl

        @hookimpl
        def quetzal_check_scenario(name):
            {body}
    """)
    out = failure(run_task(baked_repo, "upload-scenarios", "base", "--yes"))
    assert f"ERROR: plugin quetzal_plugins.py, hook quetzal_check_scenario, {message}" in out


def test_a_misspelt_hook_lists_the_hooks(baked_repo):
    write_plugins(baked_repo, """
        from quetzal_deploy.plugins import hookimpl

        @hookimpl
        def quetzal_check_scenarios(name):
            pass
    """)
    with pytest.raises(PluginError, match="plugin quetzal_plugins.py implements .quetzal_check_scenarios., "
                                          "which is not a hook: the hooks are quetzal_after_local_run, "
                                          "quetzal_check_scenario, quetzal_image_files"):
        plugin_manager(baked_repo)


def test_the_model_module_stays_out_of_sys_modules(baked_repo):
    """...and still defines dataclasses (they look their module up in sys.modules)."""
    write_plugins(baked_repo, """
        from __future__ import annotations
        from dataclasses import dataclass

        @dataclass
        class Zone:
            name: str
    """)
    before = set(sys.modules)
    manager = plugin_manager(baked_repo)
    assert manager.get_plugin("quetzal_plugins.py").Zone("centre").name == "centre"
    assert set(sys.modules) == before


def installed_plugin(site: Path, module: str) -> str:
    """A distribution in ``site`` whose entry point (group ``quetzal_deploy``) names ``module``,
    as ``pip install`` leaves one; returns the module's file name to write."""
    name = f"teamplugin_{uuid.uuid4().hex[:8]}"
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[quetzal_deploy]\nteam = {module or name}\n")
    return f"{name}.py"


def test_an_installed_plugin_is_found_by_its_entry_point(baked_repo, tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / installed_plugin(site, "")).write_text(textwrap.dedent("""
        from quetzal_deploy.plugins import hookimpl

        @hookimpl
        def quetzal_image_files(root):
            return {"shared/zones.csv": root / "zones.csv"}
    """))
    (baked_repo / "zones.csv").write_text("zone\n1\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.chdir(baked_repo)
    settings = load_settings()
    assert image_files(plugin_manager(baked_repo), settings) == {"shared/zones.csv": baked_repo / "zones.csv"}


def test_an_installed_plugin_that_does_not_import_is_named(baked_repo, tmp_path, monkeypatch):
    """By its entry point and its distribution, so the user knows what to fix or uninstall."""
    module = installed_plugin(tmp_path, "team_checks_not_installed")
    dist = module.removesuffix(".py")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError) as raised:
        plugin_manager(baked_repo)
    assert str(raised.value) == (
        f"the installed plugin 'team' (entry point `team = team_checks_not_installed` in group "
        f"'quetzal_deploy', distribution {dist} 1.0) failed to load: ModuleNotFoundError: No module named "
        f"'team_checks_not_installed'. Fix it, or uninstall it: pip uninstall {dist}.")


def test_an_installed_plugin_ending_the_process_on_import_is_named(baked_repo, tmp_path):
    """Through invoke: the command says which plugin ended it and where, instead of stopping silently."""
    site = tmp_path / "site"
    module = installed_plugin(site, "")
    (site / module).write_text("import sys\n\nsys.exit(0)\n")
    done = run_task(baked_repo, "upload-scenarios", "base", "--dry-run",
                    env={"PYTHONPATH": os.pathsep.join([str(site), os.environ["PYTHONPATH"]])})
    out = failure(done)
    dist = module.removesuffix(".py")
    assert (f"ERROR: the installed plugin 'team' (entry point `team = {dist}` in group 'quetzal_deploy', "
            f"distribution {dist} 1.0), while loading, called sys.exit(0) at {module}:3") in out


@pytest.mark.parametrize("code, shown", [("", "None"), ("0", "0"), ("'stop'", "'stop'")])
def test_a_hook_calling_sys_exit_is_an_error_naming_it(baked_repo, boto, code, shown):
    """``sys.exit()`` in a check used to end ``upload-scenarios`` silently, exit code 0, nothing sent."""
    s3 = boto.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    write_plugins(baked_repo, f"""
        import sys
        from quetzal_deploy.plugins import hookimpl

        @hookimpl
        def quetzal_check_scenario(name):
            sys.exit({code})
    """)
    out = failure(run_task(baked_repo, "upload-scenarios", "base", "--yes"))
    assert (f"ERROR: plugin quetzal_plugins.py, hook quetzal_check_scenario, called sys.exit({shown}) at "
            "quetzal_plugins.py:7, which would end the command without a word: a plugin returns, or raises "
            "an exception saying what is wrong.") in out
    assert bucket_keys(s3) == {}


def test_a_plugin_module_calling_sys_exit_is_an_error_naming_it(baked_repo):
    write_plugins(baked_repo, "import sys\n\nsys.exit(2)\n")
    out = failure(run_task(baked_repo, "run", "--local", "base"))
    assert "ERROR: plugin quetzal_plugins.py (" in out
    assert "), while loading, called sys.exit(2) at quetzal_plugins.py:3, which would end" in out


@pytest.mark.parametrize("answer, message", [
    ('{"../escape": "notebooks"}', "'../escape' is not a path inside LAMBDA_TASK_ROOT"),
    ('{"lib": "vendor/missing"}', "vendor/missing (for lib) does not exist"),
    ('["lib"]', "returned ['lib']"),
])
def test_image_files_answers_are_checked(baked_repo, monkeypatch, answer, message):
    write_plugins(baked_repo, f"""
        from quetzal_deploy.plugins import hookimpl

        @hookimpl
        def quetzal_image_files():
            return {answer}
    """)
    monkeypatch.chdir(baked_repo)
    with pytest.raises(PluginError, match="plugin quetzal_plugins.py, hook quetzal_image_files"
                                          ) as raised:
        image_files(plugin_manager(baked_repo), load_settings())
    assert message in str(raised.value)


VENDORED = """
    from quetzal_deploy.plugins import hookimpl

    @hookimpl
    def quetzal_image_files(root):
        return {"tinylib": root / "vendor" / "tinylib"}
"""


def add_import_cell(notebook: Path, source: str) -> None:
    book = json.loads(notebook.read_text())
    book["cells"].append({"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                          "source": [source]})
    notebook.write_text(json.dumps(book))


@pytest.mark.docker
@pytest.mark.xdist_group("docker")
def test_a_vendored_library_added_by_a_hook_is_imported_in_the_image(baked_repo, boto, docker_engine,
                                                                       lambda_base_image):
    """The hook adds vendor/tinylib as /var/task/tinylib; the first step imports it on the handler."""
    write_plugins(baked_repo, VENDORED)
    marker = uuid.uuid4().hex  # unique content: no layer cached from another run
    library = baked_repo / "vendor" / "tinylib"
    library.mkdir(parents=True)
    (library / "__init__.py").write_text(f"def greet():\n    return 'tinylib {marker}'\n")
    add_import_cell(baked_repo / "notebooks" / "preparation.ipynb",
                    "import tinylib\nprint('vendored says', tinylib.greet())\n")
    s3 = boto.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    done = run_task(baked_repo, "upload-scenarios", "base", "--yes", env={"QUETZAL_USER_EMAIL": "a@b.c"})
    assert done.returncode == 0, done.stdout + done.stderr

    env = {"QUETZAL_BASE_IMAGE": lambda_base_image}
    done = run_task(baked_repo, "test-lambda", env=env, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Adding tinylib (a plugin's quetzal_image_files)" in done.stdout
    log = s3.get_object(Bucket=BUCKET, Key="base/logs/preparation.txt")["Body"].read().decode()
    assert f"vendored says tinylib {marker}" in log

    again = run_task(baked_repo, "build", "--tag", f"plugins-{marker[:8]}", env=env, timeout=900)
    assert again.returncode == 0, again.stdout + again.stderr
    copy_step = next(s for s in again.stdout.split("Step ") if "COPY plugin-files/" in s)
    assert "Using cache" in copy_step  # unchanged added files keep their layer
    image = f"{BUCKET}:plugins-{marker[:8]}"
    listing = docker_engine.containers.run(image, entrypoint=["find"], command=["/var/task/tinylib"],
                                           remove=True).decode().split()
    docker_engine.images.remove(image)
    assert listing == ["/var/task/tinylib", "/var/task/tinylib/__init__.py"]


def test_doctor_lists_the_plugins_and_reports_a_broken_one(baked_repo, aws):
    env = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    write_plugins(baked_repo, CHECKS + AFTER_RUN.replace("{required}", "x.csv"))
    done = run_task(baked_repo, "doctor", env=env)
    line = next(text for text in done.stdout.splitlines() if " plugins " in text)
    assert line.split() == ["✓", "plugins", "quetzal_plugins.py:", "quetzal_after_local_run,",
                            "quetzal_check_scenario"]

    write_plugins(baked_repo, "import json\njson.loads('{')\n")
    done = run_task(baked_repo, "doctor", env=env)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    at = next(n for n, text in enumerate(lines) if " plugins " in text)
    assert lines[at].startswith("✗ plugins") and "failed while loading at quetzal_plugins.py:2" in lines[at]
    assert "fix: fix the plugin, or move quetzal_plugins.py away" in lines[at + 1]
