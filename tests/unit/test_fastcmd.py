"""Plain reads and writes answered in C (``server/_fastcmd.c``) against the Python dispatcher.

Two stores side by side, one running requests through ``Dispatcher.execute_resp`` (the C
stand-in) and one through ``Dispatcher.execute`` (the reference), get the same seeded random
commands: every reply must be byte for byte the same, and so must the state after every
command (hit and miss counters, SIEVE's visited marks and queue, what the dicts hold, the
memory account, inserts, WATCH's change counts, leases, deadlines, ``INFO stats``, ``MEMORY
USAGE``, the region read back by a reader, the client's last command). The regions share one
hash secret, so that the same writes place the same blocks in both. Breakages of each side
effect of the C writes are shown caught; then one test per case the C code must hand over to
the Python path, checked by counting the calls that reach it.
"""

from __future__ import annotations

import contextlib
import gc
import random
import sys
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from blinkstore_gunicorn.engine import MemoryEngine
from blinkstore_gunicorn.engine.hashes import Hash
from blinkstore_gunicorn.engine.lists import List
from blinkstore_gunicorn.engine.sets import Set
from blinkstore_gunicorn.engine.zsets import ZSet
from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.protocol.errors import ProtocolError, TooLarge
from blinkstore_gunicorn.server.adoption import start_adoption
from blinkstore_gunicorn.server.commands.strings import cmd_get
from blinkstore_gunicorn.server.dispatch import Client, Dispatcher, ServerStats
from blinkstore_gunicorn.server.fastpath import resp_executor
from blinkstore_gunicorn.server.leases import LeaseTable
from blinkstore_gunicorn.shm import writer as shm_writer
from blinkstore_gunicorn.shm.layout import hash_secret
from blinkstore_gunicorn.shm.native import ENV as NATIVE_ENV
from blinkstore_gunicorn.shm.reader import RegionReader
from blinkstore_gunicorn.shm.writer import RegionFull, RegionWriter
from tests.unit.test_commands import NOW, Clock
from tests.unit.test_shm_adoption import _inherit
from tests.unit.test_shm_native import _can_build

#: Small limits, so that random traffic evicts (SIEVE's marks matter) and reaches the key limit.
MEMORY_LIMIT = 96 * 1024
MAX_KEY = 200
#: Values around resp.LARGE_BULK reach the value size limit too.
MAX_VALUE = resp.LARGE_BULK + 4
REGION_MAX_VALUE = 512
#: The commands the C path writes with.
WRITES = {b"SET", b"INCR", b"DECR", b"INCRBY", b"DECRBY", b"MSET", b"EXPIRE", b"PEXPIRE"}
#: What EXPIRE and PEXPIRE may get besides a small TTL: no TTL left, the bounds, no integer.
TTLS = [b"0", b"-1", b"9223372036854775", b"-9223372036854775", b"9223372036854776", b"1.5", b"x"]


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
    # One secret for every region: the same writes then probe the same slots in both stores.
    secret = hash_secret()
    monkeypatch.setattr(shm_writer, "hash_secret", lambda: secret)


class Store:
    """An engine (with a shared region unless ``region=False``), its dispatcher and a client,
    running requests the C way (``native``) or the Python way."""

    def __init__(
        self,
        clock: Clock,
        native: bool,
        region: bool = True,
        password: str | None = None,
        memory_limit: int = MEMORY_LIMIT,
    ) -> None:
        self.engine = MemoryEngine(
            memory_limit=memory_limit,
            max_key_size=MAX_KEY,
            max_value_size=MAX_VALUE,
            clock_ms=clock,
        )
        self.clock = clock
        self.reader: RegionReader | None = None
        if region:
            writer = RegionWriter(4 * 2**20, max_value=REGION_MAX_VALUE)
            self.engine.attach_region(writer)
            self.reader = RegionReader(*writer.fds, 0)
        self.d = Dispatcher(
            self.engine,
            clock_ms=clock,
            stats=ServerStats(),
            max_key_size=MAX_KEY,
            max_value_size=MAX_VALUE,
            password=password,
        )
        self.fallbacks = 0
        #: Another connection (BS.LEASE's holder).
        self.other = self.d.new_client()
        #: The replies parked blocking pops got, in order.
        self.delivered: list[bytes] = []

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

    def region_contents(self, keys: list[bytes]) -> list[object]:
        """What a reader of the region gets for each of ``keys``: value and deadline."""
        if self.reader is None or self.engine.region is None:
            return []
        # An hour ahead: a heartbeat older than STALE_NS makes every read ask the store, and a
        # loaded machine can pause this process that long between the beat and the reads.
        self.engine.region.beat(time.monotonic_ns() + 3600 * 10**9)
        return [(self.reader.get(key, 1), self.reader.get(key, 2)) for key in keys]

    def state(self, keys: list[bytes] = []) -> dict[str, object]:  # noqa: B006 - never changed
        """What a command may change, comparable between two stores."""
        e = self.engine
        return {
            "stats": e.stats(),
            # The same writes place the same region blocks: handles compare too.
            "ahead": [(key, _held(value)) for key, value in e._ahead.items()],
            "behind": [(key, _held(value)) for key, value in e._behind.items()],
            "visited": set(e._visited),
            "deadlines": dict(e._deadlines),
            "used": e._used,
            "inserts": e._inserts,
            "changes": e.watched.changes,
            "watched": dict(e.watched),
            "leases": list(self.d.leases.held),
            "region": self.region_contents(keys),
            "info": Dispatcher.execute(self.d, self.d.new_client(), [b"INFO", b"stats"]),
            "errors": dict(self.d.stats.error_codes),
            "usage": [
                Dispatcher.execute(self.d, self.d.new_client(), [b"MEMORY", b"USAGE", key])
                for key in sorted({*e._ahead, *e._behind})
            ],
            "cmd": self.client.cmd,
            "seen now": self.client.seen == self.d.now,
            "parked": len(self.d.blocked),
            "delivered": list(self.delivered),
        }

    def close(self) -> None:
        region = self.engine.region
        self.engine.flush()
        if self.reader is not None:
            self.reader.close()
        if region is not None:
            region.close()


def _held(value: object) -> object:
    """What the dicts hold for a key, comparable between stores: a container by its type, its
    cost and its contents in their iteration order (a set's decides SPOP's pick)."""
    if isinstance(value, bytes | int):
        return value
    contents: object = None
    if isinstance(value, List):
        contents = list(value.items), value.width
    elif isinstance(value, Set):
        contents = list(value.members)
    elif isinstance(value, Hash):
        contents = list(value.fields.items())
    elif isinstance(value, ZSet):
        contents = list(value.scores.items()), value.order
    return type(value).__name__, getattr(value, "cost", None), contents


@contextlib.contextmanager
def side_by_side(**options: Any) -> Iterator[tuple[Store, Store, Clock]]:
    """A C store and a Python store (``Store``'s ``options``) on one clock, closed after."""
    clock = Clock()
    c, python = Store(clock, True, **options), Store(clock, False, **options)
    try:
        yield c, python, clock
    finally:
        c.close()
        python.close()


@pytest.fixture
def pair() -> Iterator[tuple[Store, Store, Clock]]:
    with side_by_side() as stores:
        yield stores


def _value(rng: random.Random) -> bytes:
    """Random bytes (zeros and CRLF included): mostly region-sized, some at and over the
    region's max_value, a few around resp.LARGE_BULK and the value size limit; some numbers."""
    roll = rng.random()
    if roll < 0.1:
        return _number(rng)
    size = (
        rng.randrange(0, 64)
        if roll < 0.6
        else rng.choice([REGION_MAX_VALUE, REGION_MAX_VALUE + 1])
        if roll < 0.7
        else rng.randrange(REGION_MAX_VALUE - 4, 2000)
        if roll < 0.97
        else rng.randrange(resp.LARGE_BULK - 2, MAX_VALUE + 4)
    )
    pieces = [b"\r\n", b"\x00", b"\r", b"\n"]
    out = bytearray(rng.randbytes(size))
    for _ in range(min(size, 4)):
        at = rng.randrange(size)
        out[at : at + 2] = rng.choice(pieces)
    return bytes(out[:size])


#: What INCR may find, and INCRBY/DECRBY may get: replies.parse_int's edges.
NUMBERS = [
    b"0", b"-0", b"1", b"-1", b"00", b"01", b"-01", b"+1", b" 1", b"1 ", b"1\r\n", b"", b"-",
    b"1.5", b"1e3", b"0x10", b"\xd9\xa1", b"9223372036854775806", b"9223372036854775807",
    b"9223372036854775808", b"-9223372036854775807", b"-9223372036854775808",
    b"-9223372036854775809", b"18446744073709551616", b"99999999999999999999",
    b"000000000000000000001", b"-0000000000000000001", b"12345678901234567890123",
]  # fmt: skip


def _number(rng: random.Random) -> bytes:
    return rng.choice(NUMBERS) if rng.random() < 0.5 else b"%d" % rng.randrange(-1000, 1000)


def _keys() -> list[bytes]:
    keys = [b"k%d" % i for i in range(40)]
    keys += [b"\x00\r\nodd", b"", b"x" * (MAX_KEY - 1), b"y" * MAX_KEY, b"z" * (MAX_KEY + 1)]
    return keys


def _command(rng: random.Random, keys: list[bytes], clock: Clock) -> list[bytes] | None:
    """One random request (None: the clock moved instead)."""
    key = rng.choice(keys)
    roll = rng.random()
    if roll < 0.18:
        return [rng.choice([b"GET", b"get", b"Get"]), key]
    if roll < 0.26:
        return [rng.choice([b"MGET", b"mget"]), *rng.choices(keys, k=rng.randrange(1, 7))]
    if roll < 0.44:
        return [rng.choice([b"SET", b"set", b"Set"]), key, _value(rng)]
    if roll < 0.47:
        return [b"SET", key, _value(rng), b"PX", b"%d" % rng.randrange(1, 50)]
    if roll < 0.49:
        return [b"SET", key, _value(rng), rng.choice([b"NX", b"XX", b"GET", b"KEEPTTL"])]
    if roll < 0.57:
        name = rng.choice([b"INCR", b"DECR", b"incr", b"INCRBY", b"DECRBY", b"decrby"])
        return [name, key] if name.upper() in (b"INCR", b"DECR") else [name, key, _number(rng)]
    if roll < 0.65:
        pairs = rng.randrange(1, 6)
        names = rng.choices(keys, k=pairs)
        if pairs > 1 and rng.random() < 0.3:
            names[-1] = names[0]  # the same key twice: the later value wins
        args = [rng.choice([b"MSET", b"mset"])]
        for name in names:
            args += [name, _value(rng)]
        return args if rng.random() < 0.97 else args[:-1]  # odd: the arity error
    if roll < 0.69:
        return [b"DEL", key]
    if roll < 0.73:
        ttl = rng.choice(TTLS) if rng.random() < 0.15 else b"%d" % rng.randrange(1, 50)
        args = [rng.choice([b"PEXPIRE", b"pexpire", b"EXPIRE", b"expire"]), key, ttl]
        return args if rng.random() < 0.9 else [*args, rng.choice([b"NX", b"XX", b"GT", b"LT"])]
    if roll < 0.75:
        return [b"PERSIST", key]
    if roll < 0.79:
        return [b"HSET", key, b"f", b"v"]  # a type change (or WRONGTYPE)
    if roll < 0.82:
        return [b"WATCH", key]
    if roll < 0.83:
        return [b"UNWATCH"]
    if roll < 0.86:
        return [b"BS.LEASE", key, b"1000"]  # run by the other client: a lease SET must end
    if roll < 0.87:
        return [b"GET", key, b"extra"]  # the arity error
    if roll < 0.875:
        return [b"FLUSHDB"]
    clock.now += rng.randrange(0, 30)
    return None


def _client(store: Store, args: list[bytes]) -> Client | None:
    """Who sends ``args`` to ``store``: the other connection for BS.LEASE, a new one (which may
    park) for a blocking pop, else the store's own client (None)."""
    if args[0] == b"BS.LEASE":
        return store.other
    if args[0] not in (b"BLPOP", b"BRPOP", b"BZPOPMIN"):
        return None
    client = store.d.new_client()
    client.deliver = store.delivered.append
    return client


Command = Callable[[random.Random, list[bytes], Clock], list[bytes] | None]


def _run(
    c: Store, python: Store, seed: int, steps: int, command: Command = _command
) -> dict[tuple[bytes, bool], int]:
    """``steps`` random commands on both stores: the same replies and the same state after
    each. Returns how many of each command the C store answered (True) and handed over."""
    rng = random.Random(seed)
    keys = _keys()
    if rng.random() < 0.5:
        assert c("HELLO", "3")[:1] == python("HELLO", "3")[:1] == b"%"
    answered: dict[tuple[bytes, bool], int] = {}
    for step in range(steps):
        args = command(rng, keys, python.clock)
        if args is None:
            continue
        before = c.fallbacks
        reply = c(*args, client=_client(c, args))
        assert reply == python(*args, client=_client(python, args)), (seed, step, args[:2])
        assert c.state(keys) == python.state(keys), (seed, step, args[:2])
        outcome = (args[0].upper(), c.fallbacks == before)
        answered[outcome] = answered.get(outcome, 0) + 1
    return answered


@pytest.mark.parametrize("region", [True, False], ids=["region", "no-region"])
@pytest.mark.parametrize("seed", range(5))
def test_c_and_python_give_the_same_replies_and_state(seed: int, region: bool) -> None:
    with side_by_side(region=region) as (c, python, _):
        answered = _run(c, python, seed, 1500)
        # The random traffic reached every kind of entry and the eviction the marks steer, and
        # each command both ways: answered in C and handed over.
        stats = c.engine.stats()
        assert stats.hits and stats.misses and stats.evictions and stats.expirations
        for name in b"GET MGET SET MSET INCR INCRBY DECRBY EXPIRE PEXPIRE".split():
            assert answered.get((name, True)) and answered.get((name, False)), name


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
    assert c.fallbacks == before


def test_a_region_being_adopted_is_handed_over() -> None:
    """A successor store adopting a dead store's region: both paths adopt the same keys, for
    reads and writes."""
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
        key = f"k{rng.randrange(60)}"
        args = rng.choice(
            [
                ["GET", key],
                ["MGET", "k1", f"k{step}"],
                ["SET", key, "v"],
                ["INCR", key],
                ["MSET", "k1", "1", key, "2"],
            ]
        )
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
            self.leases = LeaseTable()
            self.busy = self.now = self.max_reply_size = None

    handlers = (cmd_get,) * 10
    with pytest.raises(TypeError, match="not a __slots__ attribute"):
        _fastcmd.Runner(Plain(), handlers, Dispatcher.execute, 0, (0,) * 6, RegionFull, bytes)

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
