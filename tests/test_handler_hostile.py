"""Hostile events, keys and folders: each is a clear error, and nothing is written outside the
working folder or outside the scenario's prefix (moto server S3, real child processes)."""

import os
import shutil
import uuid
from pathlib import Path

import pytest
from test_handler import BUCKET, INPUTS, LambdaContext, bucket_keys, make_event, read

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
    "scenario nested without slash": ({"scenario_path_S3": "base/inner"}, "ending with '/'"),
    "scenario bare traversal": ({"scenario_path_S3": ".."}, "scenario folder like 'base/'"),
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


def links_notebook(task: Path, *links: tuple[str, str]) -> str:
    """A .py step writing outputs/real.txt, then each (link name, target) as a symbolic link."""
    (task / "notebooks" / "links.py").write_text(
        "import json, os, sys\n"
        "folder = json.loads(sys.argv[1])['training_folder'] + '/outputs'\n"
        "os.makedirs(folder)\n"
        "open(folder + '/real.txt', 'w').write('ok')\n"
        + "".join(f"os.symlink({target!r}, folder + '/' + {name!r})\n" for name, target in links)
    )
    return "notebooks/links.py"


@pytest.mark.parametrize("link", ["file", "folder"])
def test_output_linking_outside_the_scenario_fails_the_step_and_uploads_nothing(sandbox, link):
    """A notebook linking a secret (or a folder of them) into outputs/ cannot publish it: the
    step fails naming the link, before any output is sent (the log is uploaded, as always)."""
    tmp, s3 = sandbox
    (tmp / "secrets").mkdir()
    (tmp / "secrets" / "key.txt").write_text("not for the bucket")
    target = tmp / "secrets" / ("key.txt" if link == "file" else "")
    before = bucket_keys(s3)

    with pytest.raises(UnsafeKey, match="is a symbolic link to .*secrets.*outside") as error:
        handler(make_event(notebook_path=links_notebook(tmp / "task", ("leak", str(target)))),
                LambdaContext(60))

    assert "outputs/leak" in str(error.value) and "nothing was uploaded" in str(error.value)
    assert bucket_keys(s3) == before | {"base/logs/links.txt"}


def test_output_links_inside_the_scenario_are_uploaded_as_their_target(sandbox):
    """One rule with `invoke upload-scenarios`: a link resolving inside the scenario is followed."""
    tmp, s3 = sandbox
    inside = (("same.txt", "real.txt"), ("params.json", "../inputs/params.json"))
    with pytest.raises(UnsafeKey, match="a loop"):
        handler(make_event(notebook_path=links_notebook(tmp / "task", *inside, ("again", "."))),
                LambdaContext(60))

    notebook = links_notebook(tmp / "task", *inside)
    handler(make_event(notebook_path=notebook), LambdaContext(60))

    assert read(s3, "base/outputs/same.txt") == b"ok"
    assert read(s3, "base/outputs/params.json") == INPUTS["base/inputs/params.json"]


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


@pytest.mark.parametrize("link", ["file", "folder"])
def test_folder_storage_refuses_symlinks_out_of_the_bucket(tmp_path, link):
    bucket = tmp_path / "bucket"
    (bucket / "base" / "inputs").mkdir(parents=True)
    (bucket / "base" / "inputs" / "params.json").write_text("[]")
    (tmp_path / "secret.txt").write_text("secret")
    (bucket / "base" / "inputs" / "secret").symlink_to(tmp_path / ("secret.txt" if link == "file" else ""))

    with pytest.raises(UnsafeKey, match="inputs/secret: it is a symbolic link"):
        FolderStorage(bucket).download_prefix("base/", tmp_path / "work")

    assert not (tmp_path / "work").exists()


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
                     time_left_s=60, image_tag="x", out=lambda line: None)

    assert snapshot(tmp) == before
    assert os.environ["HOME"] == str(home)


@pytest.mark.parametrize("folder", ["/etc", "/usr", "/var", "/proc", "/bin", "/sys", "/dev", "/home",
                                    "/etc/ssh", "/usr/local/lib", "/", ".", "{cwd}", "{cwd}/.."])
def test_system_and_current_folders_are_refused_as_working_folder(tmp_path, folder, monkeypatch):
    cwd, task = tmp_path / "cwd", tmp_path / "task"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    with pytest.raises(UnsafeWorkdir, match="Refusing to use"):
        check_workdir(Path(folder.replace("{cwd}", str(cwd))), task)
    assert check_workdir(tmp_path / "work", task) == tmp_path / "work"
    assert check_workdir(Path("/var/tmp/quetzal-work"), task) == Path("/var/tmp/quetzal-work")


def test_empty_quetzal_workdir_means_unset_and_never_empties_the_current_folder(sandbox, monkeypatch):
    """QUETZAL_WORKDIR="" once emptied the current folder; now it means /tmp, which the test makes
    unusable (it holds the home folder) so that nothing at all is emptied."""
    tmp, s3 = sandbox
    cwd = tmp / "cwd"
    cwd.mkdir()
    (cwd / "precious.txt").write_text("mine")
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("QUETZAL_WORKDIR", "")
    monkeypatch.setenv("HOME", "/tmp/quetzal-test-home")

    with pytest.raises(UnsafeWorkdir, match="Refusing to use /tmp "):
        handler(make_event(), LambdaContext(60))

    assert (cwd / "precious.txt").read_text() == "mine"
