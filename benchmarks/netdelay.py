"""A delaying TCP proxy on loopback: every client meets the same network in front of moto.

Each chunk is forwarded half a round trip after it arrived, in order, in both directions; a new
connection also pays the TCP handshake's round trip before its first bytes move on. Bandwidth is
not limited (loopback's), only latency is added, as between a workstation and S3. It runs in its
own process, so it takes no CPU time from the measured client's interpreter.

    python benchmarks/netdelay.py --target 127.0.0.1:5000 --rtt-ms 30

prints ``listening <port>`` once it accepts connections on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio

CHUNK = 256 * 1024
QUEUED_CHUNKS = 64  # back-pressure: at most 16 MB in flight per direction


async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float,
                  not_before: float) -> None:
    """Copy ``reader`` to ``writer``, each chunk ``delay_s`` after it arrived (and not before
    ``not_before``, the end of the emulated handshake)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUED_CHUNKS)

    async def receive() -> None:
        try:
            while data := await reader.read(CHUNK):
                await queue.put((max(loop.time(), not_before) + delay_s, data))
        except ConnectionError:
            pass
        await queue.put((max(loop.time(), not_before) + delay_s, b""))

    receiving = asyncio.create_task(receive())
    try:
        while True:
            due, data = await queue.get()
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except ConnectionError:
        pass
    finally:
        receiving.cancel()


async def serve(target_host: str, target_port: int, rtt_s: float) -> None:
    async def connection(client_reader, client_writer):
        handshake_done = asyncio.get_running_loop().time() + rtt_s
        try:
            server_reader, server_writer = await asyncio.open_connection(target_host, target_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(forward(client_reader, server_writer, rtt_s / 2, handshake_done),
                             forward(server_reader, client_writer, rtt_s / 2, 0.0))
        for writer in (client_writer, server_writer):
            writer.close()

    server = await asyncio.start_server(connection, "127.0.0.1", 0, backlog=1024)
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="host:port of the server behind the proxy")
    parser.add_argument("--rtt-ms", type=float, default=30.0, help="round trip added (0: none)")
    args = parser.parse_args()
    host, port = args.target.rsplit(":", 1)
    asyncio.run(serve(host, int(port), args.rtt_ms / 1000))


if __name__ == "__main__":
    main()
