"""What adopting a dead store's region costs, and where the time goes (100k and 1M keys).

Two measurements per size:

* **in process** (CPU milliseconds): a store's engine and region filled with N string keys
  (~10-byte keys, 100-byte values, one in ten with a TTL), its region revoked as a supervisor
  does, then adopted into a fresh engine and region. Split into what the store does before it
  serves (``server.adoption.start_adoption``: the header), a key's first access while the
  adoption is pending (``InheritedRegion.take``, a probe in the old table), the pass that reads
  and checks every slot (``InheritedRegion.take_some``), the floor of any per-key Python work
  (the same pass putting each entry in a dict) and the whole adoption (the pass plus
  ``engine.set``, which publishes into the new region);
* **under gunicorn** (``--gunicorn``): the same keys SET over the socket, the store killed with
  SIGKILL, and the wall time until the successor answers PING and until it logs that the
  background adoption is done, beside the milliseconds that log line gives; in between, PINGs
  on new connections every 5 ms and their round trips (what a client waits behind the
  background steps), then as many once it is done, for comparison.

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
from blinkstore_gunicorn.server.adoption import Adoption, start_adoption
from blinkstore_gunicorn.shm.adoption import Inheritance, InheritedRegion
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
# Keys looked up one by one for the cost of a first access.
_PROBES = 10_000


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

    def entries() -> list[tuple[bytes, bytes, int]]:
        inherited = InheritedRegion(Inheritance(os.dup(fd), token))
        found = []
        while not inherited.done:
            found += inherited.take_some(now, 4096)
        inherited.close()
        assert len(found) == n
        return found

    def into_dict() -> None:
        index = {key: (value, deadline) for key, value, deadline in entries()}
        assert len(index) == n

    def take() -> None:
        inherited = InheritedRegion(Inheritance(os.dup(fd), token))
        for i in range(0, n, max(1, n // _PROBES)):
            assert inherited.take(b"key:%d" % i, now) is not None
        inherited.close()

    successor = _new_store()
    started = _new_store()

    def adopt() -> None:
        adoption = start_adoption(successor, Inheritance(os.dup(fd), token))
        assert adoption is not None and adoption.finish() == n

    pending: list[Adoption | None] = []
    figures = {
        "start": _timed(
            lambda: pending.append(start_adoption(started, Inheritance(os.dup(fd), token)))
        ),
        "take": _timed(take) * 1000 / min(n, _PROBES),
        "check": _timed(entries),
        "dict": _timed(into_dict),
        "adopt": _timed(adopt),
    }
    started.flush()  # drops what was not adopted yet
    assert pending[0] is not None and pending[0].finish() == 0
    for engine in (dead, successor, started):
        assert engine.region is not None
        engine.region.close()
    return figures


def _ping_ms(path: str) -> float:
    sent = time.perf_counter()
    assert ping(path, 10.0)
    time.sleep(0.005)
    return (time.perf_counter() - sent) * 1000 - 5


def under_gunicorn(n: int) -> tuple[float, float, int, list[float], list[float]]:
    """ms from kill -9 to the successor's first PONG and to its "adopted" log line, the ms
    that line gives, and the ms of each PING (a new connection each) sent in between and of as
    many after."""
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
        pong = (time.perf_counter() - killed) * 1000
        pings: list[float] = []
        while not _ADOPTED.search(server.log()):
            pings.append(_ping_ms(path))
        done = (time.perf_counter() - killed) * 1000
        after = sorted(_ping_ms(path) for _ in pings)
        logged = _ADOPTED.findall(server.log())
        assert logged and int(logged[-1][0]) == n, server.log()[-2000:]
        return pong, done, int(logged[-1][1]), sorted(pings), after


def _spread(ms: list[float]) -> str:
    if not ms:
        return "(none)"
    return f"median {ms[len(ms) // 2]:.1f} ms, max {ms[-1]:.1f} ms ({len(ms)} PINGs)"


def main(argv: list[str] | None = None) -> int:
    """Print the figures for each size."""
    parser = argparse.ArgumentParser(prog="python -m bench.adopt", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--gunicorn", action="store_true", help="also kill -9 under gunicorn")
    args = parser.parse_args(argv)
    for n in args.sizes:
        f = in_process(n)
        print(
            f"{n:>9,} keys in process: before serving {f['start']:.2f} ms, first access of a "
            f"key {f['take']:.1f} us, check every slot {f['check']:.0f} ms, "
            f"+ dict insert {f['dict']:.0f} ms, whole adoption {f['adopt']:.0f} ms "
            f"({f['adopt'] * 1000 / n:.1f} us/key)"
        )
        if args.gunicorn:
            pong, done, logged, pings, after = under_gunicorn(n)
            print(
                f"{n:>9,} keys under gunicorn: kill -9 to first PONG {pong:.0f} ms, to "
                f"adoption done {done:.0f} ms (the store logged {logged} ms adopting); "
                f"PING round trip meanwhile {_spread(pings)}, after {_spread(after)}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
