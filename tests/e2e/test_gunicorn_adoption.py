"""A store killed under a real gunicorn master comes back with its data: the master hands the
dead store's region to the standby, which adopts every entry it can trust before it serves
(``shm/adoption.py``). How long that takes is a figure for ``python -m bench.adopt``; the long
torture run is ``python -m bench.adopt_torture``.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest
import redis

from bench.adopt_torture import torture
from blinkstore_gunicorn.shm import handout
from harness.gunicorn import CONF, get, gunicorn, wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not handout.supported(), reason="needs Linux (memfd)"),
]

KEYS = 100_000
HOUR_MS = 3_600_000
_CHUNK = 5_000


def _value(n: int, rng: random.Random) -> bytes:
    """Random bytes with zeros in them, and ``n`` in front (so a swapped value shows)."""
    return b"%d\0" % n + rng.randbytes(rng.randrange(0, 100)) + bytes(rng.randrange(0, 20))


def test_every_region_held_key_is_readable_after_a_kill_9(tmp_path: Path) -> None:
    env = {"BLINKSTORE_MEMORY_LIMIT": "256MiB"}
    with gunicorn([*CONF, "-w", "1", "wsgi_app:app"], tmp_path, env=env) as server:
        path = get(server.url + "/env")["url"][len("unix://") :]
        client = redis.Redis(unix_socket_path=path, socket_timeout=60)
        rng = random.Random(22)
        values = {b"k:%d" % n: _value(n, rng) for n in range(KEYS)}
        keys = list(values)
        set_from = time.time_ns() // 10**6
        for start in range(0, KEYS, _CHUNK):
            pipe = client.pipeline(transaction=False)
            for key in keys[start : start + _CHUNK]:
                # Every tenth key with a TTL: it comes back with the same deadline.
                ttl = HOUR_MS if int(key[2:]) % 10 == 0 else None
                pipe.set(key, values[key], px=ttl)
            pipe.execute()
        client.set(b"big", b"x" * (64 * 2**10 + 1))  # over the region's threshold
        client.hset(b"hash", b"field", b"value")  # another type: the store's heap
        set_until = time.time_ns() // 10**6
        assert wait_until(lambda: len(server.store_processes()) == 2, 60.0), server.log()
        store = server.store_pid()
        os.kill(store, signal.SIGKILL)
        assert wait_until(lambda: server.store_pid() != store, 60.0), server.log()
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
        client.close()
        log = server.log()
        assert f"adopted {KEYS} keys from the previous store's shared-memory region" in log, log[
            -3000:
        ]
        assert "(dropped: 0 in doubt, 2 held outside the region, 0 expired" in log


def test_no_wrong_value_and_no_acknowledged_write_lost_when_killed_at_random(
    tmp_path: Path,
) -> None:
    result = torture(tmp_path, kills=3, readers=2, seed=random.randrange(2**32))
    assert (result.wrong, result.older, result.lost) == (0, 0, 0), result.examples
    assert result.kills == 3 and len(result.adoptions) == 3
    assert result.reads and result.region_hits and result.acknowledged
