"""Hostile events, keys and folders: each is a clear error, and nothing is written outside the
working folder or outside the scenario's prefix (moto server S3, real child processes)."""

import os
import shutil
import uuid
from pathlib import Path

import pytest
from test_handler import BUCKET, INPUTS, LambdaContext, bucket_keys, make_event

from quetzal_deploy.runtime.errors import InvalidEvent, UnsafeKey, UnsafeWorkdir
from quetzal_deploy.runtime.handler import handler, run_step
from quetzal_deploy.runtime.storage import FolderStorage, S3Storage
from quetzal_deploy.runtime.workdir import check_workdir

NOTEBOOKS = Path(__file__).parent / "support" / "notebooks"
MARKER = "PWNED"


@pytest.fixture
def sandbox(tmp_path, monkeypatch, boto):
    """A task root with an escaping symlink, a script outside it, a used working folder."""
    task = tmp_path / "task"
    shutil.copytree(NOTEBOOKS, task / "notebooks")
    (tmp_path / "evil.py").write_text(f"open({str(tmp_path / MARKER)!r}, 'w').close()\n")
    (task / "notebooks" / "link.py").symlink_to(tmp_path / "evil.py")
    (task / "notebooks" / "run.sh").write_text(f"touch {tmp_path / MARKER}\n")
    work = tmp_path / "work"
    work.mkdir()
    (work / "previous-run.txt").write_text("kept until a valid event arrives")
    s3 = boto.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": boto.region_name})
    for key, body in INPUTS.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    monkeypatch.setenv("BUCKET_NAME", BUCKET)
    monkeypatch.setenv("QUETZAL_WORKDIR", str(work))
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(task))
    monkeypatch.setenv("IMAGE_TAG", "hostile")
    return tmp_path, s3


def snapshot(root: Path, skip: Path | None = None) -> dict[str, tuple]:
    """Every path under root with its size and modification time."""
    found = {}
    for path in root.rglob("*"):
        if skip and path.is_relative_to(skip):
            continue
        info = path.lstat()
        found[path.relative_to(root).as_posix()] = (info.st_size, info.st_mtime_ns)
    return found


def injected(tmp: Path) -> str:
    return f"touch {tmp / MARKER}"


# (event changes, expected message fragment); "{tmp}" and "{inject}" are filled per test.
HOSTILE_EVENTS = {
    "notebook parent traversal": ({"notebook_path": "../evil.py"}, "without '..'"),
    "notebook absolute path": ({"notebook_path": "{tmp}/evil.py"}, "must be relative"),
    "notebook inner traversal": ({"notebook_path": "notebooks/../../evil.py"}, "without '..'"),
    "notebook backslash traversal": ({"notebook_path": "notebooks\\..\\..\\evil.py"}, "or '\\'"),
    "notebook symlink escaping the task root": ({"notebook_path": "notebooks/link.py"},
                                                "resolves outside the task root"),
    "notebook shell separator": ({"notebook_path": "notebooks/fails.ipynb; {inject}; .py"},
                                 "does not exist"),
    "notebook command substitution": ({"notebook_path": "$({inject}).ipynb"}, "does not exist"),
    "notebook shell script": ({"notebook_path": "notebooks/run.sh"}, "a .ipynb notebook or a .py"),
    "notebook missing": ({"notebook_path": "notebooks/missing.ipynb"}, "does not exist"),
    "notebook NUL byte": ({"notebook_path": "notebooks/fails.ipynb\x00.py"}, "control characters"),
    "notebook empty": ({"notebook_path": ""}, "short relative path"),
    "notebook wrong type": ({"notebook_path": 42}, "notebook_path must be a string, not int"),
    "scenario parent traversal": ({"scenario_path_S3": "../other/"}, "scenario folder like 'base/'"),
    "scenario absolute": ({"scenario_path_S3": "/base/"}, "no leading '/'"),
    "scenario inner traversal": ({"scenario_path_S3": "base/../other/"}, "no '..'"),
    "scenario dot": ({"scenario_path_S3": "./"}, "scenario folder like 'base/'"),
    "scenario empty segment": ({"scenario_path_S3": "base//"}, "scenario folder like 'base/'"),
    "scenario without slash": ({"scenario_path_S3": "base"}, "ending with '/'"),
    "scenario empty": ({"scenario_path_S3": ""}, "scenario folder like 'base/'"),
    "scenario newline": ({"scenario_path_S3": "base/\n"}, "scenario folder like 'base/'"),
    "scenario backticks": ({"scenario_path_S3": "`{inject}`/"}, "scenario folder like 'base/'"),
    "scenario command substitution": ({"scenario_path_S3": "$({inject})/"}, "scenario folder"),
    "scenario model-wide files": ({"scenario_path_S3": "_common/"}, "reserved"),
    "scenario wrong type": ({"scenario_path_S3": ["base/"]}, "must be a string, not list"),
    "launcher_arg wrong type": ({"launcher_arg": '{"params": {}}'}, "must be a JSON object"),
    "launcher_arg null": ({"launcher_arg": None}, "must be a JSON object, not NoneType"),
    "launcher_arg past the argv limit": ({"launcher_arg": {"blob": "x" * 140_000}}, "limited to"),
    "metadata wrong type": ({"metadata": ["user_email"]}, "metadata must be a JSON object"),
    "metadata value not a string": ({"metadata": {"user_email": 5}}, "must be a string, not int"),
    "metadata key with a space": ({"metadata": {"user email": "a@b.c"}}, "letters, digits"),
    "metadata header injection": ({"metadata": {"user_email": "a@b.c\r\nx-amz-acl: public-read"}},
                                  "control characters"),
    "metadata too large": ({"metadata": {"note": "n" * 3000}}, "2 KB"),
}
MISSING = ["notebook_path", "scenario_path_S3", "launcher_arg"]


def fill(value, tmp: Path):
    if isinstance(value, str):
        return value.replace("{tmp}", str(tmp)).replace("{inject}", injected(tmp))
    return value


def assert_untouched(tmp: Path, s3, before_files, before_keys):
    assert snapshot(tmp) == before_files, "a file changed on disk"
    assert bucket_keys(s3) == before_keys, "an object changed in the bucket"
    assert not list(tmp.rglob(MARKER)) and not Path(MARKER).exists(), "something was executed"


@pytest.mark.parametrize("case", HOSTILE_EVENTS, ids=list(HOSTILE_EVENTS))
def test_hostile_event_is_refused_before_anything_happens(sandbox, case):
    tmp, s3 = sandbox
    changes, fragment = HOSTILE_EVENTS[case]
    event = make_event("writes_outputs", **{key: fill(value, tmp) for key, value in changes.items()})
    before_files, before_keys = snapshot(tmp), bucket_keys(s3)

    with pytest.raises(InvalidEvent) as error:
        handler(event, LambdaContext(60))

    assert fragment in str(error.value)
    assert_untouched(tmp, s3, before_files, before_keys)


@pytest.mark.parametrize("field", MISSING)
def test_event_missing_a_field_is_refused(sandbox, field):
    tmp, s3 = sandbox
    event = make_event()
    del event[field]
    before_files, before_keys = snapshot(tmp), bucket_keys(s3)

    with pytest.raises(InvalidEvent, match=f"The event has no {field}"):
        handler(event, LambdaContext(60))

    assert_untouched(tmp, s3, before_files, before_keys)


@pytest.mark.parametrize("event", [None, ["notebook_path"], "notebooks/fails.ipynb"])
def test_event_that_is_not_an_object_is_refused(sandbox, event):
    with pytest.raises(InvalidEvent, match="The event must be a JSON object"):
        handler(event, LambdaContext(60))


@pytest.mark.parametrize("key", ["base/../escape-{id}.txt", "base/inputs/../../escape-{id}.txt",
                                 "base//tmp/escape-{id}.txt", "base/./escape-{id}.txt"])
def test_scenario_key_escaping_the_working_folder_is_refused(sandbox, key):
    tmp, s3 = sandbox
    name = f"escape-{uuid.uuid4().hex}.txt"
    key = key.replace("escape-{id}.txt", name)
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"planted")
    before_files, before_keys = snapshot(tmp, skip=tmp / "work"), bucket_keys(s3)

    with pytest.raises(UnsafeKey, match="Rename or delete that object") as error:
        handler(make_event(), LambdaContext(60))

    assert repr(key) in str(error.value)
    assert snapshot(tmp, skip=tmp / "work") == before_files
    assert bucket_keys(s3) == before_keys
    assert not any(tmp.rglob(name)) and not Path("/tmp", name).exists()
    assert not list((tmp / "work").iterdir()), "nothing is downloaded once one key is refused"


def test_symlinked_output_is_not_uploaded(sandbox):
    """A notebook (here a .py step) linking a file from outside its folder cannot publish it."""
    tmp, s3 = sandbox
    (tmp / "secret.txt").write_text("not for the bucket")
    (tmp / "task" / "notebooks" / "links_out.py").write_text(
        "import json, os, sys\n"
        "folder = json.loads(sys.argv[1])['training_folder'] + '/outputs'\n"
        "os.makedirs(folder)\n"
        f"os.symlink({str(tmp / 'secret.txt')!r}, folder + '/secret.txt')\n"
        "open(folder + '/real.txt', 'w').write('ok')\n"
    )

    handler(make_event(notebook_path="notebooks/links_out.py"), LambdaContext(60))

    keys = bucket_keys(s3)
    assert "base/outputs/real.txt" in keys and "base/outputs/secret.txt" not in keys
    assert all(key.startswith("base/") for key in keys)


def test_folder_storage_refuses_keys_outside_its_root(tmp_path):
    storage = FolderStorage(tmp_path / "bucket")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("a")
    before = snapshot(tmp_path)

    for attempt in (lambda: storage.put_text("../outside.txt", "x"),
                    lambda: storage.put_text("/etc/quetzal.txt", "x"),
                    lambda: storage.upload_tree(tmp_path / "src", "../"),
                    lambda: storage.list_keys("../")):
        with pytest.raises(UnsafeKey):
            attempt()
    assert snapshot(tmp_path) == before


def test_folder_storage_does_not_follow_symlinks_out_of_the_bucket(tmp_path):
    bucket = tmp_path / "bucket"
    (bucket / "base" / "inputs").mkdir(parents=True)
    (bucket / "base" / "inputs" / "params.json").write_text("[]")
    (tmp_path / "secret.txt").write_text("secret")
    (bucket / "base" / "inputs" / "secret.txt").symlink_to(tmp_path / "secret.txt")

    count = FolderStorage(bucket).download_prefix("base/", tmp_path / "work")

    assert count == 1
    assert sorted(p.name for p in (tmp_path / "work").rglob("*")) == ["inputs", "params.json"]


def test_working_folder_that_would_destroy_something_is_refused(sandbox, monkeypatch):
    tmp, s3 = sandbox
    home = tmp / "home"
    home.mkdir()
    (home / "notes.txt").write_text("mine")
    monkeypatch.setenv("HOME", str(home))
    task = tmp / "task"
    for folder in (Path("/"), home, tmp, task, task / "notebooks"):
        with pytest.raises(UnsafeWorkdir, match="Set QUETZAL_WORKDIR"):
            check_workdir(folder, task)
    before = snapshot(tmp)

    for folder in (home, tmp, task / "notebooks"):
        with pytest.raises(UnsafeWorkdir):
            run_step(make_event(), storage=S3Storage(BUCKET, s3), workdir=folder, task_root=task,
                     time_left_s=60, image_tag="x", echo=lambda line: None)

    assert snapshot(tmp) == before
    assert os.environ["HOME"] == str(home)
