"""Write ``server/commands/redis_commands.resp``: redis-server's own ``COMMAND DOCS`` and
``COMMAND INFO`` (RESP3) for the commands the store shares with it.

Run it after adding a Redis command to the store, with the redis-server the store follows
(7.0.15): ``.venv/bin/python scripts/redis_command_docs.py``. It starts a throwaway
redis-server on a Unix socket, asks, and writes the two replies as they came.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from blinkstore_gunicorn.server.commands import COMMANDS
from blinkstore_gunicorn.server.commands.commanddocs import DATA_FILE
from harness.processes import redis_server_process, resp_command

TARGET = Path(__file__).resolve().parent.parent / "blinkstore_gunicorn/server/commands" / DATA_FILE


def _ask(sock: socket.socket, *args: str) -> bytes:
    """One reply, whole: read until redis-server has nothing more after a PING's PONG."""
    sock.sendall(resp_command(*args) + resp_command("PING"))
    data = b""
    while not data.endswith(b"+PONG\r\n"):
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("redis-server closed the connection")
        data += chunk
    return data[: -len(b"+PONG\r\n")]


def main() -> None:
    with redis_server_process() as redis:
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(redis.unix_path)
        _ask(sock, "HELLO", "3")
        version = _ask(sock, "INFO", "server").split(b"redis_version:")[1].split(b"\r\n")[0]
        names = sorted(COMMANDS)
        docs = _ask(sock, "COMMAND", "DOCS", *names)
        info = _ask(sock, "COMMAND", "INFO", *names)
        sock.close()
    TARGET.write_bytes(docs + info)
    print(f"{TARGET}: redis-server {version.decode()}, {len(names)} commands asked")


if __name__ == "__main__":
    main()
