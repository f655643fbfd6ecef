"""Host-wide lock rules (the lock table, without sockets or clocks) and the BLINK.LOCK*
commands called through the dispatcher, replies byte for byte."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from blinkstore_gunicorn.engine import MemoryEngine
from blinkstore_gunicorn.server.commands.registry import DEFERRED
from blinkstore_gunicorn.server.dispatch import Client, Dispatcher
from blinkstore_gunicorn.server.leases import LockTable

NOW = 1_700_000_000_000


class Recorder:
    """A parked caller that remembers what happened to it."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def lease_granted(self, token: int) -> None:
        self.events.append(("granted", token))

    def timed_out(self) -> None:
        self.events.append(("timeout", None))


def _acquired(table: LockTable, name: bytes, owner: str, ms: int | None, now: int) -> int:
    token = table.try_acquire(name, owner, ms, now)
    assert token is not None
    return token


# -- the table ------------------------------------------------------------------------------


def test_one_holder_and_not_reentrant() -> None:
    table = LockTable()
    _acquired(table, b"job", "a", 1000, 0)
    assert table.try_acquire(b"job", "b", 1000, 0) is None
    assert table.try_acquire(b"job", "a", 1000, 0) is None  # the holder too
    assert table.holder(b"job") == "a"


def test_release_needs_the_token_and_wakes_waiters_first_come_first_served() -> None:
    table = LockTable()
    token = _acquired(table, b"job", "a", 1000, 0)
    waiters = [Recorder() for _ in range(3)]
    for i, waiter in enumerate(waiters):
        table.park(b"job", waiter, owner=f"w{i}", lease_ms=1000, wait_ms=None, now_ms=0)
    assert table.release(b"job", token + 1, 1) is False
    assert table.holder(b"job") == "a"
    held = token
    for i, waiter in enumerate(waiters):
        assert table.release(b"job", held, 2) is True
        assert table.release(b"job", held, 2) is False  # a released token releases nothing
        assert [kind for kind, _ in waiter.events] == ["granted"]
        assert all(not later.events for later in waiters[i + 1 :])
        assert table.holder(b"job") == f"w{i}"
        granted = waiter.events[0][1]
        assert isinstance(granted, int) and granted != held
        held = granted
    assert table.release(b"job", held, 3) is True
    assert len(table) == 0


def test_holder_gone_hands_over_at_once_and_a_gone_waiter_is_skipped() -> None:
    table = LockTable()
    _acquired(table, b"job", "a", None, 0)
    gone, heir = Recorder(), Recorder()
    table.park(b"job", gone, owner="b", lease_ms=None, wait_ms=None, now_ms=0)
    table.park(b"job", heir, owner="c", lease_ms=None, wait_ms=None, now_ms=0)
    table.owner_gone("b", 1)
    table.owner_gone("a", 2)
    assert gone.events == []
    assert [kind for kind, _ in heir.events] == ["granted"]
    assert table.holder(b"job") == "c"


def test_timeout_hands_over_wait_limit_gives_up_and_none_means_never() -> None:
    table = LockTable()
    _acquired(table, b"job", "a", 100, 0)
    _acquired(table, b"forever", "a", None, 0)
    impatient, patient = Recorder(), Recorder()
    table.park(b"job", impatient, owner="b", lease_ms=500, wait_ms=50, now_ms=0)
    table.park(b"job", patient, owner="c", lease_ms=500, wait_ms=None, now_ms=0)
    assert table.next_deadline() == 50
    table.expire(50)
    assert impatient.events == [("timeout", None)]
    assert patient.events == []
    table.expire(100)
    assert [kind for kind, _ in patient.events] == ["granted"]
    assert table.next_deadline() == 600
    table.expire(10**12)
    assert b"job" not in table
    assert table.holder(b"forever") == "a"
    assert table.next_deadline() is None


def test_extend_adds_or_replaces_for_the_holder_only() -> None:
    table = LockTable()
    token = _acquired(table, b"job", "a", 100, 0)
    assert table.extend(b"job", token + 1, 1000, 50, replace=False) is False
    assert table.extend(b"job", token, 100, 50, replace=False) is True
    assert table.next_deadline() == 200
    assert table.extend(b"job", token, 30, 50, replace=True) is True
    assert table.next_deadline() == 80
    table.expire(79)
    assert table.token(b"job") == token
    table.expire(80)
    assert table.token(b"job") is None
    assert table.extend(b"job", token, 100, 90, replace=False) is False


def test_tokens_start_at_random_so_an_old_token_matches_no_new_lock() -> None:
    first, second = LockTable(), LockTable()
    token = _acquired(first, b"job", "a", None, 0)
    assert token != _acquired(second, b"job", "a", None, 0)
    assert 0 < token < 2**63


def test_watch_registers_one_close_callback_that_ends_the_owners_locks() -> None:
    table = LockTable()
    on_close: list[Callable[[], None]] = []
    _acquired(table, b"one", "a", None, 0)
    _acquired(table, b"two", "a", None, 0)
    table.watch("a", on_close, lambda: 5)
    table.watch("a", on_close, lambda: 5)
    assert len(on_close) == 1
    on_close[0]()
    assert len(table) == 0


# -- the commands -----------------------------------------------------------------------------


class Harness:
    def __init__(self) -> None:
        self.now = NOW
        self.engine = MemoryEngine(memory_limit=0, clock_ms=self.clock)
        self.d = Dispatcher(self.engine, clock_ms=self.clock)

    def clock(self) -> int:
        return self.now

    def client(self) -> tuple[Client, list[bytes]]:
        """A new connection and the list its deferred replies land in."""
        client = self.d.new_client()
        delivered: list[bytes] = []
        client.deliver = delivered.append
        return client, delivered

    def __call__(self, client: Client, *args: str | bytes) -> bytes:
        raw = [a.encode() if isinstance(a, str) else a for a in args]
        return self.d.execute(client, raw)

    def close(self, client: Client) -> None:
        for callback in client.on_close:
            callback()


def _token(reply: bytes) -> bytes:
    assert reply.startswith(b":") and reply.endswith(b"\r\n"), reply
    return reply[1:-2]


@pytest.fixture
def r() -> Harness:
    return Harness()


def test_lock_unlock_and_token(r: Harness) -> None:
    a, _ = r.client()
    b, _ = r.client()
    assert r(a, "BLINK.LOCKTOKEN", "job") == b"$-1\r\n"
    token = _token(r(a, "BLINK.LOCK", "job", "PX", "1000"))
    assert r(b, "blink.lock", "job", "px", "1000") == b"$-1\r\n"
    assert r(a, "BLINK.LOCK", "job") == b"$-1\r\n"
    assert r(b, "BLINK.LOCKTOKEN", "job") == b":" + token + b"\r\n"
    assert r(b, "BLINK.UNLOCK", "job", str(int(token) + 1)) == b":0\r\n"
    assert r(b, "BLINK.UNLOCK", "job", token) == b":1\r\n"
    assert r(b, "BLINK.UNLOCK", "job", token) == b":0\r\n"
    assert r(b, "BLINK.LOCKTOKEN", "job") == b"$-1\r\n"
    r(b, "HELLO", "3")
    r(a, "BLINK.LOCK", "job")
    assert r(b, "BLINK.LOCK", "job") == b"_\r\n"


def test_block_parks_until_unlock_in_arrival_order(r: Harness) -> None:
    holder, _ = r.client()
    first, first_got = r.client()
    second, second_got = r.client()
    token = _token(r(holder, "BLINK.LOCK", "job"))
    assert r(first, "BLINK.LOCK", "job", "BLOCK", "0") is DEFERRED
    assert r(second, "BLINK.LOCK", "job", "PX", "50", "BLOCK", "5000") is DEFERRED
    assert r(holder, "BLINK.UNLOCK", "job", token) == b":1\r\n"
    assert len(first_got) == 1 and second_got == []
    assert r(holder, "BLINK.LOCKTOKEN", "job") == first_got[0]
    r.close(first)  # the holder's connection closes: the next waiter has it at once
    assert len(second_got) == 1
    assert r(holder, "BLINK.LOCKTOKEN", "job") == second_got[0]
    r.now += 50
    r.d.locks.expire(r.now)  # its PX ran out
    assert r(holder, "BLINK.LOCKTOKEN", "job") == b"$-1\r\n"


def test_block_times_out_with_nil_and_the_holder_never_waits_for_itself(r: Harness) -> None:
    holder, holder_got = r.client()
    waiter, got = r.client()
    r(holder, "BLINK.LOCK", "job")
    assert r(holder, "BLINK.LOCK", "job", "BLOCK", "0") == b"$-1\r\n"
    assert r(waiter, "BLINK.LOCK", "job", "BLOCK", "100") is DEFERRED
    r.now += 99
    r.d.locks.expire(r.now)
    assert got == []
    r.now += 1
    r.d.locks.expire(r.now)
    assert got == [b"$-1\r\n"]
    assert holder_got == []


def test_extend(r: Harness) -> None:
    a, _ = r.client()
    token = _token(r(a, "BLINK.LOCK", "job", "PX", "100"))
    assert r(a, "BLINK.LOCKEXTEND", "job", token, "100") == b":1\r\n"
    assert r(a, "BLINK.LOCKEXTEND", "job", str(int(token) + 1), "100") == b":0\r\n"
    r.now += 150
    r.d.locks.expire(r.now)
    assert r(a, "BLINK.LOCKEXTEND", "job", token, "10", "replace") == b":1\r\n"
    r.now += 10
    r.d.locks.expire(r.now)
    assert r(a, "BLINK.LOCKEXTEND", "job", token, "10") == b":0\r\n"


def test_lock_names_are_not_keys(r: Harness) -> None:
    a, _ = r.client()
    r(a, "BLINK.LOCK", "job")
    assert r(a, "GET", "job") == b"$-1\r\n"
    assert r(a, "SET", "job", "v") == b"+OK\r\n"
    r(a, "FLUSHALL")
    assert r(a, "BLINK.LOCKTOKEN", "job") != b"$-1\r\n"


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("BLINK.LOCK",), "ERR wrong number of arguments for 'blink.lock' command"),
        (("BLINK.LOCK", "j", "PX"), "ERR syntax error"),
        (("BLINK.LOCK", "j", "EX", "1"), "ERR syntax error"),
        (("BLINK.LOCK", "j", "PX", "x"), "ERR value is not an integer or out of range"),
        (("BLINK.LOCK", "j", "PX", "0"), "ERR invalid expire time in 'blink.lock' command"),
        (("BLINK.LOCK", "j", "BLOCK", "-1"), "ERR timeout is negative"),
        (("BLINK.UNLOCK", "j"), "ERR wrong number of arguments for 'blink.unlock' command"),
        (("BLINK.UNLOCK", "j", "t"), "ERR value is not an integer or out of range"),
        (("BLINK.LOCKEXTEND", "j", "1", "x"), "ERR value is not an integer or out of range"),
        (
            ("BLINK.LOCKEXTEND", "j", "1", "0"),
            "ERR invalid expire time in 'blink.lockextend' command",
        ),
        (("BLINK.LOCKEXTEND", "j", "1", "5", "KEEP"), "ERR syntax error"),
        (("BLINK.LOCKEXTEND", "j", "1", "5", "REPLACE", "x"), "ERR syntax error"),
        (("BLINK.LOCKTOKEN",), "ERR wrong number of arguments for 'blink.locktoken' command"),
    ],
)
def test_bad_input_gets_an_error_reply(r: Harness, args: tuple[str, ...], error: str) -> None:
    a, _ = r.client()
    assert r(a, *args) == b"-" + error.encode() + b"\r\n"
    assert r(a, "PING") == b"+PONG\r\n"
