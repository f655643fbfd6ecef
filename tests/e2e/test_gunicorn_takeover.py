"""A store killed under a real gunicorn master while clients read from its region.

The master revokes the dead store's region as soon as it reaps it (token 0 and heartbeat 0 in
the region's header, which every read checks), and its warm standby serves at once instead of
waiting for the dead store's heartbeat to go stale. Readers never pay for that speed: after the
successor acknowledged a write, no read returns the value it replaced, neither through the
client nor through a reader that still holds the old region. How fast the takeover is, is a
figure for ``python -m bench.restart``.
"""

from __future__ import annotations

import mmap
import os
import signal
import socket
import threading
from pathlib import Path

import pytest

from blinkstore_gunicorn.client import Cache
from blinkstore_gunicorn.shm import handout, layout
from blinkstore_gunicorn.shm.fds import recv_fds
from blinkstore_gunicorn.shm.reader import FALLBACK
from harness.gunicorn import CONF, Gunicorn, get, gunicorn, wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not handout.supported(), reason="needs Linux (memfd)"),
]

ROUNDS = 3
# Reads of one's own acknowledged write after each takeover.
CHECKS = 200


def _region_header(path: str) -> mmap.mmap:
    """A read-only mapping of the header page of the region the store on ``path`` serves."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10.0)
        sock.connect(path)
        sock.sendall(handout.REQUEST)
        _data, fds = recv_fds(sock, 256, 2)
    try:
        return mmap.mmap(fds[0], layout.HEADER_BYTES, prot=mmap.PROT_READ)
    finally:
        for fd in fds:
            os.close(fd)


def _word(header: mmap.mmap, index: int) -> int:
    return int.from_bytes(header[index * 8 : index * 8 + 8], "little")


class _Reader(threading.Thread):
    """Reads ``price`` from the region in a loop; a read that *started* after the successor
    acknowledged a write and returned the value that write replaced is a violation."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.cache = Cache(url, timeout=10.0, on_error="miss")
        self.stop = threading.Event()
        self.replaced: str | None = None  # set once the write replacing it is acknowledged
        self.reads = 0
        self.violations: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            replaced = self.replaced
            value = self.cache.get("price")
            self.reads += 1
            if replaced is not None and value == replaced:
                self.violations.append(replaced)


def _one_takeover(server: Gunicorn, path: str, writer: Cache, reader: _Reader, n: int) -> None:
    assert wait_until(lambda: len(server.store_processes()) == 2, 30.0), server.log()
    store = server.store_pid()
    old_value, new_value = f"v{n}", f"v{n}-after"
    writer.set("price", old_value)
    assert writer.get("price") == old_value
    held = handout.attach(path, None, 10.0)
    header = _region_header(path)
    try:
        served = held.get(b"price")
        assert isinstance(served, bytes), "the value is in the region"
        reads = reader.reads
        assert wait_until(lambda: reader.reads > reads + 100, 30.0), "the reader reads"
        os.kill(store, signal.SIGKILL)
        # Waits for the successor (within the client's timeout) and runs on it.
        writer.set("price", new_value)
        reader.replaced = old_value
        assert server.store_pid() != store
        for _ in range(CHECKS):
            assert writer.get("price") == new_value, "read its own acknowledged write"
            assert held.get(b"price") is FALLBACK and not held.alive
        # Revoked by the master, not merely stale: token 0 and heartbeat 0.
        assert (_word(header, layout.H_TOKEN), _word(header, layout.H_HEARTBEAT)) == (0, 0)
        reads = reader.reads
        assert wait_until(lambda: reader.reads > reads + 100, 30.0), "the reader reads again"
    finally:
        header.close()
        held.close()


def test_a_killed_store_s_region_is_revoked_and_the_standby_serves_at_once(tmp_path: Path):
    with gunicorn([*CONF, "-w", "1", "wsgi_app:app"], tmp_path) as server:
        url = get(server.url + "/env")["url"]
        path = url[len("unix://") :]
        writer = Cache(url, timeout=10.0)
        reader = _Reader(url)
        reader.start()
        try:
            for n in range(ROUNDS):
                _one_takeover(server, path, writer, reader, n)
        finally:
            reader.stop.set()
            reader.join(30)
            reader.cache.close()
            writer.close()
        assert reader.violations == []
        log = server.log()
        assert log.count("takes over") == ROUNDS, log
        # No successor waited for a dead store's heartbeat: the master had revoked its region.
        assert "for the previous store's shared-memory readers" not in log, log
