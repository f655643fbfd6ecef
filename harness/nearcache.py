"""Several "hosts" on one machine: one ``redis-server`` and N stores that are near caches of
it (``BLINKSTORE_UPSTREAM``), for the near-cache tests and ``bench/nearcache.py``."""

from __future__ import annotations

import contextlib
import functools
import socket
from collections.abc import Iterator
from dataclasses import dataclass

from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.protocol.errors import ProtocolError
from harness.gunicorn import free_port, wait_until
from harness.processes import (
    RedisProcess,
    StoreProcess,
    redis_server_process,
    resp_command,
    short_tempdir,
    start_blinkstore,
)

__all__ = ["NearHosts", "kill_tracking", "near_hosts", "redis_call"]


@dataclass
class NearHosts:
    """The upstream and its near-cache stores."""

    redis: RedisProcess
    port: int
    stores: list[StoreProcess]

    @property
    def upstream_url(self) -> str:
        """``redis://127.0.0.1:PORT/0``: what the stores were given."""
        return f"redis://127.0.0.1:{self.port}/0"

    def call(self, *args: str | bytes) -> resp.Reply:
        """One command straight to redis-server (a non-plugin client such as redis-cli)."""
        return redis_call(self.port, *args)

    def store_info(self, index: int) -> dict[str, str]:
        """Store ``index``'s ``INFO upstream`` as a dict."""
        with self.stores[index].connect() as sock:
            sock.sendall(resp_command("INFO", "upstream"))
            text = _read_reply(sock)
        assert isinstance(text, bytes), text
        return dict(line.split(":", 1) for line in text.decode().splitlines() if ":" in line)

    def wait_tracking(self, timeout: float = 20.0) -> None:
        """Wait until every store's tracking link is up."""
        for index, store in enumerate(self.stores):
            up = wait_until(functools.partial(self.link_up, index), timeout)
            assert up, store.log_text()

    def link_up(self, index: int) -> bool:
        """Whether store ``index`` tracks keys on a live upstream link."""
        return self.store_info(index).get("upstream_link") == "up"


def kill_tracking(hosts: NearHosts) -> None:
    """CLIENT KILL every store's tracking connection (as a network cut would end it)."""
    listing = hosts.call("CLIENT", "LIST")
    assert isinstance(listing, bytes), listing
    for line in listing.decode().splitlines():
        fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
        if fields.get("name") == "blinkstore-tracking":
            hosts.call("CLIENT", "KILL", "ID", fields["id"])


def redis_call(port: int, *args: str | bytes, password: str | None = None) -> resp.Reply:
    """One command to the RESP server on 127.0.0.1:``port`` (after AUTH when ``password``
    is given); the parsed reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=10.0) as sock:
        if password is not None:
            sock.sendall(resp_command("AUTH", password))
            assert _read_reply(sock) == "OK"
        sock.sendall(resp_command(*args))
        return _read_reply(sock)


def _read_reply(sock: socket.socket) -> resp.Reply:
    reader = resp.ReplyReader()
    while True:
        reply = reader.next_reply()
        if reply is not resp.NEED_MORE:
            assert not isinstance(reply, ProtocolError), reply
            return reply  # type: ignore[return-value]
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed before the reply")
        reader.feed(chunk)


@contextlib.contextmanager
def near_hosts(
    count: int,
    *redis_args: str,
    port: int | None = None,
    store_args: tuple[str, ...] = (),
    credentials: str = "",
) -> Iterator[NearHosts]:
    """A redis-server on loopback TCP and ``count`` stores (started with ``store_args``, and
    ``credentials`` such as ``"user:password@"`` in their upstream URL) in front of it, all
    stopped after."""
    port = port or free_port()
    with redis_server_process("--port", str(port), *redis_args) as redis, short_tempdir() as top:
        stores: list[StoreProcess] = []
        try:
            for index in range(count):
                directory = top / f"h{index}"
                directory.mkdir()
                env = {"BLINKSTORE_UPSTREAM": f"redis://{credentials}127.0.0.1:{port}/0"}
                stores.append(start_blinkstore(*store_args, directory=directory, env=env))
            hosts = NearHosts(redis, port, stores)
            hosts.wait_tracking()
            yield hosts
        finally:
            for store in stores:
                store.stop()
