"""A store killed under a real gunicorn master comes back with its data: the master hands the
dead store's region to the standby, which serves at once and adopts every entry it can trust,
each key on its first access and the rest in the background (``shm/adoption.py``,
``server/adoption.py``). How long that takes is a figure for ``python -m bench.adopt``; the
long torture run is ``python -m bench.adopt_torture``.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bench.adopt_torture import adopting, torture
from blinkstore_gunicorn.shm import handout
from blinkstore_gunicorn.supervision.runtime import ping
from harness.gunicorn import CONF, Gunicorn, get, gunicorn, wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not handout.supported(), reason="needs Linux (memfd)"),
]

KEYS = 100_000
HOUR_MS = 3_600_000
_CHUNK = 5_000
_ADOPTED = "keys from the previous store's shared-memory region"


def _value(n: int, rng: random.Random) -> bytes:
    """Random bytes with zeros in them, and ``n`` in front (so a swapped value shows)."""
    return b"%d\0" % n + rng.randbytes(rng.randrange(0, 100)) + bytes(rng.randrange(0, 20))


def _values() -> dict[bytes, bytes]:
    rng = random.Random(22)
    return {b"k:%d" % n: _value(n, rng) for n in range(KEYS)}


@contextlib.contextmanager
def _crashed(
    tmp_path: Path, values: dict[bytes, bytes]
) -> Iterator[tuple[Gunicorn, redis.Redis, str]]:
    """A gunicorn master whose store held ``values`` (every tenth key with an hour's TTL, plus
    a value over the region's threshold and a hash) and was killed -9: yields once its
    successor answers PING, with a client and the store's socket path."""
    env = {"BLINKSTORE_MEMORY_LIMIT": "256MiB"}
    with gunicorn([*CONF, "-w", "1", "wsgi_app:app"], tmp_path, env=env) as server:
        path = get(server.url + "/env")["url"][len("unix://") :]
        client = redis.Redis(unix_socket_path=path, socket_timeout=60)
        try:
            keys = list(values)
            for start in range(0, len(keys), _CHUNK):
                pipe = client.pipeline(transaction=False)
                for key in keys[start : start + _CHUNK]:
                    # Every tenth key with a TTL: it comes back with the same deadline.
                    ttl = HOUR_MS if key.endswith(b"0") else None
                    pipe.set(key, values[key], px=ttl)
                pipe.execute()
            client.set(b"big", b"x" * (64 * 2**10 + 1))  # over the region's threshold
            client.hset(b"hash", b"field", b"value")  # another type: the store's heap
            assert wait_until(lambda: len(server.store_processes()) == 2, 60.0), server.log()
            store = server.store_pid()
            os.kill(store, signal.SIGKILL)
            assert wait_until(lambda: server.store_pid() != store, 60.0), server.log()
            assert wait_until(lambda: ping(path, 1.0), 60.0, interval=0.001), server.log()
            yield server, client, path
        finally:
            client.close()


def test_every_region_held_key_is_readable_after_a_kill_9(tmp_path: Path) -> None:
    values = _values()
    keys = list(values)
    set_from = time.time_ns() // 10**6
    with _crashed(tmp_path, values) as (server, client, _):
        set_until = time.time_ns() // 10**6
        for start in range(0, KEYS, _CHUNK):
            chunk = keys[start : start + _CHUNK]
            got = client.mget(chunk)
            wrong = [key for key, value in zip(chunk, got, strict=True) if value != values[key]]
            assert wrong == [], (wrong[:5], server.log()[-3000:])
        # The same absolute deadline: within when the SETs ran, plus an hour.
        before = time.time_ns() // 10**6
        left = client.pttl(b"k:0")
        after = time.time_ns() // 10**6
        assert set_from + HOUR_MS <= after + left and before + left <= set_until + HOUR_MS
        assert client.pttl(b"k:1") == -1
        assert client.dbsize() == KEYS, "what the region cannot hold is gone"
        assert wait_until(lambda: _ADOPTED in server.log(), 60.0), server.log()[-3000:]
        log = server.log()
        assert f"adopted {KEYS} {_ADOPTED}" in log, log[-3000:]
        assert "(dropped: 0 in doubt, 2 held outside the region, 0 expired" in log


def test_the_successor_serves_before_adopting_and_never_over_a_newer_write(
    tmp_path: Path,
) -> None:
    values = _values()
    values.update({b"n:%d" % n: b"%d" % n for n in range(1000)})
    with _crashed(tmp_path, values) as (server, client, path):
        # PING answered while the old entries are still being adopted.
        assert adopting(path), server.log()[-3000:]
        pipe = client.pipeline(transaction=False)
        for n in range(0, 300, 3):
            pipe.set(b"k:%d" % n, b"new")
            pipe.delete(b"k:%d" % (n + 1))
            pipe.incr(b"n:%d" % n)
        pipe.hset(b"k:302", b"field", b"value")  # WRONGTYPE: it holds an adopted string
        replies = pipe.execute(raise_on_error=False)
        assert replies[:3] == [True, 1, 1] and isinstance(replies[-1], redis.ResponseError)
        assert adopting(path), "all of that ran while the rest was still pending"
        # The background pass ends on its own, and adopts none of the old values over these.
        assert wait_until(lambda: _ADOPTED in server.log(), 120.0), server.log()[-3000:]
        assert not adopting(path)
        for n in range(0, 300, 3):
            values[b"k:%d" % n] = b"new"
            del values[b"k:%d" % (n + 1)]
            values[b"n:%d" % n] = b"%d" % (n + 1)
        keys = list(values)
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            got = client.mget(chunk)
            wrong = [key for key, value in zip(chunk, got, strict=True) if value != values[key]]
            assert wrong == [], wrong[:5]
        assert client.get(b"k:1") is None and client.dbsize() == len(values)


def test_whole_keyspace_commands_answer_in_full_while_adopting(tmp_path: Path) -> None:
    values = _values()
    with _crashed(tmp_path, values) as (server, client, path):
        assert adopting(path), server.log()[-3000:]
        assert client.set(b"fresh", b"1")
        # KEYS, then DBSIZE and INFO, adopt what is left first: nothing is missing.
        assert len(client.keys("*")) == KEYS + 1
        assert not adopting(path)
        assert client.dbsize() == KEYS + 1
        assert client.info("keyspace")["db0"]["keys"] == KEYS + 1
        assert wait_until(lambda: f"adopted {KEYS} {_ADOPTED}" in server.log(), 60.0)


def test_no_wrong_value_and_no_acknowledged_write_lost_when_killed_at_random(
    tmp_path: Path,
) -> None:
    result = torture(tmp_path, kills=3, readers=2, seed=random.randrange(2**32), fill=KEYS // 5)
    assert (result.wrong, result.older, result.lost) == (0, 0, 0), result.examples
    # A successor killed while still adopting logs no adoption; the last one may still be at it.
    assert result.kills == 3 and 1 <= len(result.adoptions) <= 3
    assert result.reads and result.region_hits and result.acknowledged
