"""redis-py's own recipes: ``Lock``, ``transaction()`` retrying on WATCH, ``register_script``,
pipelines and the data types, the same on redis-server and on the store."""

from __future__ import annotations

import threading

import pytest
import redis

from tests.compat.compat_support import Server


def test_lock_excludes_until_released(fresh: Server) -> None:
    with fresh.client() as first, fresh.client() as second:
        held = first.lock("compat:lock", timeout=30)
        wanted = second.lock("compat:lock", timeout=30)
        assert held.acquire(blocking=False)
        assert not wanted.acquire(blocking=False)
        assert held.extend(10)
        assert held.owned() and not wanted.owned()
        held.release()
        assert wanted.acquire(blocking_timeout=10)
        with pytest.raises(redis.exceptions.LockNotOwnedError):
            held.do_release(b"someone else's token")
        wanted.release()
        assert not second.exists("compat:lock")


def test_transaction_retries_on_watch_until_exact(fresh: Server) -> None:
    threads, increments = 4, 50
    attempts: list[int] = []

    def add_one(pipe: redis.client.Pipeline) -> None:
        attempts.append(1)
        value = int(pipe.get("compat:balance") or 0)
        pipe.multi()
        pipe.set("compat:balance", value + 1)

    def worker() -> None:
        with fresh.client() as client:
            for _ in range(increments):
                client.transaction(add_one, "compat:balance")

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(60)
    with fresh.client() as client:
        assert client.get("compat:balance") == str(threads * increments).encode()
    assert len(attempts) >= threads * increments


def test_register_script_survives_script_flush(fresh: Server) -> None:
    with fresh.client() as client:
        add = client.register_script(
            "local v = redis.call('INCRBY', KEYS[1], ARGV[1]) "
            "redis.call('EXPIRE', KEYS[1], ARGV[2]) return v"
        )
        assert add(keys=["compat:n"], args=[5, 60]) == 5
        client.script_flush()
        # EVALSHA answers NOSCRIPT; redis-py loads the script again and retries.
        assert add(keys=["compat:n"], args=[2, 60]) == 7
        assert 0 < client.ttl("compat:n") <= 60


def test_pipeline_over_every_data_type(fresh: Server) -> None:
    with fresh.client() as client:
        pipe = client.pipeline(transaction=False)
        pipe.hset("compat:h", mapping={"a": "1", "b": "2"})
        pipe.hincrby("compat:h", "a", 10)
        pipe.rpush("compat:l", "x", "y", "z")
        pipe.lmove("compat:l", "compat:l2", "LEFT", "RIGHT")
        pipe.sadd("compat:s", "p", "q")
        pipe.zadd("compat:z", {"low": 1, "high": 5.5})
        pipe.zincrby("compat:z", 1, "low")
        assert pipe.execute() == [2, 11, 3, b"x", 2, 2, 2.0]
        assert client.hgetall("compat:h") == {b"a": b"11", b"b": b"2"}
        assert client.lrange("compat:l", 0, -1) == [b"y", b"z"]
        assert client.smembers("compat:s") == {b"p", b"q"}
        assert client.zrange("compat:z", 0, -1, withscores=True) == [(b"low", 2.0), (b"high", 5.5)]
        assert client.zpopmin("compat:z") == [(b"low", 2.0)]
        assert client.blpop(["compat:l2"], timeout=1) == (b"compat:l2", b"x")
        assert [client.type(k) for k in ("compat:h", "compat:l", "compat:s", "compat:z")] == [
            b"hash",
            b"list",
            b"set",
            b"zset",
        ]
        with pytest.raises(redis.exceptions.ResponseError, match=r"^WRONGTYPE"):
            client.get("compat:h")
