"""Helpers for the compatibility suite: the two servers every test runs against, and waiting
on what a program started by a test prints.

Every server listens on a Unix socket and on a loopback TCP port, since some libraries
(aiocache) only take a host and a port.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

from harness.gunicorn import free_port
from harness.processes import REDIS_SERVER, blinkstore_process, redis_server_process
from tests.integration.integration_support import process_output

SERVERS = ["store", "redis"]


@dataclass(frozen=True)
class Server:
    """Where a server of this suite listens: ``kind`` is ``"store"`` or ``"redis"``."""

    kind: str
    unix_path: str
    host: str
    port: int

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``: the URL every library takes."""
        return f"redis://{self.host}:{self.port}/0"

    def client(self) -> redis.Redis:
        """A redis-py client on the Unix socket."""
        return redis.Redis(unix_socket_path=self.unix_path)


@contextlib.contextmanager
def compat_server(kind: str) -> Iterator[Server]:
    """A redis-server or a ``blinkstore serve`` on a Unix socket and a TCP port."""
    if kind == "store":
        with blinkstore_process(tcp=True) as store:
            assert store.unix_path is not None and store.tcp_address is not None
            yield Server(kind, store.unix_path, *store.tcp_address)
        return
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    # redis-server keeps the last --port it is given: this one overrides the harness's 0.
    with redis_server_process("--port", str(port), "--bind", "127.0.0.1") as server:
        yield Server(kind, server.unix_path, "127.0.0.1", port)


def wait_output(proc: subprocess.Popen[bytes], text: str, timeout: float = 60) -> str:
    """Wait until a process from ``running_process`` has printed ``text``; fail with its
    output if it ends or the deadline passes first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        output = process_output(proc)
        if text in output:
            return output
        if proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode} before {text!r}:\n{output}")
        time.sleep(0.05)
    raise AssertionError(f"no {text!r} within {timeout}s:\n{process_output(proc)}")


def skip_without(server: Server, *commands: str) -> None:
    """Skip when ``server`` lacks one of ``commands`` (``"XADD"``, ``"CLIENT LIST"``): the
    store gets them on another branch, and the test then runs by itself.

    A command is asked for with ``COMMAND INFO``; a subcommand is run (only harmless ones are
    named), since the store does not describe subcommands.
    """
    missing = []
    with server.client() as client:
        # The raw reply: redis-py's parser for COMMAND fails on the nil of an unknown command.
        client.set_response_callback("COMMAND", lambda response, **options: response)
        for command in commands:
            name, *sub = command.split()
            if not sub:
                if client.execute_command("COMMAND", "INFO", name)[0] is None:
                    missing.append(command)
                continue
            try:
                client.execute_command(name, *sub)
            except redis.exceptions.ResponseError as exc:
                if str(exc).startswith(("unknown command", "unknown subcommand")):
                    missing.append(command)
    if missing:
        pytest.skip(f"{server.kind} lacks {', '.join(missing)}")
