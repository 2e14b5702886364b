"""Benchmark: emptying a versioned model bucket before destroy, `invoke destroy` vs by hand.

`invoke destroy` lists the first page of versions and delete markers and removes it with one
DeleteObjects call (up to 1,000 keys), until the bucket is empty. The old procedure emptied the
bucket by hand, which in a script means one DeleteObject per version. Both reach moto server
(a process of its own) through ``netdelay.py``, a loopback proxy adding a round trip (30 ms by
default, what a workstation sees from S3). The same two procedures through a 0 ms proxy show
moto's own CPU cost (the floor no client can beat).

    python benchmarks/bench_destroy.py [--keys 200] [--versions 3] [--rtt-ms 30]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import boto3
from emulated_aws import network, use

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from quetzal_deploy.aws import Aws  # noqa: E402
from quetzal_deploy.infra.stack import empty_bucket  # noqa: E402
from quetzal_deploy.settings import Settings  # noqa: E402

BUCKET = "bench-destroy"
REGION = "us-east-1"


def fill(keys: int, versions: int) -> int:
    """``keys`` objects with ``versions`` versions each, half of them deleted (a marker each)."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    for version in range(versions):
        for key in range(keys):
            s3.put_object(Bucket=BUCKET, Key=f"scenario{key % 10}/outputs/{key}.json", Body=b"%d" % version)
    for key in range(0, keys, 2):
        s3.delete_object(Bucket=BUCKET, Key=f"scenario{key % 10}/outputs/{key}.json")
    return keys * versions + keys // 2


def by_hand(client) -> int:
    """One DeleteObject per version and delete marker, as a hand-written loop does."""
    deleted = 0
    for page in client.get_paginator("list_object_versions").paginate(Bucket=BUCKET):
        for entry in page.get("Versions", []) + page.get("DeleteMarkers", []):
            client.delete_object(Bucket=BUCKET, Key=entry["Key"], VersionId=entry["VersionId"])
            deleted += 1
    return deleted


def timed(procedure, chosen: boto3.Session) -> tuple[float, int]:
    start = time.perf_counter()
    count = procedure(chosen)
    return time.perf_counter() - start, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--versions", type=int, default=3)
    parser.add_argument("--rtt-ms", type=float, default=30.0)
    options = parser.parse_args()
    settings = Settings(root=Path("."), model_name=BUCKET, region=REGION, bucket=BUCKET,
                        ecr_repo=BUCKET, function_name=BUCKET, state_machine=BUCKET,
                        memory_mb=128, timeout_s=1, storage_mb=512)
    procedures = {"by hand": lambda chosen: by_hand(chosen.client("s3")),
                  "invoke destroy": lambda chosen: empty_bucket(Aws(settings, chosen), BUCKET)}
    with network(REGION, options.rtt_ms, 0.0) as (direct, proxies):
        results = {}
        for rtt_ms in (options.rtt_ms, 0.0):
            for name, procedure in procedures.items():
                use(direct)
                entries = fill(options.keys, options.versions)
                use(proxies[rtt_ms])
                seconds, count = timed(procedure, boto3.Session(region_name=REGION))
                assert count == entries, (name, count, entries)
                boto3.client("s3", region_name=REGION).delete_bucket(Bucket=BUCKET)
                results[name, rtt_ms] = seconds
                print(f"{name:15} {entries} versions and markers, {rtt_ms:4.0f} ms round trip: "
                      f"{seconds:6.2f} s")
        for rtt_ms in (options.rtt_ms, 0.0):
            ratio = results["by hand", rtt_ms] / results["invoke destroy", rtt_ms]
            print(f"at {rtt_ms:.0f} ms: invoke destroy is {ratio:.1f}x faster than by hand")


if __name__ == "__main__":
    main()
