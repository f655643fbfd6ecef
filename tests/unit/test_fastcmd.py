"""Plain GET and MGET answered in C (``server/_fastcmd.c``) against the Python dispatcher.

Two stores side by side, one running requests through ``Dispatcher.execute_resp`` (the C
stand-in) and one through ``Dispatcher.execute`` (the reference), get the same seeded random
commands: every reply must be byte for byte the same, and so must the state a read leaves
(hit and miss counters, SIEVE's visited marks and queue, deadlines, ``INFO stats``, ``MEMORY
USAGE``, the client's last command). Then one test per case the C code must hand over to the
Python path, checked by counting the calls that reach it.
"""

from __future__ import annotations

import gc
import random
import sys
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from blinkstore_gunicorn.engine import MemoryEngine
from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.protocol.errors import ProtocolError, TooLarge
from blinkstore_gunicorn.server.adoption import start_adoption
from blinkstore_gunicorn.server.commands.strings import cmd_get
from blinkstore_gunicorn.server.dispatch import Client, Dispatcher, ServerStats
from blinkstore_gunicorn.server.fastpath import resp_executor
from blinkstore_gunicorn.shm.native import ENV as NATIVE_ENV
from blinkstore_gunicorn.shm.writer import RegionWriter
from tests.unit.test_commands import NOW, Clock
from tests.unit.test_shm_adoption import _inherit
from tests.unit.test_shm_native import _can_build

#: Small limits, so that random traffic evicts (SIEVE's marks matter) and reaches the key limit.
MEMORY_LIMIT = 96 * 1024
MAX_KEY = 200
REGION_MAX_VALUE = 512


def test_the_helper_is_built_wherever_a_compiler_is() -> None:
    # `make install` compiles it; without this the C runs below would skip unnoticed.
    if not _can_build() or sys.byteorder != "little" or not sys.platform.startswith("linux"):
        pytest.skip("no C compiler or Python headers, or a platform the helper does not target")
    from blinkstore_gunicorn.server import _fastcmd

    assert _fastcmd.Runner is not None


@pytest.fixture(autouse=True)
def _c_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NATIVE_ENV, raising=False)
    pytest.importorskip("blinkstore_gunicorn.server._fastcmd")


class Store:
    """An engine (with a shared region unless ``region=False``), its dispatcher and a client,
    running requests the C way (``native``) or the Python way."""

    def __init__(
        self, clock: Clock, native: bool, region: bool = True, password: str | None = None
    ) -> None:
        self.engine = MemoryEngine(memory_limit=MEMORY_LIMIT, max_key_size=MAX_KEY, clock_ms=clock)
        if region:
            self.engine.attach_region(RegionWriter(4 * 2**20, max_value=REGION_MAX_VALUE))
        self.d = Dispatcher(
            self.engine,
            clock_ms=clock,
            stats=ServerStats(),
            max_key_size=MAX_KEY,
            password=password,
        )
        self.fallbacks = 0

        def reference(d: Dispatcher, client: Client, args: Any) -> bytes:
            self.fallbacks += 1
            return Dispatcher.execute(d, client, args)

        self.execute = resp_executor(self.d, reference) if native else reference
        if native:
            assert self.execute is not reference, "the C path is not in use"
        self.client = self.d.new_client()

    def __call__(self, *args: bytes | str, client: Client | None = None) -> bytes:
        raw = [a.encode() if isinstance(a, str) else a for a in args]
        return self.execute(self.d, client or self.client, raw)

    def state(self) -> dict[str, object]:
        """What a read may change, comparable between two stores (region handles are not)."""
        e = self.engine
        return {
            "stats": e.stats(),
            "ahead": list(e._ahead),
            "behind": list(e._behind),
            "kinds": [type(v).__name__ for v in (*e._ahead.values(), *e._behind.values())],
            "visited": set(e._visited),
            "deadlines": dict(e._deadlines),
            "info": Dispatcher.execute(self.d, self.d.new_client(), [b"INFO", b"stats"]),
            "usage": [
                Dispatcher.execute(self.d, self.d.new_client(), [b"MEMORY", b"USAGE", key])
                for key in sorted({*e._ahead, *e._behind})
            ],
            "cmd": self.client.cmd,
            "seen now": self.client.seen == self.d.now,
        }

    def close(self) -> None:
        region = self.engine.region
        self.engine.flush()
        if region is not None:
            region.close()


@pytest.fixture
def pair() -> Iterator[tuple[Store, Store, Clock]]:
    clock = Clock()
    c, python = Store(clock, native=True), Store(clock, native=False)
    yield c, python, clock
    c.close()
    python.close()


def _value(rng: random.Random) -> bytes:
    """Random bytes (zeros and CRLF included): mostly region-sized, some too large for the
    region, a few of resp.LARGE_BULK or more."""
    roll = rng.random()
    size = (
        rng.randrange(0, 64)
        if roll < 0.6
        else rng.randrange(REGION_MAX_VALUE - 4, 2000)
        if roll < 0.97
        else rng.randrange(resp.LARGE_BULK - 2, resp.LARGE_BULK + 8)
    )
    pieces = [b"\r\n", b"\x00", b"\r", b"\n"]
    out = bytearray(rng.randbytes(size))
    for _ in range(min(size, 4)):
        at = rng.randrange(size)
        out[at : at + 2] = rng.choice(pieces)
    return bytes(out[:size])


def _keys() -> list[bytes]:
    keys = [b"k%d" % i for i in range(40)]
    keys += [b"\x00\r\nodd", b"", b"x" * (MAX_KEY - 1), b"y" * MAX_KEY, b"z" * (MAX_KEY + 1)]
    return keys


def _command(rng: random.Random, keys: list[bytes], clock: Clock) -> list[bytes] | None:
    """One random request (None: the clock moved instead)."""
    key = rng.choice(keys)
    roll = rng.random()
    if roll < 0.30:
        return [rng.choice([b"GET", b"get", b"Get"]), key]
    if roll < 0.45:
        return [rng.choice([b"MGET", b"mget"]), *rng.choices(keys, k=rng.randrange(1, 7))]
    if roll < 0.65:
        return [b"SET", key, _value(rng)]
    if roll < 0.72:
        return [b"SET", key, _value(rng), b"PX", b"%d" % rng.randrange(1, 50)]
    if roll < 0.78:
        return [b"DEL", key]
    if roll < 0.84:
        return [b"PEXPIRE", key, b"%d" % rng.randrange(1, 50)]
    if roll < 0.89:
        return [b"HSET", key, b"f", b"v"]  # a type change (or WRONGTYPE)
    if roll < 0.91:
        return [b"GET", key, b"extra"]  # the arity error
    if roll < 0.92:
        return [b"FLUSHDB"]
    if roll < 0.93:
        return [b"INCR", key]
    clock.now += rng.randrange(0, 30)
    return None


@pytest.mark.parametrize("seed", range(6))
def test_c_and_python_give_the_same_replies_and_state(
    pair: tuple[Store, Store, Clock], seed: int
) -> None:
    c, python, clock = pair
    rng = random.Random(seed)
    keys = _keys()
    resp3 = rng.random() < 0.5
    if resp3:
        assert c("HELLO", "3")[:1] == python("HELLO", "3")[:1] == b"%"
    for step in range(3000):
        args = _command(rng, keys, clock)
        if args is None:
            continue
        assert c(*args) == python(*args), (seed, step, args[:2])
        if step % 250 == 0:
            assert c.state() == python.state(), (seed, step)
    assert c.state() == python.state()
    # The random traffic reached every kind of entry and the eviction the marks steer.
    stats = c.engine.stats()
    assert stats.hits and stats.misses and stats.evictions and stats.expirations
    assert c.fallbacks < python.fallbacks


def test_plain_reads_never_reach_python(pair: tuple[Store, Store, Clock]) -> None:
    c, _, _ = pair
    c("SET", "k", "v")
    c("SET", "big", "x" * (REGION_MAX_VALUE + 1))  # held as bytes, not in the region
    c("SET", "t", "v", "PX", "1000")  # a deadline not due yet
    before = c.fallbacks
    assert c("GET", "k") == b"$1\r\nv\r\n"
    assert c("get", "missing") == b"$-1\r\n"
    assert c("MGET", "k", "missing", "big", "t") == (
        b"*4\r\n$1\r\nv\r\n$-1\r\n$%d\r\n%b\r\n$1\r\nv\r\n"
        % (REGION_MAX_VALUE + 1, b"x" * (REGION_MAX_VALUE + 1))
    )
    assert c.fallbacks == before
    assert c.client.cmd == b"MGET"
    stats = c.engine.stats()
    assert (stats.hits, stats.misses) == (4, 2)


def _check_hand_over(pair: tuple[Store, Store, Clock], *args: bytes | str) -> bytes:
    """Run ``args`` on both stores: the C store hands it to Python; same reply and state."""
    c, python, _ = pair
    before = c.fallbacks
    reply = c(*args)
    assert c.fallbacks == before + 1, "the C path answered it"
    assert reply == python(*args)
    assert c.state() == python.state()
    return reply


def _both(pair: tuple[Store, Store, Clock], *args: bytes | str) -> None:
    c, python, _ = pair
    assert c(*args) == python(*args)


def test_a_key_of_another_type_is_handed_over(pair: tuple[Store, Store, Clock]) -> None:
    _both(pair, "HSET", "h", "f", "v")
    _both(pair, "SET", "k", "v")
    assert _check_hand_over(pair, "GET", "h").startswith(b"-WRONGTYPE")
    assert _check_hand_over(pair, "MGET", "k", "h") == b"*2\r\n$1\r\nv\r\n$-1\r\n"


def test_a_deadline_due_is_handed_over(pair: tuple[Store, Store, Clock]) -> None:
    _, _, clock = pair
    _both(pair, "SET", "k", "v", "PX", "10")
    _both(pair, "SET", "other", "w")
    clock.now += 10
    assert _check_hand_over(pair, "MGET", "other", "k") == b"*2\r\n$1\r\nw\r\n$-1\r\n"
    _both(pair, "SET", "k", "v", "PX", "10")
    clock.now += 11
    assert _check_hand_over(pair, "GET", "k") == b"$-1\r\n"
    assert pair[0].engine.stats().expirations == 2


def test_a_large_value_is_handed_over(pair: tuple[Store, Store, Clock]) -> None:
    # resp.bulk shares one reply among the readers of a large value: Python builds those.
    _both(pair, "SET", "big", b"x" * resp.LARGE_BULK)
    _check_hand_over(pair, "GET", "big")
    _check_hand_over(pair, "MGET", "big")


def test_an_mget_over_the_reply_limit_is_handed_over(pair: tuple[Store, Store, Clock]) -> None:
    for store in pair[:2]:
        store.d.max_reply_size = 100
    _both(pair, "SET", "k", "v" * 60)
    assert _check_hand_over(pair, "MGET", "k", "k").startswith(b"-ERR reply too large")


def test_other_spellings_and_arities_are_handed_over(pair: tuple[Store, Store, Clock]) -> None:
    _both(pair, "SET", "k", "v")
    assert _check_hand_over(pair, "Get", "k") == b"$1\r\nv\r\n"
    assert _check_hand_over(pair, "gEt", "k", "x").startswith(b"-ERR wrong number")
    assert _check_hand_over(pair, "MGET").startswith(b"-ERR wrong number")
    assert _check_hand_over(pair, "GET").startswith(b"-ERR wrong number")


def test_what_is_not_a_command_is_handed_over(pair: tuple[Store, Store, Clock]) -> None:
    c, python, _ = pair
    for item in (TooLarge("value", 10, 5), ProtocolError("bad")):
        before = c.fallbacks
        assert c.execute(c.d, c.client, item) == python.execute(python.d, python.client, item)
        assert c.fallbacks == before + 1


def test_a_transaction_is_handed_over(pair: tuple[Store, Store, Clock]) -> None:
    _both(pair, "SET", "k", "v")
    _both(pair, "MULTI")
    assert _check_hand_over(pair, "GET", "k") == b"+QUEUED\r\n"
    assert _check_hand_over(pair, "MGET", "k") == b"+QUEUED\r\n"
    assert _check_hand_over(pair, "EXEC") == b"*2\r\n$1\r\nv\r\n*1\r\n$1\r\nv\r\n"
    c, _, _ = pair
    before = c.fallbacks
    c("GET", "k")
    assert c.fallbacks == before  # out of the transaction, C again


def test_subscribed_mode_is_handed_over(pair: tuple[Store, Store, Clock]) -> None:
    _both(pair, "SUBSCRIBE", "ch")
    assert _check_hand_over(pair, "GET", "k").startswith(b"-ERR Can't execute 'get'")


def test_before_auth_is_handed_over() -> None:
    clock = Clock()
    c, python = (Store(clock, native, password="secret") for native in (True, False))
    assert c("GET", "k") == python("GET", "k") == b"-NOAUTH Authentication required.\r\n"
    assert c.fallbacks == 1
    _both((c, python, clock), "AUTH", "secret")
    _both((c, python, clock), "SET", "k", "v")
    before = c.fallbacks
    assert c("GET", "k") == b"$1\r\nv\r\n"
    assert c.fallbacks == before  # authenticated: the full table, C again
    c.close()
    python.close()


def test_a_busy_script_is_handed_over(pair: tuple[Store, Store, Clock]) -> None:
    def busy(d: Dispatcher, client: Client, args: list[bytes]) -> bytes:
        return b"-BUSY\r\n"

    for store in pair[:2]:
        store.d.busy = busy
    assert _check_hand_over(pair, "GET", "k") == b"-BUSY\r\n"
    assert _check_hand_over(pair, "MGET", "k") == b"-BUSY\r\n"


def test_a_command_routed_elsewhere_is_handed_over(pair: tuple[Store, Store, Clock]) -> None:
    # What an upstream's install() does to the table: GET is no longer cmd_get.
    def routed(d: Dispatcher, client: Client, args: list[bytes]) -> bytes:
        return b"+ROUTED\r\n"

    for store in pair[:2]:
        store.d.full_table[b"GET"] = (routed, 2)
    assert _check_hand_over(pair, "GET", "k") == b"+ROUTED\r\n"


def test_resp3_nulls_come_from_the_client(pair: tuple[Store, Store, Clock]) -> None:
    c, _, _ = pair
    _both(pair, "HELLO", "3")
    before = c.fallbacks
    _both(pair, "SET", "k", "v")
    _both(pair, "GET", "missing")
    _both(pair, "MGET", "k", "missing")
    assert c("GET", "missing") == b"_\r\n"
    assert c.fallbacks == before + 1  # only the SET


def test_a_region_being_adopted_is_handed_over() -> None:
    """A successor store adopting a dead store's region: both paths adopt the same keys."""
    clock = Clock()
    stores = []
    for native in (True, False):
        dead = MemoryEngine(clock_ms=clock)
        dead.attach_region(RegionWriter(4 * 2**20, max_value=REGION_MAX_VALUE))
        for i in range(50):
            dead.set(b"k%d" % i, b"%d" % i, expire_at_ms=NOW + 5 if i % 3 == 0 else None)
        store = Store(clock, native)
        assert dead.region is not None
        adoption = start_adoption(store.engine, _inherit(dead.region))
        assert adoption is not None and store.engine.inheriting
        stores.append((store, dead))
    (c, _), (python, _) = stores
    rng = random.Random(7)
    for step in range(300):
        if step == 150:
            clock.now += 10
        args = rng.choice([["GET", f"k{rng.randrange(60)}"], ["MGET", "k1", f"k{step}"]])
        before = c.fallbacks
        assert c(*args) == python(*args)
        assert c.fallbacks == before + 1
    assert c.state() == python.state()
    for store, dead in stores:
        store.close()
        assert dead.region is not None
        dead.region.close()


def test_the_switch_turns_the_c_path_off(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = MemoryEngine()
    reference: Callable[[Dispatcher, Client, Any], bytes] = Dispatcher.execute
    monkeypatch.setenv(NATIVE_ENV, "0")
    assert Dispatcher(engine, clock_ms=Clock()).execute_resp is reference
    monkeypatch.setenv(NATIVE_ENV, "1")
    assert Dispatcher(engine, clock_ms=Clock()).execute_resp is not reference


def test_without_the_helper_the_python_path_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    # What an install without a compiler has: no _fastcmd module at all.
    monkeypatch.setitem(sys.modules, "blinkstore_gunicorn.server._fastcmd", None)
    d = Dispatcher(MemoryEngine(), clock_ms=Clock())
    assert d.execute_resp is Dispatcher.execute
    client = d.new_client()
    assert d.execute_resp(d, client, [b"SET", b"k", b"v"]) == resp.OK
    assert d.execute_resp(d, client, [b"GET", b"k"]) == b"$1\r\nv\r\n"


def test_a_helper_that_cannot_read_the_layout_keeps_the_python_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from blinkstore_gunicorn.server import _fastcmd

    class Plain:  # a dispatcher's attributes, but in a __dict__
        def __init__(self) -> None:
            self.engine = MemoryEngine()
            self.full_table: dict[bytes, object] = {}
            self.busy = self.now = self.max_reply_size = None

    with pytest.raises(TypeError, match="not a __slots__ attribute"):
        _fastcmd.Runner(Plain(), cmd_get, cmd_get, Dispatcher.execute, 0)

    def stale(*args: object) -> None:
        raise TypeError("'_visited' is not a __slots__ attribute")

    monkeypatch.setattr(_fastcmd, "Runner", stale)
    assert Dispatcher(MemoryEngine(), clock_ms=Clock()).execute_resp is Dispatcher.execute


def test_an_engine_of_another_class_keeps_the_python_path() -> None:
    class Engine(MemoryEngine):
        __slots__ = ()

    assert Dispatcher(Engine(), clock_ms=Clock()).execute_resp is Dispatcher.execute


def test_a_dropped_dispatcher_is_collected() -> None:
    # The Runner holds the dispatcher that holds it: a cycle the collector must break.
    clock = Clock()  # held by the engine and the dispatcher only, once the test lets go
    store = Store(clock, native=True, region=False)
    ref = weakref.ref(clock)
    del clock
    store.close()
    del store
    gc.collect()
    assert ref() is None
