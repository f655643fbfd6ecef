"""Consumer groups through the dispatcher with a clock the test moves: idle times, minimum
idle times and delivery counts exactly (the integration test compares the rest of every
reply with redis-server), the client buffer limit, and the pending lists' own invariants."""

from __future__ import annotations

from blinkstore_gunicorn.engine.streamgroups import Consumer, Group, Nack, Pel
from tests.unit.test_commands import Harness, bulks


def _pending_row(entry_id: str, consumer: str, idle: int, deliveries: int) -> bytes:
    return b"*4\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n:%d\r\n:%d\r\n" % (
        len(entry_id),
        entry_id.encode(),
        len(consumer),
        consumer.encode(),
        idle,
        deliveries,
    )


def _stream_with_pending(r: Harness) -> None:
    for n in (1, 2, 3):
        r("XADD", "s", f"{n}-0", "f", str(n))
    r("XGROUP", "CREATE", "s", "g", "0")
    r("XREADGROUP", "GROUP", "g", "a", "COUNT", "2", "STREAMS", "s", ">")
    r.clock.now += 5_000
    r("XREADGROUP", "GROUP", "g", "b", "STREAMS", "s", ">")
    r.clock.now += 1_000


def test_idle_times_and_minimum_idle_times() -> None:
    r = Harness()
    _stream_with_pending(r)
    assert r("XPENDING", "s", "g", "-", "+", "10") == b"*3\r\n" + b"".join(
        (_pending_row("1-0", "a", 6000, 1), _pending_row("2-0", "a", 6000, 1)),
    ) + _pending_row("3-0", "b", 1000, 1)
    assert r("XPENDING", "s", "g", "IDLE", "2000", "-", "+", "10") == b"*2\r\n" + b"".join(
        (_pending_row("1-0", "a", 6000, 1), _pending_row("2-0", "a", 6000, 1))
    )
    # XCLAIM takes only what was idle long enough, counts a delivery and resets the idle time.
    claimed = r("XCLAIM", "s", "g", "c", "2000", "1-0", "3-0", "JUSTID")
    assert claimed == bulks("1-0")
    assert r("XPENDING", "s", "g", "-", "+", "1") == b"*1\r\n" + _pending_row("1-0", "c", 0, 1)
    r("XCLAIM", "s", "g", "c", "0", "2-0", "IDLE", "500", "RETRYCOUNT", "9")
    assert r("XPENDING", "s", "g", "2-0", "2-0", "1") == b"*1\r\n" + _pending_row(
        "2-0", "c", 500, 9
    )
    r("XCLAIM", "s", "g", "c", "0", "3-0", "TIME", str(r.clock.now - 700))
    assert r("XPENDING", "s", "g", "3-0", "3-0", "1") == b"*1\r\n" + _pending_row(
        "3-0", "c", 700, 2
    )
    # XAUTOCLAIM: from the cursor, what has been idle 600 ms or more.
    reply = r("XAUTOCLAIM", "s", "g", "d", "600", "0", "JUSTID")
    assert reply == b"*3\r\n$3\r\n0-0\r\n" + bulks("3-0") + b"*0\r\n"
    r.clock.now += 10_000
    assert r("XINFO", "CONSUMERS", "s", "g").count(b"idle\r\n:") == 4
    assert b"$4\r\nidle\r\n:10000\r\n" in r("XINFO", "CONSUMERS", "s", "g")


def test_a_reply_over_the_client_buffer_limit_delivers_nothing() -> None:
    r = Harness(max_reply_size=1000)
    r("XADD", "s", "1-0", "f", "a" * 600)
    r("XADD", "s", "2-0", "f", "b" * 600)
    r("XGROUP", "CREATE", "s", "g", "0")
    reply = r("XREADGROUP", "GROUP", "g", "a", "STREAMS", "s", ">")
    assert reply.startswith(b"-ERR reply too large")
    assert r("XPENDING", "s", "g").startswith(b"*4\r\n:0\r\n")
    assert r("XREADGROUP", "GROUP", "g", "a", "COUNT", "1", "STREAMS", "s", ">").startswith(b"*1")


def test_the_engine_account_follows_the_groups() -> None:
    r = Harness()
    r("XADD", "s", "1-0", "f", "v")
    bare = r.engine.used_bytes
    r("XGROUP", "CREATE", "s", "g", "0")
    r("XREADGROUP", "GROUP", "g", "a", "STREAMS", "s", ">")
    assert r.engine.used_bytes > bare
    r("COPY", "s", "t")
    r("XACK", "t", "g", "1-0")
    assert r("XPENDING", "s", "g").startswith(b"*4\r\n:1\r\n")  # the copy is independent
    r("DEL", "t")
    r("XGROUP", "DESTROY", "s", "g")
    assert r.engine.used_bytes == bare


def test_a_pending_list_walk_survives_removals() -> None:
    pel = Pel()
    for n in (5, 1, 3, 2, 4):
        pel.add((n, 0), Nack(None, 0, 1))
    assert pel.ids == [(n, 0) for n in range(1, 6)]
    seen = []
    for entry_id in pel.since((2, 0)):
        seen.append(entry_id)
        pel.remove(entry_id)
        if entry_id == (3, 0):
            pel.remove((4, 0))
    assert seen == [(2, 0), (3, 0), (5, 0)]
    assert pel.ids == [(1, 0)] and list(pel.nacks) == [(1, 0)]


def test_a_cloned_group_shares_nothing() -> None:
    group = Group(b"g", (9, 0), 4)
    owner = group.consumers[b"c"] = Consumer(b"c", 7)
    nack = Nack(owner, 100, 2)
    group.pel.add((1, 0), nack)
    owner.pel.add((1, 0), nack)
    copy = group.clone()
    twin = copy.pel.nacks[(1, 0)]
    assert twin is not nack and twin.consumer is copy.consumers[b"c"]
    assert copy.consumers[b"c"].pel.nacks[(1, 0)] is twin
    assert (twin.delivered_ms, twin.deliveries, copy.cost) == (100, 2, group.cost)
