"""The sync engine on its own, against moto in server mode: the cases the scenario tests' small
files never reach (multipart ETags, keys that would escape the folder, files edited mid-sync)."""

from __future__ import annotations

import hashlib
import os
import threading
import time

import botocore.utils
import pytest
from botocore.exceptions import ClientError
from s3transfer.manager import TransferConfig

from fixtures.aws import REGION
from quetzal_deploy.runtime import transfer
from quetzal_deploy.runtime.paths import unsafe_reason
from quetzal_deploy.sync import s3sync
from quetzal_deploy.sync.s3sync import S3Prefix, read_local

BUCKET = "sync-engine"
BIG = 9 * 1024 * 1024  # above s3transfer's 8 MB multipart threshold


@pytest.fixture
def s3(boto):
    client = boto.client("s3")
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    return client


def everything(rel: str) -> bool:
    return True


def sync(s3, folder):
    target = S3Prefix(s3, BUCKET, "scenario")
    plan = target.plan_upload(read_local(folder, everything), everything)
    target.upload(plan, {"user_email": "someone@example.com"})
    return plan


def test_multipart_objects_are_compared_by_checksum_metadata(s3, tmp_path):
    big = tmp_path / "inputs" / "big.geojson"
    big.parent.mkdir()
    big.write_bytes(b"a" * BIG)
    assert [f.rel for f in sync(s3, tmp_path).upload] == ["inputs/big.geojson"]
    head = s3.head_object(Bucket=BUCKET, Key="scenario/inputs/big.geojson")
    assert "-" in head["ETag"], "precondition: a multipart ETag, which is not the content MD5"
    assert head["Metadata"]["checksum"] == hashlib.sha256(b"a" * BIG).hexdigest()

    again = sync(s3, tmp_path)
    assert (len(again.upload), len(again.skip)) == (0, 1)

    big.write_bytes(b"a" * (BIG - 1) + b"b")  # same size, other content
    changed = sync(s3, tmp_path)
    assert [f.rel for f in changed.upload] == ["inputs/big.geojson"]
    body = s3.get_object(Bucket=BUCKET, Key="scenario/inputs/big.geojson")["Body"].read()
    assert body.endswith(b"ab") and len(body) == BIG


def test_object_without_checksum_metadata_is_replaced_once(s3, tmp_path):
    """An object written by other tools (same size, no checksum metadata) is uploaded once, then skipped."""
    (tmp_path / "params.json").write_text("[1]")
    s3.put_object(Bucket=BUCKET, Key="scenario/params.json", Body=b"[2]")
    assert [f.rel for f in sync(s3, tmp_path).upload] == ["params.json"]
    assert s3.get_object(Bucket=BUCKET, Key="scenario/params.json")["Body"].read() == b"[1]"
    assert sync(s3, tmp_path).upload == []


@pytest.mark.parametrize("size", [100, BIG], ids=["put", "multipart"])
def test_file_edited_between_plan_and_upload_is_stored_with_the_checksum_of_what_was_sent(s3, tmp_path, size):
    """The front end skips an upload when the stored checksum matches: it must describe the body."""
    path = tmp_path / "inputs" / "od.geojson"
    path.parent.mkdir()
    path.write_bytes(b"a" * size)
    target = S3Prefix(s3, BUCKET, "scenario")
    plan = target.plan_upload(read_local(tmp_path, everything), everything)
    path.write_bytes(b"b" * (size + 7))  # the user saves again while the plan is shown

    target.upload(plan, {"user_email": "someone@example.com"})

    body = s3.get_object(Bucket=BUCKET, Key="scenario/inputs/od.geojson")["Body"].read()
    head = s3.head_object(Bucket=BUCKET, Key="scenario/inputs/od.geojson")
    assert body == b"b" * (size + 7)
    assert head["Metadata"]["checksum"] == hashlib.sha256(body).hexdigest()


def test_large_file_edited_mid_upload_leaves_no_version_with_a_wrong_checksum(s3, tmp_path):
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    path = tmp_path / "od.bin"
    path.write_bytes(b"a" * BIG)
    target = S3Prefix(s3, BUCKET, "scenario")
    plan = target.plan_upload(read_local(tmp_path, everything), everything)
    path.write_bytes(b"b" * BIG)  # same size: only the ETag tells

    target.upload(plan, {"user_email": "someone@example.com"})

    versions = s3.list_object_versions(Bucket=BUCKET, Prefix="scenario/od.bin")["Versions"]
    assert len(versions) == 1
    head = s3.head_object(Bucket=BUCKET, Key="scenario/od.bin")
    assert head["Metadata"]["checksum"] == hashlib.sha256(b"b" * BIG).hexdigest()


@pytest.mark.parametrize("settled_s", [3600.0, 0.0], ids=["written-recently", "settled"])
def test_large_file_is_read_once(s3, tmp_path, monkeypatch, settled_s):
    """Sending needs no second read to prove that the checksum describes the bytes sent: a file
    written recently is hashed with the multipart ETag S3 then returns; one unwritten for
    ``SETTLED_S`` is hashed for its checksum only (no MD5 of its parts), its unchanged stamp after
    the send being the proof. An unchanged re-sync then skips it."""
    monkeypatch.setattr(transfer, "SETTLED_S", settled_s)
    (tmp_path / "od.bin").write_bytes(b"z" * (3 * BIG))
    target = S3Prefix(s3, BUCKET, "scenario")
    plan = target.plan_upload(read_local(tmp_path, everything), everything)
    reads = []
    monkeypatch.setattr(transfer, "digest_file", lambda path: reads.append(path))

    target.upload(plan, {"user_email": "someone@example.com"})

    digest = plan.upload[0].digest
    head = s3.head_object(Bucket=BUCKET, Key="scenario/od.bin")
    assert reads == []
    assert head["Metadata"]["checksum"] == hashlib.sha256(b"z" * (3 * BIG)).hexdigest()
    if settled_s:
        assert digest.etag == head["ETag"].strip('"') and "-" in digest.etag
    else:
        assert (digest.etag, digest.stamp) == (None, transfer.file_stamp(tmp_path / "od.bin"))
    monkeypatch.undo()
    assert sync(s3, tmp_path).upload == []


def test_settled_large_file_edited_while_sent_is_sent_again(s3, tmp_path, monkeypatch):
    """Edited between its first and second part, the object S3 assembles mixes both contents under
    the first one's checksum: the moved stamp tells, that version is deleted and the file sent again."""
    monkeypatch.setattr(transfer, "SETTLED_S", 0.0)
    monkeypatch.setattr(transfer, "CONFIG", TransferConfig(
        multipart_threshold=transfer.MULTIPART_BYTES, multipart_chunksize=transfer.PART_BYTES,
        max_request_concurrency=1))  # parts one after the other: the edit falls between them
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    path = tmp_path / "od.bin"
    size = transfer.PART_BYTES + BIG
    path.write_bytes(b"a" * size)
    target = S3Prefix(s3, BUCKET, "scenario")
    plan = target.plan_upload(read_local(tmp_path, everything), everything)

    def edit_before_second_part(params, **_):
        if params["PartNumber"] == 2 and path.read_bytes()[:1] == b"a":
            time.sleep(0.05)  # past the file system's timestamp granularity
            path.write_bytes(b"b" * size)  # same size: only the stamp's times tell

    s3.meta.events.register("before-parameter-build.s3.UploadPart", edit_before_second_part)
    target.upload(plan, {"user_email": "someone@example.com"})

    versions = s3.list_object_versions(Bucket=BUCKET, Prefix="scenario/od.bin")["Versions"]
    assert len(versions) == 1
    body = s3.get_object(Bucket=BUCKET, Key="scenario/od.bin")["Body"].read()
    head = s3.head_object(Bucket=BUCKET, Key="scenario/od.bin")
    assert body == b"b" * size
    assert head["Metadata"]["checksum"] == hashlib.sha256(body).hexdigest()


def test_small_file_is_sent_with_its_headers_without_waiting_for_a_go_ahead(s3, tmp_path):
    """botocore's ``Expect: 100-continue`` costs a round trip per PutObject before its few kilobytes
    go; large parts (UploadPart) keep it, where a refusal saves sending megabytes."""
    (tmp_path / "small.csv").write_bytes(b"a" * 100)
    (tmp_path / "large.bin").write_bytes(b"b" * BIG)
    sent = []
    s3.meta.events.register("before-send.s3", lambda request, **_: sent.append(
        (request.method, "uploadId" in request.url, request.headers.get("Expect"))))

    sync(s3, tmp_path)

    assert ("PUT", False, None) in sent  # the small file's PutObject
    assert ("PUT", True, b"100-continue") in sent  # the large file's UploadPart
    assert ("PUT", False, b"100-continue") not in sent


def test_local_files_are_read_while_the_listing_travels_and_a_local_fault_wins(s3, tmp_path):
    """The listing runs on a thread while the local files are read; when both fail, the local
    fault is the one reported (it is the one the user can fix first)."""
    (tmp_path / "a.csv").write_text("1")
    seen = []
    s3.meta.events.register("before-send.s3.ListObjectsV2",
                            lambda **_: seen.append(threading.current_thread()))
    S3Prefix(s3, BUCKET, "scenario").plan_folder(tmp_path, everything)
    assert seen and seen[0] is not threading.current_thread()

    missing = S3Prefix(s3, "no-such-bucket", "scenario")
    with pytest.raises(ClientError, match="NoSuchBucket"):
        missing.plan_folder(tmp_path, everything)
    (tmp_path / "escape").symlink_to("/etc/hostname")
    with pytest.raises(s3sync.SyncError, match="escape"):
        missing.plan_folder(tmp_path, everything)


def test_digest_cache_reads_a_file_again_only_once_it_was_written(tmp_path, monkeypatch):
    """An unchanged file is not read again; one rewritten with its size and modification time kept
    is (its change time moved)."""
    monkeypatch.setattr(transfer, "SETTLED_S", 0.0)
    folder, cache = tmp_path / "scenario", tmp_path / "digests"
    path = folder / "inputs" / "od.csv"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"a" * 100)
    first = read_local(folder, everything, cache=cache)
    reads = []
    monkeypatch.setattr(s3sync, "digest_file", lambda p: reads.append(p) or transfer.digest_file(p))

    assert read_local(folder, everything, cache=cache) == first
    assert reads == []

    mtime = path.stat().st_mtime_ns
    time.sleep(0.05)  # past the file system's timestamp granularity
    path.write_bytes(b"b" * 100)
    os.utime(path, ns=(mtime, mtime))
    again = read_local(folder, everything, cache=cache)
    assert len(reads) == 1
    assert again["inputs/od.csv"].digest.checksum == hashlib.sha256(b"b" * 100).hexdigest()


@pytest.mark.parametrize("text", ["2026-11-28T12:30:05.000Z", "Sat, 28 Nov 2026 12:30:05 GMT"])
def test_timestamps_parse_to_the_same_instant_as_botocore(text):
    assert transfer.parse_timestamp(text) == botocore.utils.parse_timestamp(text)


@pytest.mark.parametrize("rel, outside", [
    ("inputs/pt/links.geojson", False),
    ("outputs/a..b.csv", False),
    ("outputs/carte de Montréal.geojson", False),
    ("../escaped.txt", True),
    ("inputs/../../escaped.txt", True),
    ("inputs//links.geojson", True),
    ("./inputs/x", True),
    ("inputs\\..\\..\\x", True),
    ("C:/Windows/x", True),
    ("inputs/\x01start-of-heading", True),
    ("inputs/\x1b[2Jclear-screen", True),
    ("inputs/delete\x7f", True),
    ("inputs/c1-control\x9b", True),
    ("inputs/" + "n" * 256, True),
])
def test_keys_that_would_escape_the_folder(rel, outside):
    assert (unsafe_reason(rel) is not None) is outside
