"""Benchmark: syncing a 1,000-file scenario to S3, new sync vs the old delete-then-upload.

Moto server runs in a process of its own; every client reaches it through ``netdelay.py``, a
loopback proxy adding a round trip (30 ms by default, what a workstation sees from S3). Moto's
floor is the same PUT requests through a 0 ms proxy, sent by 16 threads: the emulator's own CPU
cost, which no client can beat.

    python benchmarks/bench_sync.py [--files 1000] [--rtt-ms 30] [--runs 2]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
from botocore.config import Config
from emulated_aws import network

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from quetzal_deploy.sync.s3sync import S3Prefix, read_local  # noqa: E402

BUCKET = "bench-sync"
REGION = "us-east-1"
FLOOR_THREADS = 16


def make_files(folder: Path, count: int) -> None:
    """``count`` files of 1-10 KB in a scenario-like tree (seeded: same files every run)."""
    rng = random.Random(42)
    for index in range(count):
        path = folder / "inputs" / f"group{index % 20:02d}" / f"file{index:04d}.geojson"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randint(1024, 10 * 1024)))


def client(endpoint: str):
    """An S3 client on ``endpoint`` (a proxy adding the round trip)."""
    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION,
                        config=Config(retries={"mode": "standard"}, max_pool_connections=32))


def new_sync(s3, folder: Path, prefix: str) -> int:
    """This repo's sync; returns the number of files uploaded."""
    target = S3Prefix(s3, BUCKET, prefix)
    plan = target.plan_upload(read_local(folder, lambda rel: True), lambda rel: True)
    target.upload(plan, {"user_email": "bench@example.com"})
    return len(plan.upload)


def old_sync(s3, folder: Path, prefix: str) -> int:
    """The old way: delete the prefix, then upload every file one by one."""
    listed = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/")
    keys = [{"Key": item["Key"]} for page in listed for item in page.get("Contents", [])]
    for start in range(0, len(keys), 1000):
        s3.delete_objects(Bucket=BUCKET, Delete={"Objects": keys[start:start + 1000]})
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    for path in files:
        s3.upload_file(str(path), BUCKET, f"{prefix}/{path.relative_to(folder).as_posix()}")
    return len(files)


def floor(s3, folder: Path, prefix: str) -> int:
    """The same PUTs at zero added latency from 16 threads: moto's own cost."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())

    def put(path: Path):
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}/{path.relative_to(folder).as_posix()}",
                      Body=path.read_bytes())

    with ThreadPoolExecutor(FLOOR_THREADS) as pool:
        list(pool.map(put, files))
    return len(files)


def best(runs: int, action, s3, folder: Path, name: str) -> tuple[float, int]:
    """Fastest of ``runs`` timings (each on a fresh prefix unless ``name`` is reused on purpose)."""
    timings = []
    for run in range(runs):
        start = time.perf_counter()
        count = action(s3, folder, name.format(run=run))
        timings.append(time.perf_counter() - start)
    return min(timings), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--rtt-ms", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=2, help="runs of the fast cases; the best is shown")
    args = parser.parse_args()

    with network(REGION, args.rtt_ms, 0) as (_, proxies):
        slow, fast = client(proxies[args.rtt_ms]), client(proxies[0])
        fast.create_bucket(Bucket=BUCKET)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            make_files(folder, args.files)
            rows = {
                "moto floor: same PUTs, 0 ms, 16 threads": best(args.runs, floor, fast, folder, "floor{run}"),
                "new: first sync": best(args.runs, new_sync, slow, folder, "new{run}"),
                "new: unchanged re-sync": best(args.runs, new_sync, slow, folder, "new0"),
                "old: delete prefix + sequential uploads (first)": best(1, old_sync, slow, folder, "old"),
                "old: delete prefix + sequential uploads (again)": best(1, old_sync, slow, folder, "old"),
            }

    floor_s, new_first, new_again, old_first, old_again = (seconds for seconds, _ in rows.values())
    print(f"\n{args.files} files of 1-10 KB, moto server behind a {args.rtt_ms:g} ms round-trip "
          f"proxy (floor: 0 ms); fast cases: best of {args.runs}\n")
    print(f"{'run':52} {'seconds':>8} {'uploads':>8}")
    for label, (seconds, count) in rows.items():
        print(f"{label:52} {seconds:8.2f} {count:8d}")
    print()
    print(f"first sync vs moto floor:          {new_first / floor_s:6.2f}x  (target <= 1.2x)")
    print(f"first sync speed-up vs old:        {old_first / new_first:6.1f}x  (about 4x expected)")
    print(f"unchanged re-sync speed-up vs old: {old_again / new_again:6.1f}x  (target >= 20x)")


if __name__ == "__main__":
    main()
