"""What the benchmarks share: moto server in a process of its own, behind a delaying proxy.

Moto's own server (werkzeug's) closes the connection after every response, which would make
every request pay a new connection's round trip, unlike S3; here moto's application is served by
cheroot, which keeps connections alive as S3 does (``python emulated_aws.py PORT``).
Moto answers with no network time, so every client (ours, ``aws``, ``s5cmd``) reaches it through
``netdelay.py``, a loopback proxy adding the round trip a workstation sees from S3 (DESIGN.md).
Both run as separate, quiet processes: their logs go nowhere, and they take no CPU time from the
measured client's interpreter. A round trip of 0 still goes through the proxy, so the two columns
differ by latency only; it measures moto's own floor.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

PROXY = Path(__file__).with_name("netdelay.py")
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{process.args} did not listen on {port} within 60 s")


@contextlib.contextmanager
def running(command: list[str], stdout=subprocess.DEVNULL) -> Iterator[subprocess.Popen]:
    process = subprocess.Popen(command, stdout=stdout, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextlib.contextmanager
def moto_server(region: str) -> Iterator[str]:
    """moto server (its request log discarded) on a free port; sets the credentials and region
    every client reads from the environment. Yields its direct endpoint (no latency)."""
    port = free_port()
    os.environ.update(CREDENTIALS, AWS_DEFAULT_REGION=region, AWS_REGION=region)
    with running([sys.executable, __file__, str(port)]) as process:
        wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def delayed(endpoint: str, rtt_ms: float) -> Iterator[str]:
    """A ``netdelay.py`` proxy adding ``rtt_ms`` in front of ``endpoint``; yields its endpoint."""
    target = endpoint.removeprefix("http://")
    command = [sys.executable, str(PROXY), "--target", target, "--rtt-ms", str(rtt_ms)]
    with running(command, stdout=subprocess.PIPE) as process:
        port = int(process.stdout.readline().split()[1])
        yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def network(region: str, *rtts_ms: float) -> Iterator[tuple[str, dict[float, str]]]:
    """moto server and one proxy per round trip: yields (direct endpoint, {rtt_ms: endpoint})."""
    with moto_server(region) as direct, contextlib.ExitStack() as stack:
        yield direct, {rtt: stack.enter_context(delayed(direct, rtt)) for rtt in rtts_ms}


def use(endpoint: str) -> None:
    """Point boto3 clients made from now on (and child processes) at ``endpoint``."""
    os.environ["AWS_ENDPOINT_URL"] = endpoint


def reset(direct: str) -> None:
    """Empty moto (every bucket and object), freeing what earlier runs stored."""
    request = urllib.request.Request(f"{direct}/moto-api/reset", data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=60):
        pass


class Requests:
    """Counts a client's (``client.meta.events``) or a session's (``session.events``) S3 requests."""

    def __init__(self):
        self.count = 0

    def attach(self, events):
        events.register("before-send.s3", self.before_send)

    def before_send(self, **_):
        self.count += 1


def keep_read_objects(count: int = 8) -> None:
    """Moto reads an object's whole body for every GET, ranged ones too, so a download in N parts
    would cost N full reads, unlike S3. Keep the bodies of the last ``count`` objects read: each
    part then costs its own length. Writing an object forgets it."""
    import threading

    from moto.s3.models import FakeKey

    read, write = FakeKey.value.fget, FakeKey.value.fset
    kept: dict[int, tuple[FakeKey, bytes]] = {}
    lock = threading.Lock()

    def value(key):
        with lock:
            hit = kept.get(id(key))
        if hit and hit[0] is key:
            return hit[1]
        body = read(key)
        with lock:
            while len(kept) >= count:
                kept.pop(next(iter(kept)))
            kept[id(key)] = (key, body)
        return body

    def set_value(key, body):
        with lock:
            kept.pop(id(key), None)
        write(key, body)

    FakeKey.value = property(value, set_value)


def serve_moto(port: int) -> None:
    """Moto's application on ``127.0.0.1:port`` with HTTP keep-alive (cheroot), until killed.

    cheroot sends header names as moto writes them (S3's lowercase ``x-amz-meta-*``)."""
    from cheroot import wsgi
    from moto.server import DomainDispatcherApplication, create_backend_app

    keep_read_objects()
    server = wsgi.Server(("127.0.0.1", port), DomainDispatcherApplication(create_backend_app),
                         numthreads=64, request_queue_size=2048, timeout=60)
    server.safe_start()

if __name__ == "__main__":
    serve_moto(int(sys.argv[1]))
