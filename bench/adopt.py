"""What adopting a dead store's region costs, and where the time goes (100k and 1M keys).

Two measurements per size:

* **in process** (CPU milliseconds): a store's engine and region filled with N string keys
  (~10-byte keys, 100-byte values, one in ten with a TTL), its region revoked as a supervisor
  does, then adopted into a fresh engine and region (``server.adoption.adopt_region``). Split
  into the pass that reads and checks every slot (``Inheritance.entries``), the floor of any
  per-key Python work (the same pass putting each entry in a dict) and the whole adoption (the
  pass plus ``engine.set``, which publishes into the new region);
* **under gunicorn** (``--gunicorn``): the same keys SET over the socket, the store killed with
  SIGKILL, and the time until the successor answers PING, beside the store's own log line.

``python -m bench.adopt [--sizes 100000 1000000] [--gunicorn]``
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis

from blinkstore_gunicorn.engine import MemoryEngine
from blinkstore_gunicorn.server.adoption import adopt_region
from blinkstore_gunicorn.shm.adoption import Inheritance
from blinkstore_gunicorn.shm.generation import Revocation
from blinkstore_gunicorn.shm.writer import RegionWriter
from blinkstore_gunicorn.supervision.runtime import ping
from harness.gunicorn import CONF, get, gunicorn, wait_until

__all__ = ["main"]

LIMIT = 2**30
VALUE = 100
HOUR_MS = 3_600_000
_ADOPTED = re.compile(r"adopted (\d+) keys .* in (\d+) ms")
_CHUNK = 10_000


def _items(n: int) -> list[tuple[bytes, bytes, int | None]]:
    rng = random.Random(n)
    now = time.time_ns() // 10**6
    return [
        (b"key:%d" % i, rng.randbytes(VALUE), now + HOUR_MS if i % 10 == 0 else None)
        for i in range(n)
    ]


def _new_store() -> MemoryEngine:
    engine = MemoryEngine(memory_limit=LIMIT)
    engine.attach_region(RegionWriter(LIMIT))
    return engine


def _timed(work: Callable[[], object]) -> float:
    # CPU time of this process: on a shared host the wall clock mostly measures the others.
    started = time.process_time()
    work()
    return (time.process_time() - started) * 1000


def in_process(n: int) -> dict[str, float]:
    """Milliseconds of each part of adopting ``n`` keys (see the module doc)."""
    dead = _new_store()
    for key, value, deadline in _items(n):
        dead.set(key, value, expire_at_ms=deadline)
    assert dead.region is not None
    fd = dead.region.owner_fd
    token = Revocation(fd).revoke()
    assert token is not None
    now = time.time_ns() // 10**6

    def check_only() -> None:
        inheritance = Inheritance(os.dup(fd), token)
        assert sum(1 for _ in inheritance.entries(now)) == n
        os.close(inheritance.fd)

    def into_dict() -> None:
        inheritance = Inheritance(os.dup(fd), token)
        index = {key: (value, deadline) for key, value, deadline in inheritance.entries(now)}
        assert len(index) == n
        os.close(inheritance.fd)

    successor = _new_store()

    def adopt() -> None:
        assert adopt_region(successor, Inheritance(os.dup(fd), token), now) == n

    figures = {"check": _timed(check_only), "dict": _timed(into_dict), "adopt": _timed(adopt)}
    for engine in (dead, successor):
        assert engine.region is not None
        engine.region.close()
    return figures


def under_gunicorn(n: int) -> tuple[float, int]:
    """(ms from kill -9 to the successor's first PONG, the ms the store logged for adopting)."""
    env = {"BLINKSTORE_MEMORY_LIMIT": str(LIMIT)}
    with (
        tempfile.TemporaryDirectory() as cwd,
        gunicorn([*CONF, "-w", "1", "wsgi_app:app"], Path(cwd), env=env) as server,
    ):
        path = get(server.url + "/env")["url"][len("unix://") :]
        client = redis.Redis(unix_socket_path=path, socket_timeout=120)
        items = _items(n)
        for start in range(0, n, _CHUNK):
            pipe = client.pipeline(transaction=False)
            for key, value, deadline in items[start : start + _CHUNK]:
                pipe.set(key, value, pxat=deadline)
            pipe.execute()
        client.close()
        assert wait_until(lambda: len(server.store_processes()) == 2, 120.0), server.log()
        store = server.store_pid()
        os.kill(store, signal.SIGKILL)
        killed = time.perf_counter()
        while not ping(path, 1.0):
            time.sleep(0.001)  # leave the CPU to the successor
        elapsed = (time.perf_counter() - killed) * 1000
        logged = _ADOPTED.findall(server.log())
        assert logged and int(logged[-1][0]) == n, server.log()[-2000:]
        return elapsed, int(logged[-1][1])


def main(argv: list[str] | None = None) -> int:
    """Print the figures for each size."""
    parser = argparse.ArgumentParser(prog="python -m bench.adopt", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--gunicorn", action="store_true", help="also kill -9 under gunicorn")
    args = parser.parse_args(argv)
    for n in args.sizes:
        f = in_process(n)
        print(
            f"{n:>9,} keys in process: check every slot {f['check']:.0f} ms, "
            f"+ dict insert {f['dict']:.0f} ms, whole adoption {f['adopt']:.0f} ms "
            f"({f['adopt'] * 1000 / n:.1f} us/key)"
        )
        if args.gunicorn:
            elapsed, logged = under_gunicorn(n)
            print(
                f"{n:>9,} keys under gunicorn: kill -9 to first PONG {elapsed:.0f} ms "
                f"(the store logged {logged} ms adopting)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
