"""What the benchmarks share: moto server in this process, and a simulated network round trip.

Moto answers with no network time, so ``Network`` sleeps before every S3 request, as a
workstation waits for S3 (DESIGN.md); a round trip of 0 measures moto's own floor.
"""

import contextlib
import os
import socket
import time
from collections.abc import Iterator

from moto.server import ThreadedMotoServer


@contextlib.contextmanager
def moto_server(region: str) -> Iterator[str]:
    """moto on a free 127.0.0.1 port for the block; boto3 finds it through AWS_ENDPOINT_URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION=region, AWS_REGION=region)
    try:
        yield endpoint
    finally:
        server.stop()


class Network:
    """Adds the simulated round trip to every S3 request, and counts the requests."""

    def __init__(self, rtt_s: float):
        self.rtt_s = rtt_s
        self.requests = 0

    def attach(self, events):
        """Hook a client's (``client.meta.events``) or a session's (``session.events``) requests."""
        events.register("before-send.s3", self.before_send)

    def before_send(self, **_):
        self.requests += 1
        if self.rtt_s:
            time.sleep(self.rtt_s)
