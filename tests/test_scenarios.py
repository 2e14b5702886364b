"""Scenario and config flows, driven as a user does: `invoke <task>` in a baked repo (subprocess)
against moto in server mode over HTTP, with the bucket checked through boto3.

Some tests put a small recording proxy between the task and moto: it shows the requests on the
wire (how many, which headers) and can refuse chosen ones, which is how an upload that fails
half-way is produced. It also checks ``user_email``: moto's server (werkzeug) drops every request
header with an underscore, so ``x-amz-meta-user_email`` is sent but never stored by the emulator.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from dotenv import dotenv_values

from fixtures.aws import REGION
from quetzal_deploy.sync.lease import LEASES

EMAIL = "modeller@example.com"
RUN_RESULTS = ("outputs/", "logs/")


def invoke(repo: Path, *args: str, env: dict | None = None, answer: str = "") -> subprocess.CompletedProcess:
    """Run ``invoke <args>`` in the repo as a user would; ``answer`` is what they type (default: nothing)."""
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args], cwd=repo, input=answer,
        env=env or {**os.environ, "QUETZAL_USER_EMAIL": EMAIL},
        capture_output=True, text=True, timeout=300,
    )


def ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def failed(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done.stdout + done.stderr


def bucket_of(repo: Path) -> str:
    return dotenv_values(repo / ".env")["MODEL_NAME"]


def local_files(folder: Path, with_results: bool = False) -> dict[str, bytes]:
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    return {rel: body for rel, body in files.items() if with_results or not rel.startswith(RUN_RESULTS)}


def remote_files(s3, bucket: str, prefix: str) -> dict[str, bytes]:
    keys = [item["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for item in page.get("Contents", [])]
    return {key[len(prefix):]: s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}


def snapshot(s3, bucket: str) -> dict[str, tuple]:
    """Every object of the bucket with its ETag, date and metadata: equal snapshots = untouched.
    Upload leases (``sync.lease``) are left out: an upload that ran records itself there."""
    state = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            if item["Key"].startswith(LEASES):
                continue
            head = s3.head_object(Bucket=bucket, Key=item["Key"])
            state[item["Key"]] = (head["ETag"], head["LastModified"], head["Metadata"])
    return state


class Recorder(ThreadingHTTPServer):
    """An HTTP proxy to moto on 127.0.0.1 that records requests.

    ``hook(method, path)`` runs before each request is forwarded; when it returns True the
    request is refused (403 AccessDenied) instead.
    """

    def __init__(self, upstream: str):
        super().__init__(("127.0.0.1", 0), _Forward)
        self.upstream = urlsplit(upstream)
        self.requests: list[tuple[str, str, dict]] = []
        self.hook = lambda method, path: False
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def calls(self, method: str) -> list[tuple[str, dict]]:
        return [(path, headers) for m, path, headers in self.requests if m == method]


class _Forward(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    refusal = (b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code>"
               b"<Message>Refused by the test proxy</Message></Error>")

    def forward(self):
        assert "chunked" not in self.headers.get("Transfer-Encoding", "")
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        headers = {key.lower(): value for key, value in self.headers.items()}
        self.server.requests.append((self.command, self.path, headers))
        if self.server.hook(self.command, self.path):
            self.send_response(403)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(self.refusal)))
            self.end_headers()
            self.wfile.write(self.refusal)
            return
        upstream = http.client.HTTPConnection(self.server.upstream.hostname, self.server.upstream.port,
                                              timeout=60)
        try:
            upstream.request(self.command, self.path, body=body, headers=dict(self.headers.items()))
            response = upstream.getresponse()
            data = response.read()
        finally:
            upstream.close()
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in {"transfer-encoding", "connection", "content-length"}:
                self.send_header(key, value)
        length = response.getheader("Content-Length") if self.command == "HEAD" else str(len(data))
        self.send_header("Content-Length", length or "0")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward

    def log_message(self, *args):
        pass


@pytest.fixture
def recorder(aws):
    server = Recorder(aws)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def repo(baked_repo, boto):
    """A baked model repo whose bucket exists, versioned as the Terraform module makes it."""
    s3, bucket = boto.client("s3"), bucket_of(baked_repo)
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return baked_repo


@pytest.fixture
def s3(boto):
    return boto.client("s3")


@pytest.fixture
def synced(repo, s3):
    """The repo with base already uploaded once."""
    ok(invoke(repo, "upload-scenarios", "base"))
    return repo


def via(recorder: Recorder) -> dict:
    return {**os.environ, "QUETZAL_USER_EMAIL": EMAIL, "AWS_ENDPOINT_URL": recorder.url}


def without_info(files: dict[str, bytes]) -> dict[str, bytes]:
    return {rel: body for rel, body in files.items() if rel != "info.json"}


def synced_files(s3, bucket: str, prefix: str) -> tuple[dict[str, bytes], dict]:
    """The scenario's objects but info.json (written apart, stamped), and that info.json."""
    files = remote_files(s3, bucket, prefix)
    return files, json.loads(files.pop("info.json"))


def test_first_sync_writes_front_end_metadata_then_unchanged_resync_sends_nothing(repo, s3, recorder):
    bucket, base = bucket_of(repo), repo / "scenarios" / "base"
    out = ok(invoke(repo, "upload-scenarios", "base", env=via(recorder)))

    local = local_files(base)
    local_info = json.loads(local.pop("info.json"))
    remote, info = synced_files(s3, bucket, "base/")
    assert remote == local
    assert info["description"] == local_info["description"] and info["last_modified_email"] == EMAIL
    assert f"{len(local)} to upload, 0 unchanged, 0 to delete" in out
    assert "update info.json (last_modified_date, last_modified_email)" in out
    for rel, body in [*local.items(), ("info.json", s3.get_object(Bucket=bucket, Key="base/info.json")
                                       ["Body"].read())]:
        head = s3.head_object(Bucket=bucket, Key=f"base/{rel}")
        assert head["Metadata"]["checksum"] == hashlib.sha256(body).hexdigest(), rel
    assert s3.head_object(Bucket=bucket, Key="base/inputs/pt/links.geojson")["ContentType"] == \
        "application/geo+json"
    leases = [path for path, _ in recorder.calls("PUT") if LEASES in path]
    puts = [(path, headers) for path, headers in recorder.calls("PUT") if LEASES not in path]
    assert len(puts) == len(local) + 1 and len(leases) == 2, "taken, then released"
    assert {headers.get("x-amz-meta-user_email") for _, headers in puts} == {EMAIL}

    before, recorder.requests[:] = snapshot(s3, bucket), []
    out = ok(invoke(repo, "upload-scenarios", "base", env=via(recorder)))
    assert f"0 to upload, {len(local)} unchanged, 0 to delete" in out and "info.json" not in out
    assert [m for m, _, _ in recorder.requests] == ["GET", "GET"], "the listing and info.json, nothing else"
    assert snapshot(s3, bucket) == before


def test_changed_new_and_deleted_files_after_confirmation(synced, s3):
    bucket, base = bucket_of(synced), synced / "scenarios" / "base"
    (base / "styles.json").write_text('[{"name": "changed"}]')
    (base / "inputs" / "extra.csv").write_text("a,b\n1,2\n")
    (base / "inputs" / "od" / "od.geojson").unlink()
    before = snapshot(s3, bucket)

    message = failed(invoke(synced, "upload-scenarios", "base"))
    assert "--yes" in message and "base is protected" in message
    assert "Cancelled" in failed(invoke(synced, "upload-scenarios", "base", answer="n\n"))
    assert snapshot(s3, bucket) == before

    out = ok(invoke(synced, "upload-scenarios", "base", answer="y\n"))
    assert "2 to upload" in out and "1 to delete" in out
    assert synced_files(s3, bucket, "base/")[0] == without_info(local_files(base))
    assert "inputs/od/od.geojson" not in remote_files(s3, bucket, "base/")


def test_dry_run_prints_the_plan_and_changes_nothing(synced, s3):
    bucket, base = bucket_of(synced), synced / "scenarios" / "base"
    (base / "info.json").write_text('{"description": "new"}')
    (base / "inputs" / "pt" / "nodes.geojson").unlink()
    before = snapshot(s3, bucket)

    out = ok(invoke(synced, "upload-scenarios", "base", "--dry-run"))
    assert "0 to upload" in out and "1 to delete" in out
    assert "update info.json" in out and "delete inputs/pt/nodes.geojson" in out
    assert "nothing was changed" in out
    assert snapshot(s3, bucket) == before


def test_local_run_results_stay_local_unless_asked(synced, s3):
    bucket, base = bucket_of(synced), synced / "scenarios" / "base"
    (base / "outputs").mkdir()
    (base / "outputs" / "local.geojson").write_text("{}")
    s3.put_object(Bucket=bucket, Key="base/outputs/cloud.geojson", Body=b'{"cloud": 1}')

    out = ok(invoke(synced, "upload-scenarios", "base", "--yes"))
    assert "0 to upload" in out and "0 to delete" in out
    remote = remote_files(s3, bucket, "base/")
    assert "outputs/cloud.geojson" in remote and "outputs/local.geojson" not in remote

    ok(invoke(synced, "upload-scenarios", "base", "--yes", "--with-outputs"))
    assert synced_files(s3, bucket, "base/")[0] == without_info(local_files(base, with_results=True))


def test_unreadable_local_file_aborts_before_any_write(synced, s3):
    """Tests run as root, which reads any file mode: a broken link is the unreadable file here."""
    bucket, base = bucket_of(synced), synced / "scenarios" / "base"
    (base / "styles.json").write_text('["changed"]')
    (base / "inputs" / "od" / "od.geojson").unlink()
    (base / "inputs" / "pt" / "broken.geojson").symlink_to(base / "missing.geojson")
    before = snapshot(s3, bucket)

    message = failed(invoke(synced, "upload-scenarios", "base", "--yes"))
    assert "broken.geojson is not a regular file" in message
    assert snapshot(s3, bucket) == before

    (base / "inputs" / "pt" / "broken.geojson").unlink()
    ok(invoke(synced, "upload-scenarios", "base", "--yes"))
    assert synced_files(s3, bucket, "base/")[0] == without_info(local_files(base))


@pytest.mark.parametrize("versioning", ["Enabled", "Suspended"])
def test_upload_failing_half_way_deletes_nothing_and_rerun_completes(synced, s3, recorder, versioning):
    """The proxy refuses one file's upload; the others succeed. A versioned bucket (what the
    Terraform module makes) is rolled back to exactly what it was; without versions, nothing is
    deleted and each object is either as it was or fully replaced."""
    bucket, base = bucket_of(synced), synced / "scenarios" / "base"
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": versioning})
    old, before = remote_files(s3, bucket, "base/"), snapshot(s3, bucket)
    for rel in ("info.json", "styles.json", "inputs/params.json", "inputs/new.csv"):
        (base / rel).write_text(json.dumps({"changed": rel}))
    (base / "inputs" / "od" / "od.geojson").unlink()
    recorder.hook = lambda method, path: method == "PUT" and path.endswith("/base/styles.json")

    message = failed(invoke(synced, "upload-scenarios", "base", "--yes", env=via(recorder)))
    assert "1 of 3 uploads" in message and "styles.json" in message and "re-run" in message
    remote = remote_files(s3, bucket, "base/")
    if versioning == "Enabled":
        assert "exactly as it was" in message
        assert snapshot(s3, bucket) == before
    else:
        assert "stay replaced" in message
        assert remote["styles.json"] == old["styles.json"]
        assert remote["inputs/od/od.geojson"] == old["inputs/od/od.geojson"], "deleted too early"
        local = local_files(base)
        assert all(remote[rel] in {old.get(rel), local.get(rel)} for rel in remote), "half-written"

    ok(invoke(synced, "upload-scenarios", "base", "--yes"))
    remote, info = synced_files(s3, bucket, "base/")
    assert remote == without_info(local_files(base))
    assert info["changed"] == "info.json" and info["last_modified_email"] == EMAIL


def test_download_asks_before_replacing_local_changes(synced, s3):
    bucket, base = bucket_of(synced), synced / "scenarios" / "base"
    styles = (base / "styles.json").read_text()
    s3.put_object(Bucket=bucket, Key="base/outputs/volumes.geojson", Body=b'{"type": "FeatureCollection"}')
    s3.put_object(Bucket=bucket, Key="base/logs/assignment.txt", Body=b"end_of_notebook\n")
    s3.put_object(Bucket=bucket, Key="base/styles.json", Body=b'["from the front end"]')
    (base / "inputs" / "local-only.csv").write_text("kept\n")

    message = failed(invoke(synced, "download-scenario", "base"))
    assert "styles.json" in message and "--yes" in message
    assert (base / "styles.json").read_text() == styles
    assert not (base / "outputs").exists()

    ok(invoke(synced, "download-scenario", "base", "--yes"))
    local = local_files(base, with_results=True)
    remote = remote_files(s3, bucket, "base/")
    assert {rel: local[rel] for rel in remote} == remote
    assert local["inputs/local-only.csv"] == b"kept\n"


def test_download_refuses_keys_escaping_the_scenario(synced, s3):
    bucket = bucket_of(synced)
    s3.put_object(Bucket=bucket, Key="base/inputs/../../../escaped.txt", Body=b"x")
    assert "base/inputs/../../../escaped.txt" in remote_files(s3, bucket, "")  # moto kept the raw key

    message = failed(invoke(synced, "download-scenario", "base", "--yes"))
    assert "refusing" in message and "escaped.txt" in message
    assert not (synced.parent / "escaped.txt").exists() and not (synced / "escaped.txt").exists()


def test_download_of_unknown_scenario_lists_the_bucket(synced):
    message = failed(invoke(synced, "download-scenario", "nope"))
    assert "no scenario 'nope'" in message and "existing: base" in message


def test_lock_and_unlock_maintain_lock_json(synced, s3):
    bucket = bucket_of(synced)
    message = failed(invoke(synced, "lock-scenario", "other"))
    assert "existing: base" in message

    shutil.copytree(synced / "scenarios" / "base", synced / "scenarios" / "other")
    ok(invoke(synced, "upload-scenarios", "other"))
    ok(invoke(synced, "lock-scenario", "other"))
    stored = s3.get_object(Bucket=bucket, Key="_common/lock.json")
    body = stored["Body"].read()
    assert json.loads(body) == ["base", "other"]
    assert stored["Metadata"]["checksum"] == hashlib.sha256(body).hexdigest()
    assert "already locked" in ok(invoke(synced, "lock-scenario", "other"))

    (synced / "scenarios" / "other" / "styles.json").write_text('["edited"]')
    assert "--yes" in failed(invoke(synced, "upload-scenarios", "other"))

    assert "--force" in failed(invoke(synced, "unlock-scenario", "base"))
    ok(invoke(synced, "unlock-scenario", "other"))
    assert json.loads(s3.get_object(Bucket=bucket, Key="_common/lock.json")["Body"].read()) == ["base"]
    ok(invoke(synced, "upload-scenarios", "other"))  # no longer protected: no confirmation
    ok(invoke(synced, "unlock-scenario", "base", "--force"))
    assert json.loads(s3.get_object(Bucket=bucket, Key="_common/lock.json")["Body"].read()) == []


def test_lock_never_overwrites_a_concurrent_edit_of_lock_json(synced, s3, recorder):
    bucket = bucket_of(synced)
    shutil.copytree(synced / "scenarios" / "base", synced / "scenarios" / "other")
    ok(invoke(synced, "upload-scenarios", "other"))
    s3.put_object(Bucket=bucket, Key="_common/lock.json", Body=b'["base"]')

    def front_end_locks_meanwhile(method, path):
        if method == "PUT" and path.endswith("/_common/lock.json"):
            s3.put_object(Bucket=bucket, Key="_common/lock.json", Body=b'["base", "paris-2030"]')
        return False

    recorder.hook = front_end_locks_meanwhile
    message = failed(invoke(synced, "lock-scenario", "other", env=via(recorder)))
    assert "changed while it was being updated" in message and "re-run" in message
    assert json.loads(s3.get_object(Bucket=bucket, Key="_common/lock.json")["Body"].read()) == \
        ["base", "paris-2030"]

    ok(invoke(synced, "lock-scenario", "other"))
    assert json.loads(s3.get_object(Bucket=bucket, Key="_common/lock.json")["Body"].read()) == \
        ["base", "paris-2030", "other"]


def test_publish_config_syncs_model_files_and_keeps_front_end_files(repo, s3):
    bucket, common = bucket_of(repo), repo / "_common"
    out = ok(invoke(repo, "publish-config"))
    assert "upload modelConfig.json" in out and "upload docs/README.md" in out
    assert remote_files(s3, bucket, "_common/") == local_files(common)

    s3.put_object(Bucket=bucket, Key="_common/lock.json", Body=b'["base"]')
    s3.put_object(Bucket=bucket, Key="_common/docs/removed.md", Body=b"# gone from the repo")
    config = json.loads((common / "modelConfig.json").read_text())
    (common / "modelConfig.json").write_text(json.dumps({**config, "description": "edited"}))
    before = snapshot(s3, bucket)

    out = ok(invoke(repo, "publish-config", "--dry-run"))
    assert "1 to upload, 1 unchanged, 1 to delete" in out
    assert "upload modelConfig.json" in out and "delete docs/removed.md" in out
    assert snapshot(s3, bucket) == before

    ok(invoke(repo, "publish-config"))
    remote = remote_files(s3, bucket, "_common/")
    assert remote == {**local_files(common), "lock.json": b'["base"]'}


def test_missing_credentials_give_one_line_hint(repo):
    env = {k: v for k, v in os.environ.items()
           if k not in {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}}
    env.update(AWS_EC2_METADATA_DISABLED="true", QUETZAL_USER_EMAIL=EMAIL)
    message = failed(invoke(repo, "upload-scenarios", "base", env=env))
    assert "No AWS credentials found" in message and "AWS_PROFILE" in message
    assert len(message.strip().splitlines()) == 1


def test_missing_bucket_says_to_deploy_first(baked_repo, aws):
    message = failed(invoke(baked_repo, "upload-scenarios", "base"))
    assert f"bucket {bucket_of(baked_repo)} does not exist" in message and "invoke infra" in message


def test_unknown_local_scenario_lists_existing_ones(repo):
    message = failed(invoke(repo, "upload-scenarios", "base,nope"))
    assert "no scenario 'nope'" in message and "existing: base" in message


def test_empty_local_scenario_does_not_empty_the_bucket(repo, s3):
    bucket = bucket_of(repo)
    (repo / "scenarios" / "draft" / "outputs").mkdir(parents=True)
    s3.put_object(Bucket=bucket, Key="draft/inputs/params.json", Body=b"[]")
    before = snapshot(s3, bucket)
    assert "no files to upload" in failed(invoke(repo, "upload-scenarios", "draft"))
    assert snapshot(s3, bucket) == before


def no_raw_controls(text: str) -> str:
    """What reached the terminal: no control character but newlines (the ESC of a key is escaped)."""
    assert not [c for c in text if not c.isprintable() and c != "\n"], repr(text)
    return text


# (what to plant in scenarios/base, what the error must name); {outside} is a folder outside the repo.
ESCAPING_LINKS = {
    "file link to a system file": ("inputs/passwd", "/etc/passwd", "inputs/passwd"),
    "file link to the repo's .env": ("inputs/x.json", "../../../.env", "inputs/x.json"),
    "file link to a credentials file": ("styles.json", "{outside}/credentials", "styles.json"),
    "folder link": ("inputs/od", "{outside}", "inputs/od"),
    "folder link above the scenario": ("inputs/up", "../..", "inputs/up"),
}


@pytest.mark.parametrize("case", ESCAPING_LINKS, ids=list(ESCAPING_LINKS))
def test_upload_refuses_links_leading_outside_the_scenario(synced, s3, tmp_path, case):
    """A link would publish its target to a bucket every front-end user reads: refused, naming it,
    with nothing uploaded and the bucket as it was (even with other changes pending)."""
    bucket, base = bucket_of(synced), synced / "scenarios" / "base"
    rel, target, named = ESCAPING_LINKS[case]
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "credentials").write_text("[default]\naws_secret_access_key = hush\n")
    (base / "info.json").write_text('{"description": "pending change"}')
    link = base / rel
    if link.is_dir():
        shutil.rmtree(link)
    else:
        link.unlink(missing_ok=True)
    link.symlink_to(target.replace("{outside}", str(outside)))
    before = snapshot(s3, bucket)

    message = no_raw_controls(failed(invoke(synced, "upload-scenarios", "base", "--yes")))

    assert f"{named}: it is a symbolic link to" in message and "nothing was uploaded" in message
    assert snapshot(s3, bucket) == before


def test_upload_refuses_a_scenario_folder_that_is_a_link(repo, s3, tmp_path):
    bucket = bucket_of(repo)
    shutil.copytree(repo / "scenarios" / "base", tmp_path / "elsewhere")
    (repo / "scenarios" / "linked").symlink_to(tmp_path / "elsewhere")

    message = failed(invoke(repo, "upload-scenarios", "base,linked"))

    assert "scenarios/linked is a symbolic link" in message and "Nothing was transferred" in message
    assert snapshot(s3, bucket) == {}


def test_upload_follows_links_that_stay_inside_the_scenario(synced, s3):
    """The handler's rule: a link resolving inside the scenario is sent as the file it points to."""
    bucket, base = bucket_of(synced), synced / "scenarios" / "base"
    (base / "inputs" / "current").symlink_to("pt")  # a folder link
    (base / "inputs" / "params-copy.json").symlink_to("params.json")

    ok(invoke(synced, "upload-scenarios", "base", "--yes"))

    remote = remote_files(s3, bucket, "base/")
    assert remote["inputs/current/links.geojson"] == (base / "inputs" / "pt" / "links.geojson").read_bytes()
    assert remote["inputs/params-copy.json"] == (base / "inputs" / "params.json").read_bytes()


def test_publish_config_refuses_docs_linked_outside(repo, s3, tmp_path):
    (tmp_path / "notes.md").write_text("# private notes")
    (repo / "_common" / "docs" / "notes.md").symlink_to(tmp_path / "notes.md")

    message = failed(invoke(repo, "publish-config"))

    assert "docs/notes.md: it is a symbolic link to" in message
    assert snapshot(s3, bucket_of(repo)) == {}


def test_download_refuses_to_write_through_a_local_folder_link(synced, s3, tmp_path):
    bucket, base = bucket_of(synced), synced / "scenarios" / "base"
    s3.put_object(Bucket=bucket, Key="base/outputs/volumes.geojson", Body=b"{}")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (base / "outputs").symlink_to(elsewhere)

    message = failed(invoke(synced, "download-scenario", "base", "--yes"))

    assert "refusing to download 1 key(s)" in message and "base/outputs/volumes.geojson" in message
    assert list(elsewhere.iterdir()) == []

    (base / "outputs").unlink()
    shutil.move(base, tmp_path / "real-base")
    base.symlink_to(tmp_path / "real-base")
    assert "scenarios/base is a symbolic link" in failed(invoke(synced, "download-scenario", "base"))


def test_keys_with_control_characters_are_refused_and_never_printed_raw(synced, s3):
    """ESC sequences in a key could rewrite the terminal (or a file name): the download refuses
    them like '..', and every message shows them escaped."""
    bucket, base = bucket_of(synced), synced / "scenarios" / "base"
    hostile = ["base/inputs/\x1b[2Jcleared.csv", "base/outputs/start\x01.csv", "base/logs/del\x7f.txt"]
    for key in hostile:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    before = local_files(base, with_results=True)

    message = no_raw_controls(failed(invoke(synced, "download-scenario", "base", "--yes")))

    assert "refusing to download 3 key(s)" in message and "\\x1b[2Jcleared.csv" in message
    assert "start\\x01.csv" in message and "del\\x7f.txt" in message
    assert local_files(base, with_results=True) == before

    out = no_raw_controls(ok(invoke(synced, "upload-scenarios", "base", "--dry-run")))
    assert "delete inputs/\\x1b[2Jcleared.csv" in out
