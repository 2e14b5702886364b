"""Property-based tests (hypothesis) of what crosses the boundary between a bucket and a folder:
the Lambda event, and the mapping of S3 keys to files for the handler, `download-scenario` and
`upload-scenarios`. For any input: a clear domain error, or a result inside the tree, fast.

Bounded for CI: a fixed number of examples per test (see ``BOUNDED``), no deadline per example
(that would depend on the machine's load) but a generous wall-clock bound per call that only a
pathological slowdown (a backtracking regex, a walk that loops) can break.
"""

from __future__ import annotations

import os
import string
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from fixtures.aws import REGION
from quetzal_deploy.runtime.errors import InvalidEvent, StepError, UnsafeKey
from quetzal_deploy.runtime.event import StepEvent, parse_event
from quetzal_deploy.runtime.names import check_scenario_name
from quetzal_deploy.runtime.paths import real_path, safe_relative, shown, tree_files
from quetzal_deploy.runtime.storage import FolderStorage, download_plan
from quetzal_deploy.sync.s3sync import S3Prefix, SyncError, read_local

SLOW_S = 10.0  # per call; a pure parser takes microseconds, so only a pathology reaches this


def bounded(examples: int):
    return settings(max_examples=examples, deadline=None, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def timed(call, *args):
    """``call(*args)``, asserting it returned (or raised) within ``SLOW_S``."""
    started = time.monotonic()
    try:
        return call(*args)
    finally:
        assert time.monotonic() - started < SLOW_S, f"{call.__name__} took over {SLOW_S} s"


# Pieces attackers and careless users combine: traversal, separators, controls, odd scripts, lengths.
HOSTILE_PARTS = ["..", ".", "", "~", "notebooks", "base", "_common", "inputs", "outputs", "C:", "a:b",
                 "\\", "..\\..", "\x00", "\x01", "\x1b[2J", "\x7f", "\x9b", "\u202e", "\n", " ", "é",
                 "n" * 256, "$(touch x)", "`id`", "links.py", "fails.ipynb", "x.py", "%2e%2e"]
part = st.one_of(st.sampled_from(HOSTILE_PARTS), st.text(max_size=12))
paths = st.one_of(st.lists(part, max_size=6).map("/".join), st.text(max_size=40))
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                         st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)


@pytest.fixture(scope="module")
def task_root(tmp_path_factory) -> Path:
    """An image's task root: two notebooks, a script, and a link leading outside it."""
    base = tmp_path_factory.mktemp("fuzz-task")
    (base / "outside.py").write_text("print('outside')\n")
    root = base / "task"
    (root / "notebooks").mkdir(parents=True)
    for name in ("fails.ipynb", "writes_outputs.ipynb", "x.py"):
        (root / "notebooks" / name).write_text("{}")
    (root / "notebooks" / "links.py").symlink_to(base / "outside.py")
    return root


fields = st.fixed_dictionaries({
    "notebook_path": st.one_of(st.just("notebooks/x.py"), paths, paths.map(lambda p: p + ".py"), json_values),
    "scenario_path_S3": st.one_of(st.just("base/"), paths.map(lambda p: p + "/"), paths, json_values),
    "launcher_arg": st.one_of(st.dictionaries(st.text(max_size=8), json_values, max_size=4), json_values),
    "metadata": st.one_of(st.dictionaries(st.one_of(st.sampled_from(["user_email", "bad key", "é"]),
                                                    st.text(max_size=8)),
                                          st.one_of(st.text(max_size=30), json_values), max_size=4),
                          json_values),
}).flatmap(lambda event: st.sets(st.sampled_from(sorted(event))).map(
    lambda dropped: {k: v for k, v in event.items() if k not in dropped}))


@bounded(400)
@given(event=st.one_of(fields, json_values))
@example(event={"notebook_path": "n" * 256 + ".py", "scenario_path_S3": "base/", "launcher_arg": {}})
@example(event={"notebook_path": "notebooks/x.py", "scenario_path_S3": "\\/", "launcher_arg": {}})
@example(event={"notebook_path": "notebooks/x.py", "scenario_path_S3": "C:/", "launcher_arg": {}})
def test_event_parser_accepts_only_events_that_stay_inside(task_root, event):
    try:
        step = timed(parse_event, event, task_root)
    except InvalidEvent as ex:
        assert str(ex) and str(ex) == shown(str(ex)), "a message reaching the console must be printable"
        return
    assert isinstance(step, StepEvent)
    assert step.notebook.is_file() and step.notebook.is_relative_to(task_root.resolve())
    assert step.notebook.suffix in {".ipynb", ".py"}
    assert step.scenario.endswith("/") and not step.scenario.startswith("_common/")
    # One scenario the front end can name: a single key part (on S3 a backslash or a colon is an
    # ordinary character; the stricter folder rule of local runs is safe_relative's, tested below).
    assert check_scenario_name(step.scenario[:-1]) and "/" not in step.scenario[:-1]
    for key, value in step.metadata.items():
        assert (key + value).isascii() and (key + value).isprintable()


@pytest.fixture(scope="module")
def dest(tmp_path_factory) -> Path:
    """A download folder whose outputs/ is a link leading outside it, as a careless set-up has."""
    base = tmp_path_factory.mktemp("fuzz-dest")
    (base / "elsewhere").mkdir()
    folder = base / "work"
    (folder / "inputs").mkdir(parents=True)
    (folder / "outputs").symlink_to(base / "elsewhere")
    return folder


keys = st.lists(st.one_of(paths.map(lambda p: "base/" + p), paths), min_size=1, max_size=6)


def inside(folder: Path, target: Path) -> bool:
    return real_path(target).is_relative_to(real_path(folder))


@bounded(400)
@given(keys=keys)
def test_handler_download_maps_keys_inside_the_working_folder_or_refuses(dest, keys):
    try:
        plan = timed(download_plan, keys, "base/", dest)
    except UnsafeKey as ex:
        assert str(ex) == shown(str(ex))
        return
    assert {key for key, _ in plan} == {key for key in keys if not key.endswith("/")}
    for key, target in plan:
        assert inside(dest, target) and target == dest / key[len("base/"):]


@bounded(300)
@given(key=st.one_of(paths.map(lambda p: "base/" + p), paths))
def test_folder_storage_writes_inside_its_root_or_refuses(key):
    """The handler's local bucket (`run --local`): a log key never lands outside the root."""
    with tempfile.TemporaryDirectory(prefix="quetzal-fuzz-") as top:
        root = Path(top, "bucket")
        try:
            timed(FolderStorage(root).put_text, key, "x")
        except UnsafeKey as ex:
            assert str(ex) == shown(str(ex))
        written = [path for path in Path(top).rglob("*") if path.is_file()]
        assert written in ([], [root / key]) and all(inside(root, path) for path in written)


@bounded(400)
@given(keys=keys)
def test_download_scenario_maps_keys_inside_the_scenario_or_refuses(dest, keys):
    rels = [key.removeprefix("base/") for key in keys]
    try:
        targets = timed(S3Prefix(None, "bucket", "base").targets, dest, rels)
    except SyncError as ex:
        assert "nothing was written" in str(ex) and str(ex) == shown(str(ex))
        return
    assert set(targets) == set(rels)
    assert all(inside(dest, target) for target in targets.values())


# "\udcff" is the byte 0xff of a name that is not UTF-8 (Python's surrogateescape); other lone
# surrogates cannot name a file at all.
names = st.one_of(st.sampled_from(["a", "b.csv", "é", "\x01", "\x1b[2J", "\x7f", " ", "-", "n" * 255,
                                   "\udcff"]),
                  st.text(alphabet=st.characters(blacklist_characters="/\x00", blacklist_categories=["Cs"]),
                          min_size=1, max_size=12))
link_targets = st.sampled_from(["a", "b.csv", "sub", "sub/a", "..", ".", "../..", "/etc/passwd", "/etc",
                                "missing", "{outside}", "{outside}/secret.txt", "sub/../a"])
entries = st.lists(st.tuples(st.lists(names, min_size=1, max_size=3), st.one_of(st.none(), link_targets)),
                   max_size=8)


def build(root: Path, outside: Path, planned) -> None:
    """Files (target None) and symbolic links at the planned paths; impossible ones are skipped."""
    for parts, target in planned:
        path = root.joinpath(*parts)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if target is None:
                path.write_text("x")
            else:
                path.symlink_to(target.replace("{outside}", str(outside)))
        except OSError:  # a name taken by a file, too long, ".." as a file name...
            continue


@bounded(80)
@given(planned=entries)
def test_upload_maps_files_to_keys_inside_the_scenario_or_refuses(planned):
    """`upload-scenarios` and the handler's upload share ``tree_files``: every file sent is inside the
    scenario once links are resolved, and its key is a safe key naming that same file."""
    assume(all(part not in {".", ".."} for parts, _ in planned for part in parts))
    with tempfile.TemporaryDirectory(prefix="quetzal-fuzz-") as top:
        root, outside = Path(top, "scenario"), Path(top, "outside")
        (root / "sub").mkdir(parents=True)
        (root / "a").write_text("a")
        outside.mkdir()
        (outside / "secret.txt").write_text("secret")
        build(root, outside, planned)
        try:
            files = timed(tree_files, root)
        except StepError as ex:
            assert str(ex) == shown(str(ex))
            with pytest.raises(SyncError):
                read_local(root, lambda rel: True)
            return
        for path, rel in files:
            safe_relative(rel)
            assert inside(root, path) and real_path(root / rel) == path and path.is_file()
        assert {f.rel for f in read_local(root, lambda rel: True).values()} == {rel for _, rel in files}


moto_keys = st.lists(st.one_of(
    st.lists(st.sampled_from(["..", ".", "", "inputs", "outputs", "\x01", "\x1b[2J", "\x7f", "é", "C:"]),
             min_size=1, max_size=4).map("/".join),
    st.text(alphabet=string.ascii_letters + "/._-\x01\x1b", min_size=1, max_size=20)), min_size=1, max_size=4)


@bounded(25)
@given(rels=moto_keys)
def test_download_scenario_against_moto_writes_only_inside_the_scenario(boto, tmp_path, rels):
    """The real `plan_download` and `download` on a bucket holding the keys (moto server)."""
    s3 = boto.client("s3")
    bucket = "fuzz-" + os.urandom(4).hex()
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    for rel in rels:
        s3.put_object(Bucket=bucket, Key="base/" + rel, Body=b"x")
    with tempfile.TemporaryDirectory(prefix="quetzal-fuzz-", dir=tmp_path) as top:
        folder = Path(top, "scenarios", "base")
        prefix = S3Prefix(s3, bucket, "base")
        try:
            plan = timed(prefix.plan_download, folder, lambda rel: True)
        except SyncError:
            assert not Path(top, "scenarios").exists(), "nothing is written once a key is refused"
            return
        try:
            prefix.download(plan)
        except SyncError as ex:  # a key that is both a file and a folder ("a" and "a/b"): clear error
            assert "re-run" in str(ex) and str(ex) == shown(str(ex))
        written = [path for path in Path(top).rglob("*") if not path.is_dir()]
        assert all(inside(folder, path) for path in written)
        assert {path.relative_to(folder).as_posix() for path in written} <= {obj.rel for obj in plan.fetch}
