"""Fuzz: random bytes over every mapping a reader can write while the store serves (issue 23).

A hostile reader maps writable whatever descriptors ``BS.SHM`` hands it (a design that hands
read-only data leaves it only its own marks and counters to scribble on) and writes random
words at random places, mostly where the header and the table are. Meanwhile the test writes
and reads self-checking values over the socket and another reader reads them from the region:
the store keeps serving, GET returns only values that were written (or nothing), and the other
reader returns no wrong value.
"""

from __future__ import annotations

import os
import random
from multiprocessing.connection import Connection

import pytest

from bench.shm_torture import check_value, make_value
from blinkstore_gunicorn.shm import handout
from harness.processes import StoreProcess, resp_command
from tests.conftest import StoreFactory
from tests.integration.shm_attack_support import (
    CHILD,
    received_fds,
    redis_client,
    started_child,
    writable,
)
from tests.support.sockets import recv_line

pytestmark = [
    pytest.mark.skipif(not handout.supported(), reason="needs Linux (memfd)"),
    pytest.mark.usefixtures("shm_path"),  # the C helper's path, then the Python reference
]

KEYS = [b"fuzz:%d" % n for n in range(200)]
#: A new seed each run (SHM_FUZZ_SEED=N replays one); every failure message names it.
SEED = int(os.environ.get("SHM_FUZZ_SEED") or int.from_bytes(os.urandom(4), "little"))
BOUND = 10.0
# Words that mean something to the region's code: empty, odd, "deleted", huge, small offsets.
_WORDS = [0, 1, 2, 3, 2**64 - 1, 2**63, 2**32, 0xFFFFFFFF, 4096, 1 << 24, 1 << 40]


def _fuzz(path: str, seed: int, writes: int) -> list[str]:
    """Scribble over every writable mapping; say which ones were writable."""
    rng = random.Random(seed)
    mapped = [writable(fd) for fd in received_fds(path)]
    targets = [m for m in mapped if not isinstance(m, str)]
    for n in range(writes):
        if not targets:
            break
        target = targets[n % len(targets)]
        # Half the writes in the first 256 KiB (header, counters, table), half anywhere.
        span = min(len(target), 256 * 1024) if n % 2 else len(target)
        where = rng.randrange(0, span - 8) & ~7
        word = rng.choice(_WORDS) if rng.random() < 0.5 else rng.getrandbits(64)
        target[where : where + 8] = word.to_bytes(8, "little")
    return [m if isinstance(m, str) else f"writable, {len(m)} bytes" for m in mapped]


def _watch(path: str, channel: Connection) -> list[str]:
    """Read every key from the region until told to stop; the wrong values seen."""
    reader = handout.attach(path, None, BOUND)
    channel.send("attached")
    wrong: list[str] = []
    while not channel.poll():
        for key in KEYS:
            value = reader.get(key)
            if isinstance(value, bytes) and check_value(key, value) is not None:
                wrong.append(f"{key!r}: {value[:16].hex()}")
    return wrong[:10]


def _write_and_check(store: StoreProcess, rng: random.Random, version: int) -> None:
    """One round over the socket: PING within a bound, SET a few values, every GET whole."""
    with store.connect(timeout=BOUND) as sock:
        sock.sendall(resp_command("PING"))
        assert recv_line(sock) == b"+PONG\r\n", "the store answers"
    client = redis_client(store)
    client.mset(
        {key: make_value(key, version, rng.randrange(100, 3000)) for key in rng.sample(KEYS, 20)}
    )
    for key, value in zip(KEYS, client.mget(KEYS), strict=True):
        assert value is None or (isinstance(value, bytes) and check_value(key, value) is None), (
            f"GET {key!r} -> {value!r:.60} (seed {SEED})"
        )
    client.close()


def test_fuzzing_a_reader_s_mappings_leaves_the_store_and_other_readers_right(
    blinkstore_factory: StoreFactory,
) -> None:
    store = blinkstore_factory("--memory-limit", "4MiB")
    assert store.unix_path is not None
    rng = random.Random(SEED)
    _write_and_check(store, rng, 0)
    mine, theirs = CHILD.Pipe()
    with (
        started_child(_watch, store.unix_path, theirs) as watcher,
        started_child(_fuzz, store.unix_path, SEED, 200_000) as fuzzer,
    ):
        assert mine.poll(30) and mine.recv() == "attached"
        version = 0
        while not fuzzer.poll(0):
            version += 1
            _write_and_check(store, rng, version)
        assert fuzzer.poll(BOUND) and fuzzer.recv()[0] == "ok", f"the fuzzer ran (seed {SEED})"
        for _ in range(3):  # the store goes on serving after the fuzz
            version += 1
            _write_and_check(store, rng, version)
        mine.send("stop")
        assert watcher.poll(BOUND), f"the other reader's reads did not return (seed {SEED})"
        try:
            outcome, wrong = watcher.recv()
        except EOFError:
            raise AssertionError(f"the other reader died (seed {SEED})") from None
    assert outcome == "ok", f"the other reader failed (seed {SEED}): {wrong}"
    assert wrong == [], f"the other reader got wrong values (seed {SEED}): {wrong}"
