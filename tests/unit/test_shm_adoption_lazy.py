"""Adopting a dead store's region while serving (``MemoryEngine.inherit``,
``server/adoption.py``): a key's old entry is adopted on the key's first access through any
command, never over what a client wrote or deleted since, and whole-keyspace commands see
every key. The region is handed over the real control channel, as in ``test_shm_adoption.py``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator

import pytest

from blinkstore_gunicorn.engine import MemoryEngine
from blinkstore_gunicorn.protocol import text
from blinkstore_gunicorn.server.adoption import Adoption, start_adoption
from blinkstore_gunicorn.server.dispatch import Client, Dispatcher, ServerStats
from blinkstore_gunicorn.server.text_commands import execute_text
from blinkstore_gunicorn.shm import layout as L
from blinkstore_gunicorn.shm.writer import RegionWriter
from tests.unit.test_shm_adoption import (
    HOUR,
    LIMIT,
    NOW,
    _inherit,
    _region,
    _slot_of,
    _store,
    _words,
)

pytestmark = pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="needs memfd (Linux)")

KEYS = 2000


class _Successor:
    """A store's engine and dispatcher that inherited a dead store's region of :data:`KEYS`
    keys ``k<i>`` -> ``<i>`` (every third with a deadline), nothing adopted yet."""

    def __init__(self) -> None:
        self.dead = _store()
        for i in range(KEYS):
            self.dead.set(b"k%d" % i, b"%d" % i, expire_at_ms=NOW + HOUR if i % 3 == 0 else None)
        self.engine = _store()
        self.d = Dispatcher(self.engine, clock_ms=lambda: NOW, stats=ServerStats())
        self.client = self.d.new_client()

    def start(self) -> Adoption:
        adoption = start_adoption(self.engine, _inherit(_region(self.dead)))
        assert adoption is not None and self.engine.inheriting
        return adoption

    def __call__(self, *args: str, client: Client | None = None) -> bytes:
        return self.d.execute(client or self.client, [a.encode() for a in args])

    def close(self) -> None:
        for engine in (self.engine, self.dead):
            engine.flush()
            _region(engine).close()


@pytest.fixture
def s() -> Iterator[_Successor]:
    successor = _Successor()
    yield successor
    successor.close()


def _held(engine: MemoryEngine) -> int:
    """Keys the engine holds now, without finishing the adoption (``len()`` would)."""
    return engine.stats().keys


def test_a_key_is_adopted_on_its_first_access_by_any_command(s: _Successor) -> None:
    adoption = s.start()
    assert _held(s.engine) == 0
    assert s("GET", "k1") == b"$1\r\n1\r\n"
    assert s("PTTL", "k3").startswith(b":")  # its deadline came with it
    assert s.engine.expire_at(b"k3") == NOW + HOUR
    assert s("EXISTS", "k4") == b":1\r\n"
    assert s("HSET", "k5", "f", "v").startswith(b"-WRONGTYPE")  # a string, adopted first
    assert s("STRLEN", "k1000") == b":4\r\n"
    assert execute_text(s.d, s.client, text.parse_line(b"get k6")).startswith(b"VALUE")
    assert s("GET", "absent") == b"$-1\r\n"
    assert _held(s.engine) == 6 and s.engine.inheriting
    assert adoption.finish() == KEYS
    assert not s.engine.inheriting


def test_a_key_written_deleted_or_changed_while_pending_is_never_adopted_over(
    s: _Successor,
) -> None:
    adoption = s.start()
    assert s("SET", "k1", "new") == b"+OK\r\n"
    assert s("DEL", "k2") == b":1\r\n"  # it existed: the old entry counts
    assert s("INCR", "k4") == b":5\r\n"  # from the old value
    assert s("APPEND", "k7", "x") == b":2\r\n"
    assert s("RENAME", "k8", "k9") == b"+OK\r\n"
    assert s("SETNX", "k10", "no") == b":0\r\n"
    assert s("MULTI") == b"+OK\r\n"
    assert s("INCRBY", "k11", "10") == b"+QUEUED\r\n"
    assert s("UNLINK", "k12") == b"+QUEUED\r\n"
    assert s("EXEC") == b"*2\r\n:21\r\n:1\r\n"
    assert s("PERSIST", "k3") == b":1\r\n"
    script = "redis.call('SET', KEYS[1], 'lua') return redis.call('DEL', KEYS[2])"
    assert s("EVAL", script, "2", "k13", "k14") == b":1\r\n"
    assert adoption.finish() == KEYS  # each adopted once, some then changed
    expected = {
        b"k1": b"new",
        b"k2": None,
        b"k4": b"5",
        b"k7": b"7x",
        b"k8": None,
        b"k9": b"8",
        b"k10": b"10",
        b"k11": b"21",
        b"k12": None,
        b"k13": b"lua",
        b"k14": None,
        b"k15": b"15",
    }
    for key, value in expected.items():
        assert s.engine.get(key) == value, key
    assert s.engine.expire_at(b"k3") is None
    assert len(s.engine) == KEYS - 4


@pytest.mark.parametrize(
    ("command", "complete"),
    [
        (("DBSIZE",), b":%d\r\n" % KEYS),
        (("KEYS", "*"), b"*%d\r\n" % KEYS),
        (("SCAN", "0", "COUNT", "10"), b"*2\r\n"),
        (("INFO", "keyspace"), b"db0:keys=%d," % KEYS),
        (("RANDOMKEY",), b"$"),
    ],
)
def test_whole_keyspace_commands_adopt_every_key_first(
    s: _Successor, command: tuple[str, ...], complete: bytes
) -> None:
    adoption = s.start()
    assert complete in s(*command)
    assert not s.engine.inheriting
    assert adoption.finish() == KEYS


def test_a_flush_drops_what_is_pending(s: _Successor, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="blinkstore")
    adoption = s.start()
    assert s("GET", "k1") == b"$1\r\n1\r\n"
    assert s("FLUSHALL") == b"+OK\r\n"
    assert not s.engine.inheriting
    assert s("GET", "k2") == b"$-1\r\n"
    assert adoption.finish() == 1
    assert "a FLUSHALL dropped the rest" in caplog.text


def test_a_torn_slot_is_dropped_when_its_key_is_asked_for(
    s: _Successor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="blinkstore")
    mm, w = _words(_region(s.dead))
    w[_slot_of(w, b"k5") + L.SEQ] += 1  # killed in the middle of a write to k5
    w.release()
    mm.close()
    adoption = s.start()
    assert s("GET", "k5") == b"$-1\r\n"
    assert s("GET", "k6") == b"$1\r\n6\r\n"
    assert adoption.finish() == KEYS - 1
    assert "(dropped: 1 in doubt" in caplog.text


def test_a_watched_key_adopted_in_the_background_does_not_abort_the_transaction(
    s: _Successor,
) -> None:
    adoption = s.start()
    assert s("WATCH", "k1") == b"+OK\r\n"
    assert adoption.finish() == KEYS  # k1 included
    assert s("MULTI") == b"+OK\r\n"
    assert s("GET", "k1") == b"+QUEUED\r\n"
    assert s("EXEC") == b"*1\r\n$1\r\n1\r\n"


def test_the_background_pass_yields_to_the_event_loop_between_steps(
    s: _Successor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="blinkstore")
    adoption = s.start()
    turns = 0

    async def main() -> None:
        nonlocal turns
        adoption.run(asyncio.get_running_loop())
        while not adoption.done:
            turns += 1
            value = str(turns).encode()
            assert s("GET", f"k{turns}") == b"$%d\r\n%b\r\n" % (len(value), value)
            await asyncio.sleep(0)

    asyncio.run(main())
    assert turns >= 1 and not s.engine.inheriting
    assert f"adopted {KEYS} keys" in caplog.text


def test_an_entry_over_the_successors_limits_is_dropped_on_demand_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="blinkstore")
    dead = _store()
    dead.set(b"long", b"x" * 20)
    dead.set(b"short", b"x")
    successor = MemoryEngine(memory_limit=LIMIT, max_value_size=10)
    successor.attach_region(RegionWriter(LIMIT))
    adoption = start_adoption(successor, _inherit(_region(dead)))
    assert adoption is not None
    assert successor.get(b"long") is None  # refused by the value limit: dropped, not served
    assert successor.get(b"short") == b"x"
    assert adoption.finish() == 1
    assert "1 over a limit" in caplog.text
    for engine in (successor, dead):
        _region(engine).close()
