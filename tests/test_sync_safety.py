"""What a killed transfer leaves, and what two modellers syncing one scenario at once get.

Real processes (`invoke` in baked repos, two clones of one model) against moto server over HTTP.
Where a process must be caught mid-transfer, the recording proxy of ``test_scenarios`` holds one
chosen request until the test lets it go (a slow network, decided by the test): the test waits on
that event, or on the file the transfer writes, never on a clock.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import test_scenarios
from test_scenarios import (
    EMAIL,
    bucket_of,
    failed,
    invoke,
    local_files,
    ok,
    remote_files,
    snapshot,
    synced_files,
    via,
    without_info,
)

# the fixtures of test_scenarios, used here too
recorder, repo, s3, synced = (test_scenarios.recorder, test_scenarios.repo, test_scenarios.s3,
                              test_scenarios.synced)

PART = 16 * 1024 * 1024  # runtime.transfer.PART_BYTES
HELD_S = 120  # how long a held request may wait for the test before it goes on anyway


def start(repo: Path, *args: str, env: dict) -> subprocess.Popen:
    """``invoke <args>`` in the background, as a second terminal would run it."""
    return subprocess.Popen([sys.executable, "-m", "invoke", *args], cwd=repo, env=env, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(condition, what: str, process: subprocess.Popen | None = None, deadline_s: float = 120):
    """Poll until ``condition()`` holds; fails early when ``process`` ended first."""
    end = time.monotonic() + deadline_s
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what}: the process ended first\n{process.communicate()}")
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)


def hold(recorder, matches) -> tuple[threading.Event, threading.Event]:
    """Hold the first request for which ``matches(method, path)`` until ``release`` is set;
    ``reached`` is set when it arrived. Other requests pass."""
    reached, release, seen = threading.Event(), threading.Event(), []

    def hook(method: str, path: str) -> bool:
        if matches(method, path) and not seen:
            seen.append(path)
            reached.set()
            release.wait(HELD_S)
        return False

    recorder.hook = hook
    return reached, release


def as_user(email: str, recorder=None) -> dict:
    env = via(recorder) if recorder else dict(os.environ)
    return {**env, "QUETZAL_USER_EMAIL": email}


def test_download_killed_mid_file_leaves_nothing_an_upload_mistakes_for_data(synced, s3, recorder):
    """SIGKILL while a large file is half written: the next upload refuses (the folder lacks files
    the bucket has) and sends nothing; the next download sweeps the part file and completes."""
    bucket, base = bucket_of(synced), synced / "scenarios" / "base"
    big = os.urandom(2 * PART + 1024)
    s3.put_object(Bucket=bucket, Key="base/inputs/big.bin", Body=big)
    before = snapshot(s3, bucket)
    gets = []

    def second_part(method: str, path: str) -> bool:
        if method == "GET" and path.endswith("/base/inputs/big.bin"):
            gets.append(path)
        return len(gets) > 1

    reached, release = hold(recorder, second_part)

    download = start(synced, "download-scenario", "base", "--yes", env=as_user(EMAIL, recorder))
    try:
        def half_written() -> bool:
            return reached.is_set() and any(
                p.name != "big.bin" and "big.bin" in p.name and p.stat().st_size >= PART
                for p in (base / "inputs").iterdir())
        wait_for(half_written, "the first part written to disk", download)
        download.send_signal(signal.SIGKILL)
        download.wait()
    finally:
        release.set()
    assert not (base / "inputs" / "big.bin").exists()

    message = failed(invoke(synced, "upload-scenarios", "base", "--yes"))
    assert "download-scenario base" in message and "Nothing was uploaded" in message
    assert snapshot(s3, bucket) == before

    ok(invoke(synced, "download-scenario", "base", "--yes"))
    assert (base / "inputs" / "big.bin").read_bytes() == big
    assert sorted(p.name for p in (base / "inputs").iterdir() if "big.bin" in p.name) == ["big.bin"]
    out = ok(invoke(synced, "upload-scenarios", "base", "--yes"))
    assert "0 to delete" in out
    assert remote_files(s3, bucket, "base/inputs/big.bin") == {"": big}
    scenario = {key[len("base/"):] for key in before if key.startswith("base/")}
    assert set(remote_files(s3, bucket, "base/")) == scenario


def test_upload_killed_mid_multipart_is_aborted_by_the_next_upload(synced, s3, recorder):
    """SIGKILL between two parts of a large file: the incomplete multipart upload (stored, billed,
    never listed) is aborted by the next upload of that scenario, which takes the dead process's
    lease over at once (same host, pid gone) and completes."""
    bucket, base = bucket_of(synced), synced / "scenarios" / "base"
    big = os.urandom(2 * PART + 1024)
    (base / "inputs" / "big.bin").write_bytes(big)
    reached, release = hold(recorder, lambda m, p: m == "PUT" and "big.bin" in p and "partNumber=2" in p)

    upload = start(synced, "upload-scenarios", "base", "--yes", env=as_user(EMAIL, recorder))
    try:
        wait_for(reached.is_set, "the second part sent", upload)
        upload.send_signal(signal.SIGKILL)
        upload.wait()
    finally:
        release.set()
    assert s3.list_multipart_uploads(Bucket=bucket, Prefix="base/").get("Uploads"), "nothing to abort"

    ok(invoke(synced, "upload-scenarios", "base", "--yes"))
    assert not s3.list_multipart_uploads(Bucket=bucket, Prefix="base/").get("Uploads")
    assert s3.get_object(Bucket=bucket, Key="base/inputs/big.bin")["Body"].read() == big


def test_rollback_says_exactly_as_it_was_only_when_the_listing_shows_it(synced, s3, recorder):
    """One upload refused, and meanwhile someone else (the front end) writes a file of the
    scenario: the rollback undoes this upload's own files but must not claim the prefix is
    exactly as it was; it names the object that differs."""
    bucket, base = bucket_of(synced), synced / "scenarios" / "base"
    for rel in ("styles.json", "inputs/params.json"):
        (base / rel).write_text(json.dumps({"changed": rel}))

    def hook(method: str, path: str) -> bool:
        if method == "PUT" and path.endswith("/base/styles.json"):
            s3.put_object(Bucket=bucket, Key="base/inputs/from-front-end.csv", Body=b"a\n")
            return True
        return False

    recorder.hook = hook
    message = failed(invoke(synced, "upload-scenarios", "base", "--yes", env=via(recorder)))
    assert "exactly as it was" not in message
    assert "inputs/from-front-end.csv" in message and "rolled back" in message


def test_two_clones_uploading_one_scenario_never_mix(synced, s3, recorder, tmp_path):
    """Clone A rewrites 40 files while clone B deletes some. While A's upload is held half way, B's
    upload, a download and a cloud run are refused, naming A (who, which host, since when); once
    A ended, the bucket holds exactly A's files, and B's re-run then wins whole."""
    bucket = bucket_of(synced)
    clone_b = tmp_path / "clone-b"
    shutil.copytree(synced, clone_b, symlinks=True)
    a_files = synced / "scenarios" / "base" / "inputs" / "many"
    b_files = clone_b / "scenarios" / "base" / "inputs"
    a_files.mkdir()
    for i in range(40):
        (a_files / f"f{i:02}.csv").write_text(f"a,{i}\n")
    reached, release = hold(recorder, lambda m, p: m == "PUT" and p.endswith("/base/inputs/many/f20.csv"))

    upload_a = start(synced, "upload-scenarios", "base", "--yes", env=as_user("a@example.com", recorder))
    try:
        wait_for(reached.is_set, "A's upload half way", upload_a)
        (b_files / "od" / "od.geojson").unlink()
        (b_files / "b.csv").write_text("b\n")
        message = failed(invoke(clone_b, "upload-scenarios", "base", "--yes",
                                env=as_user("b@example.com")))
        assert "a@example.com" in message and "started" in message and "host" in message
        message = failed(invoke(clone_b, "download-scenario", "base", "--yes"))
        assert "a@example.com" in message and "nothing was downloaded" in message
        message = failed(invoke(clone_b, "run", "base"))
        assert "a@example.com" in message and "no run was started" in message
    finally:
        release.set()
    out, err = upload_a.communicate(timeout=300)
    assert upload_a.returncode == 0, out + err

    a_local = without_info(local_files(synced / "scenarios" / "base"))
    assert synced_files(s3, bucket, "base/")[0] == a_local
    ok(invoke(clone_b, "upload-scenarios", "base", "--yes", env=as_user("b@example.com")))
    remote, info = synced_files(s3, bucket, "base/")
    assert remote == without_info(local_files(clone_b / "scenarios" / "base"))
    assert info["last_modified_email"] == "b@example.com"


def test_upload_during_a_download_is_noticed(synced, s3, recorder, tmp_path):
    """A download held half way while another clone uploads a change: the download ends in an
    error (its files may mix two versions) and the folder cannot be uploaded until downloaded again."""
    clone_b = tmp_path / "clone-b"
    shutil.copytree(synced, clone_b, symlinks=True)
    base = synced / "scenarios" / "base"
    shutil.rmtree(base / "inputs")
    reached, release = hold(recorder, lambda m, p: m == "GET" and p.endswith("/base/inputs/params.json"))

    download = start(synced, "download-scenario", "base", "--yes", env=as_user(EMAIL, recorder))
    try:
        wait_for(reached.is_set, "the download half way", download)
        (clone_b / "scenarios" / "base" / "styles.json").write_text('["b"]')
        ok(invoke(clone_b, "upload-scenarios", "base", "--yes", env=as_user("b@example.com")))
    finally:
        release.set()
    out, err = download.communicate(timeout=300)
    assert download.returncode == 1 and "an upload ran while" in out + err, out + err
    assert "did not finish" in failed(invoke(synced, "upload-scenarios", "base", "--yes"))
    ok(invoke(synced, "download-scenario", "base", "--yes"))
    assert (base / "styles.json").read_text() == '["b"]'


@pytest.mark.parametrize("answer", ["", "n\n"])
def test_with_outputs_asks_before_deleting_the_cloud_run_results(synced, s3, answer):
    """No local outputs/ or logs/: ``--with-outputs`` would delete the cloud run's results. It says
    how many and asks (refused without an answer or --yes); confirmed, it deletes them."""
    bucket = bucket_of(synced)
    for key in ("base/outputs/links.geojson", "base/outputs/links.json", "base/logs/step.txt"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"{}")
    before = snapshot(s3, bucket)

    message = failed(invoke(synced, "upload-scenarios", "base", "--with-outputs", answer=answer))
    assert "3 object(s) of the cloud run's outputs/ and logs/" in message
    assert snapshot(s3, bucket) == before

    ok(invoke(synced, "upload-scenarios", "base", "--with-outputs", "--yes"))
    assert not [k for k in remote_files(s3, bucket, "base/") if k.startswith(("outputs/", "logs/"))]


@pytest.mark.parametrize("cached", ["[]", "null", "entries"])
def test_a_digest_cache_of_another_shape_is_treated_as_empty(synced, s3, cached):
    """Valid JSON of the wrong type in the digest caches (``entries``: each file's entry keeps its
    stamp but not the shape of a digest): read as empty, no AttributeError or TypeError."""
    caches = list((synced / ".quetzal" / "digests").glob("*.json"))
    assert caches
    for cache in [*caches, synced / ".quetzal" / "digests" / "etags.json"]:
        kept = json.loads(cache.read_text()) if cache.is_file() else {}
        cache.write_text(json.dumps({path: [entry[0], "no"] for path, entry in kept.items()})
                         if cached == "entries" else cached)
    (synced / "scenarios" / "base" / "styles.json").write_text('["changed"]')
    out = ok(invoke(synced, "upload-scenarios", "base", "--yes"))
    assert "1 to upload" in out


def test_one_name_in_two_unicode_forms(synced, s3):
    """macOS writes names decomposed (NFD): a lone NFD name is sent as its composed key (NFC), the
    front end's form; two files whose names differ only so are refused, naming both."""
    bucket, inputs = bucket_of(synced), synced / "scenarios" / "base" / "inputs"
    composed, decomposed = "caf\u00e9.csv", "cafe\u0301.csv"
    (inputs / decomposed).write_text("nfd\n")
    ok(invoke(synced, "upload-scenarios", "base", "--yes"))
    keys = set(remote_files(s3, bucket, "base/inputs/"))
    assert composed in keys and decomposed not in keys

    (inputs / composed).write_text("nfc\n")
    before = snapshot(s3, bucket)
    message = failed(invoke(synced, "upload-scenarios", "base", "--yes"))
    assert composed in message and decomposed in message and "Unicode form" in message
    assert snapshot(s3, bucket) == before


def test_keys_longer_than_s3_allows_are_refused_before_sending(synced, s3):
    bucket, inputs = bucket_of(synced), synced / "scenarios" / "base" / "inputs"
    deep = inputs.joinpath(*["d" * 250] * 5)
    deep.mkdir(parents=True)
    (deep / "file.csv").write_text("a\n")
    (synced / "scenarios" / "base" / "styles.json").write_text('["changed"]')
    before = snapshot(s3, bucket)
    message = failed(invoke(synced, "upload-scenarios", "base", "--yes"))
    assert "longer than the 1024 bytes S3 allows" in message
    assert snapshot(s3, bucket) == before


def test_a_key_beside_a_folder_of_the_same_name_is_refused(synced, s3):
    """`inputs/x` and `inputs/x/y` both in the bucket: no folder holds both. The download stops at
    once with both names (never hangs), the upload deletes nothing."""
    bucket = bucket_of(synced)
    s3.put_object(Bucket=bucket, Key="base/inputs/x", Body=b"file")
    s3.put_object(Bucket=bucket, Key="base/inputs/x/y", Body=b"inside")
    before = snapshot(s3, bucket)
    message = failed(invoke(synced, "download-scenario", "base", "--yes"))
    assert "inputs/x and inputs/x/..." in message
    message = failed(invoke(synced, "upload-scenarios", "base", "--yes"))
    assert "inputs/x and inputs/x/..." in message
    assert snapshot(s3, bucket) == before


def test_another_tools_multipart_object_is_compared_once_then_remembered(synced, s3, recorder):
    """An object another tool uploaded in 5 MB parts, without checksum metadata: its ETag says
    nothing of its bytes. Hashed once after its download, it is never fetched nor asked about again."""
    bucket, part = bucket_of(synced), 5 * 1024 * 1024
    body = os.urandom(2 * part + 1)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="base/inputs/other.bin")
    parts = [{"PartNumber": n + 1, "ETag": s3.upload_part(
        Bucket=bucket, Key="base/inputs/other.bin", UploadId=upload["UploadId"], PartNumber=n + 1,
        Body=body[n * part:(n + 1) * part] if n < 2 else body[2 * part:])["ETag"]} for n in range(3)]
    s3.complete_multipart_upload(Bucket=bucket, Key="base/inputs/other.bin", UploadId=upload["UploadId"],
                                 MultipartUpload={"Parts": parts})
    ok(invoke(synced, "download-scenario", "base", "--yes"))
    assert (synced / "scenarios" / "base" / "inputs" / "other.bin").read_bytes() == body

    out = ok(invoke(synced, "download-scenario", "base", "--yes", env=via(recorder)))
    assert "0 to download" in out
    out = ok(invoke(synced, "upload-scenarios", "base", "--yes", env=via(recorder)))
    assert "0 to upload" in out
    assert not [path for method, path, _ in recorder.requests if "other.bin" in path], recorder.requests
