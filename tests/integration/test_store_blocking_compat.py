"""Blocking commands where nothing may wait, against redis-server and ``blinkstore serve``:
inside MULTI/EXEC they run without waiting (their timeout reply), and from a script the
blocking pops are refused while XREAD without BLOCK runs (Redis 7.0's rules)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import redis

from harness.gunicorn import wait_until
from harness.processes import RedisProcess, StoreProcess
from tests.support.processes import resp_server_process


@pytest.fixture(scope="module", params=["store", "redis"])
def server(request: pytest.FixtureRequest) -> Iterator[StoreProcess | RedisProcess]:
    with resp_server_process(request.param) as process:
        yield process


@pytest.fixture
def client(server: StoreProcess | RedisProcess) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(server.url, socket_timeout=10) as connection:
        connection.flushdb()
        yield connection


def test_blocking_commands_in_a_transaction_do_not_wait(client: redis.Redis) -> None:
    client.rpush("full", "a", "b")
    client.zadd("z", {"m": 1})
    client.xadd("s", {"f": "v"}, id="1-0")
    pipe = client.pipeline(transaction=True)
    pipe.blpop(["empty"], timeout=0)
    pipe.brpop(["empty", "full"], timeout=0)
    pipe.blmove("empty", "dst", timeout=0)
    pipe.bzpopmin(["nothing"], timeout=0)
    pipe.bzpopmax(["nothing", "z"], timeout=0)
    pipe.xread({"s": "$"}, block=0)
    pipe.xread({"s": "0"}, block=0)
    pipe.lpush("empty", "late")
    got = pipe.execute()
    assert got[:5] == [None, [b"full", b"b"], None, None, [b"z", b"m", 1.0]] or got[:5] == [
        None,
        (b"full", b"b"),
        None,
        None,
        (b"z", b"m", 1.0),
    ]
    assert got[5] in (None, [])
    assert got[6] == [[b"s", [(b"1-0", {b"f": b"v"})]]]
    assert got[7] == 1
    # Nothing was left parked: the connection answers at once.
    assert client.ping() and client.info("clients")["blocked_clients"] == 0


def test_blocking_commands_in_scripts(client: redis.Redis) -> None:
    for call in (
        "redis.call('blpop', 'k', 0)",
        "redis.call('brpop', 'k', 0)",
        "redis.call('blmove', 'k', 'd', 'LEFT', 'LEFT', 0)",
        "redis.call('bzpopmin', 'k', 0)",
        "redis.call('bzpopmax', 'k', 0)",
    ):
        with pytest.raises(redis.ResponseError, match=r"^This Redis command is not allowed from"):
            client.eval(f"return {call}", 0)
    with pytest.raises(
        redis.ResponseError,
        match=r"^xread command is not allowed with BLOCK option from scripts",
    ):
        client.eval("return redis.call('xread', 'BLOCK', 0, 'STREAMS', 'k', '$')", 0)
    client.xadd("s", {"f": "v"}, id="1-0")
    assert client.eval("return redis.call('xread', 'STREAMS', 's', 'nos', '0', '0')", 0) == [
        [b"s", [[b"1-0", [b"f", b"v"]]]]
    ]
    assert client.eval("return redis.call('xread', 'STREAMS', 's', '1-0')", 0) is None


def test_a_waiter_for_another_type_stays_parked(server: StoreProcess | RedisProcess) -> None:
    # A BZPOPMIN parked on a key that a LPUSH then makes a list: the push succeeds and the
    # waiter keeps waiting (it wants a sorted set), as in Redis; so does a BLPOP after an XADD.
    with (
        redis.Redis.from_url(server.url, socket_timeout=30) as waiter,
        redis.Redis.from_url(server.url, socket_timeout=30) as writer,
    ):
        writer.delete("k", "k2")
        answers: list[object] = []

        def wait() -> None:
            answers.append(waiter.bzpopmin(["k"], timeout=30))
            answers.append(waiter.blpop(["k2"], timeout=30))

        thread = threading.Thread(target=wait)
        thread.start()
        try:
            assert wait_until(lambda: writer.info("clients")["blocked_clients"] == 1, timeout=20)
            assert writer.lpush("k", "item") == 1
            writer.delete("k")
            writer.zadd("k", {"m": 2})
            assert wait_until(lambda: len(answers) == 1, timeout=20)
            assert wait_until(lambda: writer.info("clients")["blocked_clients"] == 1, timeout=20)
            assert writer.xadd("k2", {"f": "v"}, id="1-0") == b"1-0"
            writer.delete("k2")
            writer.rpush("k2", "x")
        finally:
            thread.join(timeout=30)
        assert answers[0] in ([b"k", b"m", 2.0], (b"k", b"m", 2.0))
        assert answers[1] in ([b"k2", b"x"], (b"k2", b"x"))
