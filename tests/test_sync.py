"""The sync engine on its own, against moto in server mode: the cases the scenario tests' small
files never reach (multipart ETags, keys that would escape the folder)."""

from __future__ import annotations

import hashlib

import pytest

from fixtures.aws import REGION
from quetzal_deploy.s3sync import S3Prefix, escapes, read_local

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


@pytest.mark.parametrize("rel, outside", [
    ("inputs/pt/links.geojson", False),
    ("outputs/a..b.csv", False),
    ("../escaped.txt", True),
    ("inputs/../../escaped.txt", True),
    ("inputs//links.geojson", True),
    ("./inputs/x", True),
    ("inputs\\..\\..\\x", True),
    ("C:/Windows/x", True),
])
def test_keys_that_would_escape_the_folder(rel, outside):
    assert escapes(rel) is outside
