"""Every supported worker class shares one store through the plugin (real gunicorn, httpx).

Write through one worker, read through another: the value is there at once, because there is
one cache per host, not one per worker.
"""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

import httpx
import pytest

from harness.gunicorn import gunicorn, wait_until

pytestmark = pytest.mark.slow

CONF = ["-c", "python:blinkstore_gunicorn.conf"]

WORKER_CLASSES = [
    pytest.param("sync", "wsgi_app:app", [], id="sync"),
    pytest.param("gthread", "wsgi_app:app", ["--threads", "4"], id="gthread"),
    pytest.param("gevent", "wsgi_app:app", [], id="gevent"),
    pytest.param("uvicorn_worker.UvicornWorker", "asgi_app:app", [], id="uvicorn_worker"),
    pytest.param("uvicorn.workers.UvicornWorker", "asgi_app:app", [], id="uvicorn.workers"),
    pytest.param("asgi", "asgi_app:app", [], id="gunicorn-asgi"),
]


def fresh_get(url: str) -> dict:
    """One GET on a new connection, so that consecutive requests may reach different workers."""
    reply = httpx.get(url, timeout=10.0)
    assert reply.status_code == 200, reply.text
    body: dict = reply.json()
    return body


def write_then_read_elsewhere(base: str) -> tuple[int, int]:
    """Set a value through one worker, read it through another; return both pids."""
    key, value = f"k-{uuid.uuid4().hex}", uuid.uuid4().hex
    written = fresh_get(f"{base}/set?key={key}&value={value}")
    assert written["wrapped"] is True
    readers: list[int] = []

    def read_elsewhere() -> bool:
        body = fresh_get(f"{base}/get?key={key}")
        # Host-wide consistency: whichever worker answers sees the value immediately.
        assert body["value"] == value, body
        readers.append(body["pid"])
        return body["pid"] != written["pid"]

    # Bounded in time, not in requests: the other worker may still be booting.
    assert wait_until(read_elsewhere, 60.0, interval=0.0), f"only {set(readers)} answered"
    return written["pid"], readers[-1]


@pytest.mark.parametrize(("worker_class", "app", "extra"), WORKER_CLASSES)
def test_workers_share_one_store(tmp_path: Path, worker_class: str, app: str, extra: list[str]):
    args = [*CONF, "-w", "2", "-k", worker_class, *extra, app]
    with gunicorn(args, tmp_path) as server:
        writer, reader = write_then_read_elsewhere(server.url)
        assert writer != reader
        assert {writer, reader} <= set(server.worker_pids())


def pipe_inodes(pid: int) -> set[str]:
    """The pipes ``pid`` holds open, as ``pipe:[inode]`` strings."""
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("pipe:"):
            found.add(target)
    return found


def test_private_socket_url_and_no_inherited_supervision_fds(tmp_path: Path):
    with gunicorn([*CONF, "-w", "2", "wsgi_app:app"], tmp_path) as server:
        url = fresh_get(server.url + "/env")["url"]
        assert url.startswith("unix://")
        path = Path(url[len("unix://") :])
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert path.parent.name.startswith("blinkstore-")
        # The store holds the lifeline's read end and writes the log pipe; a worker holding
        # either would keep the store alive after the master died, or hide the store's exit.
        store_pipes = pipe_inodes(server.store_pid())
        assert store_pipes
        for worker in server.worker_pids():
            assert not pipe_inodes(worker) & store_pipes, worker
