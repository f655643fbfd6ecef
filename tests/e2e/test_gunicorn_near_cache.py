"""Three gunicorn "hosts", each with its own store as a near cache of one redis-server
(``BLINKSTORE_UPSTREAM``): the application code and the workers' URL are unchanged."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from blinkstore_gunicorn.client.serializers import JSONSerializer
from harness.gunicorn import Gunicorn, cmdline, free_port, gunicorn, wait_until
from harness.nearcache import redis_call
from harness.processes import REDIS_SERVER, redis_server_process

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed"),
]

ARGS = ["-c", "python:blinkstore_gunicorn.conf", "-w", "2", "-k", "uvicorn_worker.UvicornWorker"]
PASSWORD = "n3ar-s3cret"


def value_on(server: Gunicorn, key: str) -> object:
    reply = httpx.get(f"{server.url}/get?key={key}", timeout=10.0)
    assert reply.status_code == 200, reply.text
    return reply.json()["value"]


def shows(server: Gunicorn, key: str, expected: object) -> bool:
    return value_on(server, key) == expected


def logged(server: Gunicorn, text: str) -> bool:
    return text in server.log()


@contextlib.contextmanager
def near_fleet(tmp_path: Path, count: int) -> Iterator[tuple[int, list[Gunicorn]]]:
    """A password-protected redis-server and ``count`` gunicorn hosts in front of it."""
    port = free_port()
    with redis_server_process("--port", str(port), "--requirepass", PASSWORD):
        env = {"BLINKSTORE_UPSTREAM": f"redis://:{PASSWORD}@127.0.0.1:{port}/0"}
        with contextlib.ExitStack() as stack:
            hosts = []
            for index in range(count):
                directory = tmp_path / f"host{index}"
                directory.mkdir()
                hosts.append(
                    stack.enter_context(gunicorn([*ARGS, "asgi_app:app"], directory, env=env))
                )
            yield port, hosts


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[int, list[Gunicorn]]]:
    with near_fleet(tmp_path, 3) as found:
        yield found


def test_three_hosts_share_one_coherent_cache(fleet: tuple[int, list[Gunicorn]]) -> None:
    port, (a, b, c) = fleet
    key = f"k-{uuid.uuid4().hex}"
    assert httpx.get(f"{a.url}/set?key={key}&value=first", timeout=10.0).status_code == 200
    assert value_on(b, key) == "first" and value_on(c, key) == "first"
    assert httpx.get(f"{a.url}/set?key={key}&value=second", timeout=10.0).status_code == 200
    assert value_on(a, key) == "second"
    for host in (b, c):
        assert wait_until(functools.partial(shows, host, key, "second"), 10.0), host.log()
    # Encoded as the cache encodes a str, so the JSON endpoint can show it.
    redis_call(port, "SET", key, JSONSerializer().dumps("from redis"), password=PASSWORD)
    for host in (a, b, c):
        assert wait_until(functools.partial(shows, host, key, "from redis"), 10.0), host.log()


def test_the_upstream_password_is_on_no_command_line_and_in_no_log(
    fleet: tuple[int, list[Gunicorn]],
) -> None:
    _, hosts = fleet
    for host in hosts:
        store = host.store_pid()
        assert PASSWORD not in cmdline(store)
        assert wait_until(functools.partial(logged, host, "near cache of upstream"), 10.0)
        assert PASSWORD not in host.log()


def test_a_successor_store_adopts_no_copy_it_cannot_keep_coherent(tmp_path: Path) -> None:
    with near_fleet(tmp_path, 1) as (port, (host,)):
        key = f"k-{uuid.uuid4().hex}"
        assert httpx.get(f"{host.url}/set?key={key}&value=kept", timeout=10.0).status_code == 200
        assert value_on(host, key) == "kept"  # fetched, so in the shared region
        # From now on no new connection gets into Redis: the successor cannot track keys.
        redis_call(port, "CONFIG", "SET", "requirepass", "changed", password=PASSWORD)
        try:
            assert wait_until(lambda: len(host.store_processes()) == 2, 60.0), host.log()
            store = host.store_pid()
            os.kill(store, signal.SIGKILL)
            assert wait_until(lambda: host.store_pid() != store, 60.0), host.log()
            path = httpx.get(f"{host.url}/env", timeout=10.0).json()["url"][len("unix://") :]
            successor = redis.Redis(unix_socket_path=path, socket_timeout=10.0)
            try:
                assert wait_until(lambda: _answers(successor), 60.0), host.log()
                # Adopted, the dead store's copy would be served from the region with no
                # tracking connection to invalidate it.
                assert successor.info("keyspace").get("db0", {}).get("keys", 0) == 0
                assert successor.info("upstream")["upstream_link"] != "up"
            finally:
                successor.close()
            assert value_on(host, key) is None  # an outage: a miss, not an untracked copy
        finally:
            redis_call(port, "CONFIG", "SET", "requirepass", PASSWORD, password="changed")
        assert wait_until(functools.partial(shows, host, key, "kept"), 30.0), host.log()


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
