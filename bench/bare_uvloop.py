"""The floor for a Python store: a minimal uvloop server that answers GET and SET, nothing else.

It assumes what ``bench/store.py``'s client does (one whole RESP command per read, no
pipelining) and checks nothing; it exists only to show how close any uvloop + CPython server
can come to redis-server in the same harness (``python -m bench.store --floor``):

    python -m bench.bare_uvloop /path/to/socket
"""

from __future__ import annotations

import asyncio
import sys

import uvloop


class BareProtocol(asyncio.Protocol):
    """GET and SET from a dict; every read is taken to be exactly one command."""

    values: dict[bytes, bytes] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        parts = data.split(b"\r\n")
        if parts[2] == b"GET":
            value = self.values.get(parts[4])
            self.transport.write(
                b"$-1\r\n" if value is None else b"$%d\r\n%b\r\n" % (len(value), value)
            )
        else:
            self.values[parts[4]] = parts[6]
            self.transport.write(b"+OK\r\n")


async def serve(path: str) -> None:
    """Listen on the Unix socket ``path`` until killed."""
    server = await asyncio.get_running_loop().create_unix_server(BareProtocol, path)
    print(f"listening on {path}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve(sys.argv[1]))
