"""Socket permissions and password authentication on a real store."""

from __future__ import annotations

import os
import stat

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from harness.processes import resp_command, short_tempdir
from tests.conftest import StoreFactory


def test_unix_socket_is_private(blinkstore_factory: StoreFactory) -> None:
    with short_tempdir() as root:
        nested = root / "run" / "blinkstore"
        store = blinkstore_factory("--unix", str(nested / "s.sock"), unix=False, directory=root)
        assert stat.S_IMODE(os.stat(nested / "s.sock").st_mode) == 0o600
        # The directory the store had to create is private too.
        assert stat.S_IMODE(os.stat(nested).st_mode) == 0o700
        assert store.urls == [f"unix://{nested / 's.sock'}"]
        assert store.stop() == 0


def test_resp_auth(blinkstore_factory: StoreFactory) -> None:
    store = blinkstore_factory(unix=True, tcp=True, env={"BLINKSTORE_PASSWORD": "s3cret"})
    assert "s3cret" not in store.log_text()
    for kind in ("unix", "tcp"):
        with store.connect(kind) as sock:
            sock.sendall(resp_command("GET", "k"))
            assert sock.recv(100) == b"-NOAUTH Authentication required.\r\n"
            sock.sendall(resp_command("AUTH", "wrong"))
            assert sock.recv(100).startswith(b"-WRONGPASS")
            sock.sendall(resp_command("AUTH", "s3cret"))
            assert sock.recv(100) == b"+OK\r\n"
            sock.sendall(resp_command("GET", "k"))
            assert sock.recv(100) == b"$-1\r\n"
        # Authentication is per connection.
        with store.connect(kind) as sock:
            sock.sendall(resp_command("PING"))
            assert sock.recv(100) == b"-NOAUTH Authentication required.\r\n"


def test_redis_py_with_password(blinkstore_factory: StoreFactory) -> None:
    store = blinkstore_factory(env={"BLINKSTORE_PASSWORD": "pw"})
    # No retries: a refused password is final, and redis-py's default backoff is slow.
    no_retry = Retry(NoBackoff(), 0)
    good = redis.Redis(unix_socket_path=store.unix_path, password="pw")
    bad = redis.Redis(unix_socket_path=store.unix_path, password="nope", retry=no_retry)
    anonymous = redis.Redis(unix_socket_path=store.unix_path, retry=no_retry)
    try:
        assert good.set("k", "v")
        assert good.get("k") == b"v"
        with pytest.raises(redis.AuthenticationError):
            bad.get("k")
        with pytest.raises(redis.AuthenticationError):
            anonymous.get("k")
    finally:
        for client in (good, bad, anonymous):
            client.close()


def test_text_protocol_auth(blinkstore_factory: StoreFactory) -> None:
    store = blinkstore_factory("--password", "pw")
    with store.connect() as sock:
        sock.sendall(b"GET k\n")
        assert sock.recv(100) == b"ERROR authentication required\n"
        sock.sendall(b"AUTH wrong\n")
        assert sock.recv(100) == b"ERROR invalid password\n"
        sock.sendall(b"AUTH pw\n")
        assert sock.recv(100) == b"OK\n"
        sock.sendall(b"GET k\n")
        assert sock.recv(100) == b"NOT_FOUND\n"


def test_non_loopback_tcp_with_password_is_allowed(blinkstore_factory: StoreFactory) -> None:
    store = blinkstore_factory(
        "--tcp", "0.0.0.0:0", unix=False, env={"BLINKSTORE_PASSWORD": "long-secret"}
    )
    assert store.tcp_address is not None
    with store.connect("tcp") as sock:
        sock.sendall(b"AUTH long-secret\nSET a b\n")
        reply = b""
        while reply.count(b"\n") < 2:
            reply += sock.recv(100)
        assert reply == b"OK\nOK\n"
