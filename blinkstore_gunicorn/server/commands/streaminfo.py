"""Pending entries and stream introspection (Redis 7.0's t_stream.c): XPENDING, XCLAIM,
XAUTOCLAIM and XINFO STREAM [FULL] / GROUPS / CONSUMERS / HELP.

The groups are the engine's (``engine/streamconsume.py``); this module parses, checks and
encodes with Redis's argument rules, reply shapes and error texts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from blinkstore_gunicorn.engine.streamconsume import Claim, StreamGroups, lag, set_last_id
from blinkstore_gunicorn.engine.streamgroups import UNKNOWN_READ, Group, Pel
from blinkstore_gunicorn.engine.streams import MIN_ID, Stream, StreamID
from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands.registry import command
from blinkstore_gunicorn.server.commands.replies import (
    ERR_NOT_INT,
    ERR_SYNTAX,
    RESP3_NULL,
    as_text,
    help_reply,
    parse_int,
)
from blinkstore_gunicorn.server.commands.xreply import (
    ERR_INVALID_ID,
    ERR_NO_KEY,
    U64,
    bound,
    encode,
    entry,
    format_id,
    no_group,
    slice_of,
    strict_id,
    subcommand_arity,
    subcommand_syntax,
    too_large,
)

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher

__all__: list[str] = []

_LONG_MAX: Final = 2**63 - 1
_XINFO_ARITY: Final = {b"CONSUMERS": 4, b"GROUPS": 3, b"STREAM": -3, b"HELP": 2}
_XINFO_HELP: Final = (
    "XINFO <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CONSUMERS <key> <groupname>",
    "    Show consumers of <groupname>.",
    "GROUPS <key>",
    "    Show the stream consumer groups.",
    "STREAM <key> [FULL [COUNT <count>]",
    "    Show information about the stream.",
    "HELP",
    "    Prints this help.",
)


def _no_key_or_group(key: bytes, name: bytes) -> bytes:
    return resp.error(f"NOGROUP No such key '{as_text(key)}' or consumer group '{as_text(name)}'")


def _map(c: Client, pairs: list[tuple[str, bytes]]) -> bytes:
    """A map reply (RESP3), or its flat array of names and values (RESP2)."""
    head = b"%%%d\r\n" % len(pairs) if c.resp3 else b"*%d\r\n" % (2 * len(pairs))
    return head + b"".join(resp.bulk(name.encode()) + value for name, value in pairs)


def _id(entry_id: StreamID) -> bytes:
    return resp.bulk(format_id(entry_id))


def _group_of(d: Dispatcher, key: bytes, name: bytes) -> tuple[Stream, Group] | bytes:
    """The stream and group XPENDING, XCLAIM and XAUTOCLAIM work on, or their error."""
    stream = d.engine.lookup(key, Stream)
    group = None if stream is None else stream.groups.get(name)
    if stream is None or group is None:
        return _no_key_or_group(key, name)
    return stream, group


@command("xpending", -3, "readonly", (1, 1, 1))
def cmd_xpending(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``XPENDING key group [[IDLE ms] start end count [consumer]]``: the group's pending
    summary, or the pending entries in the range (ID, owner, idle ms, deliveries)."""
    if len(args) != 3 and not 6 <= len(args) <= 9:
        return ERR_SYNTAX
    min_idle, count, start, end, owner = 0, 0, MIN_ID, MIN_ID, None
    if len(args) >= 6:
        at = 3
        if args[3].upper() == b"IDLE":
            idle = parse_int(args[4])
            if idle is None:
                return ERR_NOT_INT
            if len(args) < 8:
                return ERR_SYNTAX
            min_idle, at = idle, 5
        number = parse_int(args[at + 2])
        if number is None:
            return ERR_NOT_INT
        count = max(number, 0)
        low = bound(args[at], 0, start=True)
        if isinstance(low, bytes):
            return low
        high = bound(args[at + 1], U64, start=False)
        if isinstance(high, bytes):
            return high
        start, end = low, high
        owner = args[at + 3] if at + 3 < len(args) else None
    found = _group_of(d, args[1], args[2])
    if isinstance(found, bytes):
        return found
    _, group = found
    if len(args) == 3:
        return _pending_summary(c, group)
    pel: Pel = group.pel
    if owner is not None:
        consumer = group.consumers.get(owner)
        if consumer is None:
            return resp.EMPTY_ARRAY
        pel = consumer.pel
    now = d.clock_ms()
    rows: list[bytes] = []
    for entry_id in pel.since(start, end):
        if len(rows) >= count:
            break
        nack = pel.nacks[entry_id]
        idle = now - nack.delivered_ms
        if min_idle and idle < min_idle:
            continue
        assert nack.consumer is not None
        rows.append(
            b"*4\r\n"
            + _id(entry_id)
            + resp.bulk(nack.consumer.name)
            + resp.integer(max(idle, 0))
            + resp.integer(nack.deliveries)
        )
    return resp.array(rows)


def _pending_summary(c: Client, group: Group) -> bytes:
    pel = group.pel
    if not pel:
        null_array = RESP3_NULL if c.resp3 else resp.NIL_ARRAY
        return b"*4\r\n:0\r\n" + c.nil + c.nil + null_array
    owners = [
        b"*2\r\n" + resp.bulk(consumer.name) + resp.bulk(b"%d" % len(consumer.pel))
        for consumer in group.sorted_consumers()
        if consumer.pel
    ]
    head = b"*4\r\n" + resp.integer(len(pel)) + _id(pel.ids[0]) + _id(pel.ids[-1])
    return head + resp.array(owners)


def _claimed(d: Dispatcher, c: Client, stream: Stream, ids: list[StreamID], justid: bool) -> bytes:
    """The claimed entries (their IDs only with JUSTID)."""
    if justid:
        return resp.array(map(_id, ids))
    bodies = [stream.body(entry_id) for entry_id in ids]
    error = too_large(d, [([], [body or b"" for body in bodies])])
    if error is not None:
        return error
    return resp.array(
        c.nil if body is None else entry(entry_id, body)
        for entry_id, body in zip(ids, bodies, strict=True)
    )


def _option_int(raw: bytes, what: str) -> int | bytes:
    number = parse_int(raw)
    if number is None:
        return resp.error(f"ERR Invalid {what} argument for XCLAIM")
    return number


@command("xclaim", -6, "write fast", (1, 1, 1))
def cmd_xclaim(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``XCLAIM key group consumer min-idle-time id... [IDLE ms] [TIME ms] [RETRYCOUNT n]
    [FORCE] [JUSTID] [LASTID id]``: the pending entries (idle at least min-idle-time) now
    owned by the consumer."""
    found = _group_of(d, args[1], args[2])
    if isinstance(found, bytes):
        return found
    stream, group = found
    min_idle = parse_int(args[4])
    if min_idle is None:
        return resp.error("ERR Invalid min-idle-time argument for XCLAIM")
    ids: list[StreamID] = []
    at = 5
    while at < len(args):
        one = strict_id(args[at])
        if one is None:
            break
        ids.append(one)
        at += 1
    now = d.clock_ms()
    delivered: int | None = None
    retries, force, justid, last_id = -1, False, False, MIN_ID
    while at < len(args):
        option, more = args[at].upper(), at + 1 < len(args)
        if option in (b"FORCE", b"JUSTID"):
            force, justid = force or option == b"FORCE", justid or option == b"JUSTID"
        elif option in (b"IDLE", b"TIME", b"RETRYCOUNT") and more:
            at += 1
            number = _option_int(args[at], f"{option.decode()} option")
            if isinstance(number, bytes):
                return number
            if option == b"RETRYCOUNT":
                retries = number
            else:
                delivered = now - number if option == b"IDLE" else number
        elif option == b"LASTID" and more:
            at += 1
            last = strict_id(args[at])
            if last is None:
                return ERR_INVALID_ID
            last_id = last
        else:
            return resp.error(f"ERR Unrecognized XCLAIM option '{as_text(args[at])}'")
        at += 1
    set_last_id(group, last_id)
    if delivered is not None and not 0 <= delivered <= now:
        delivered = now  # a bogus time (a client's clock ahead) is taken as now, as Redis does
    how = Claim(
        args[3], max(min_idle, 0), now, delivered_ms=delivered, retries=retries, justid=justid
    )
    claimed = StreamGroups(d.engine, args[1], stream).claim(group, ids, how, force=force)
    return _claimed(d, c, stream, claimed, justid)


@command("xautoclaim", -6, "write fast", (1, 1, 1))
def cmd_xautoclaim(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``XAUTOCLAIM key group consumer min-idle-time start [COUNT n] [JUSTID]``: the next
    cursor, the entries claimed (idle at least min-idle-time, from ``start``), and the IDs
    dropped from the pending list because their entry was deleted."""
    min_idle = parse_int(args[4])
    if min_idle is None:
        return resp.error("ERR Invalid min-idle-time argument for XAUTOCLAIM")
    start = bound(args[5], 0, start=True)
    if isinstance(start, bytes):
        return start
    count, justid = 100, False
    at = 6
    while at < len(args):
        option = args[at].upper()
        if option == b"COUNT" and at + 1 < len(args):
            number = parse_int(args[at + 1])
            if number is None or not 1 <= number <= _LONG_MAX // 16:
                return resp.error("ERR COUNT must be > 0")
            count = number
            at += 1
        elif option == b"JUSTID":
            justid = True
        else:
            return ERR_SYNTAX
        at += 1
    found = _group_of(d, args[1], args[2])
    if isinstance(found, bytes):
        return found
    stream, group = found
    how = Claim(args[3], max(min_idle, 0), d.clock_ms(), justid=justid)
    edit = StreamGroups(d.engine, args[1], stream)
    cursor, claimed, deleted = edit.autoclaim(group, start, count, how)
    return (
        b"*3\r\n"
        + _id(cursor)
        + _claimed(d, c, stream, claimed, justid)
        + resp.array(map(_id, deleted))
    )


@command("xinfo", -2, "readonly")
def cmd_xinfo(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``XINFO STREAM key [FULL [COUNT n]]``, ``GROUPS key``, ``CONSUMERS key group``,
    ``HELP``."""
    error = subcommand_arity(args, _XINFO_ARITY)
    if error is not None:
        return error
    sub = args[1].upper()
    if sub == b"HELP":
        return help_reply(_XINFO_HELP)
    key = args[2]
    stream = d.engine.lookup(key, Stream)
    if stream is None:
        return ERR_NO_KEY
    if sub == b"GROUPS":
        groups = [stream.groups[name] for name in sorted(stream.groups)]
        return resp.array(_map(c, _group_fields(c, stream, group)) for group in groups)
    if sub == b"CONSUMERS":
        group = stream.groups.get(args[3])
        if group is None:
            return no_group(key, args[3])
        now = d.clock_ms()
        return resp.array(
            _map(
                c,
                [
                    ("name", resp.bulk(consumer.name)),
                    ("pending", resp.integer(len(consumer.pel))),
                    ("idle", resp.integer(max(now - consumer.seen_ms, 0))),
                ],
            )
            for consumer in group.sorted_consumers()
        )
    return _stream_info(d, c, args, stream)


def _read_counter(c: Client, number: int | None) -> bytes:
    return c.nil if number is None or number == UNKNOWN_READ else resp.integer(number)


def _group_fields(c: Client, stream: Stream, group: Group) -> list[tuple[str, bytes]]:
    """XINFO GROUPS' fields of a group."""
    return [
        ("name", resp.bulk(group.name)),
        ("consumers", resp.integer(len(group.consumers))),
        ("pending", resp.integer(len(group.pel))),
        ("last-delivered-id", _id(group.last_id)),
        ("entries-read", _read_counter(c, group.entries_read)),
        ("lag", _read_counter(c, lag(stream, group))),
    ]


def _stream_info(d: Dispatcher, c: Client, args: list[bytes], stream: Stream) -> bytes:
    full, count = len(args) > 3, 10
    if full:
        if args[3].upper() != b"FULL":
            return subcommand_syntax(args)
        if len(args) > 4:
            if len(args) != 6 or args[4].upper() != b"COUNT":
                return subcommand_syntax(args)
            number = parse_int(args[5])
            if number is None:
                return ERR_NOT_INT
            count = number if number >= 0 else 10
    fields = [
        ("length", resp.integer(len(stream))),
        ("radix-tree-keys", resp.integer(len(stream.live_nodes()))),
        ("radix-tree-nodes", resp.integer(radix_nodes(stream))),
        ("last-generated-id", _id(stream.last_id)),
        ("max-deleted-entry-id", _id(stream.max_deleted)),
        ("entries-added", resp.integer(stream.entries_added)),
        ("recorded-first-entry-id", _id(stream.first_id)),
    ]
    if not full:
        first = last = c.nil
        if stream.ids:
            first = entry(stream.ids[0], stream.bodies[0])
            last = entry(stream.ids[-1], stream.bodies[-1])
        fields += [
            ("groups", resp.integer(len(stream.groups))),
            ("first-entry", first),
            ("last-entry", last),
        ]
        return _map(c, fields)
    shown = slice_of(stream, 0, count or len(stream), rev=False)
    error = too_large(d, [shown])
    if error is not None:
        return error
    groups = [stream.groups[name] for name in sorted(stream.groups)]
    fields += [
        ("entries", encode(shown)),
        ("groups", resp.array(_full_group(c, stream, group, count) for group in groups)),
    ]
    return _map(c, fields)


def _first(pel: Pel, count: int) -> Iterable[StreamID]:
    return pel.ids[:count] if count else pel.ids


def _full_group(c: Client, stream: Stream, group: Group, count: int) -> bytes:
    """A group in XINFO STREAM FULL: its fields, its pending entries, its consumers."""
    pending = []
    for entry_id in _first(group.pel, count):
        nack = group.pel.nacks[entry_id]
        assert nack.consumer is not None
        pending.append(
            b"*4\r\n"
            + _id(entry_id)
            + resp.bulk(nack.consumer.name)
            + resp.integer(nack.delivered_ms)
            + resp.integer(nack.deliveries)
        )
    consumers = []
    for consumer in group.sorted_consumers():
        own = [
            b"*3\r\n"
            + _id(entry_id)
            + resp.integer(consumer.pel.nacks[entry_id].delivered_ms)
            + resp.integer(consumer.pel.nacks[entry_id].deliveries)
            for entry_id in _first(consumer.pel, count)
        ]
        fields = [
            ("name", resp.bulk(consumer.name)),
            ("seen-time", resp.integer(consumer.seen_ms)),
            ("pel-count", resp.integer(len(consumer.pel))),
            ("pending", resp.array(own)),
        ]
        consumers.append(_map(c, fields))
    group_fields = _group_fields(c, stream, group)
    return _map(
        c,
        [
            group_fields[0],
            group_fields[3],
            group_fields[4],
            group_fields[5],
            ("pel-count", resp.integer(len(group.pel))),
            ("pending", resp.array(pending)),
            ("consumers", resp.array(consumers)),
        ],
    )


def radix_nodes(stream: Stream) -> int:
    """Redis's ``radix-tree-nodes``: the nodes of the compressed radix tree (Redis's rax) that
    holds its listpacks under their first IDs, 16 bytes big-endian each."""
    keys = [ms.to_bytes(8, "big") + seq.to_bytes(8, "big") for ms, seq in stream.live_nodes()]
    return _rax_nodes(keys, 0) if keys else 1


def _rax_nodes(keys: list[bytes], depth: int) -> int:
    """The nodes under one that starts at byte ``depth`` of ``keys`` (sorted, distinct, all
    as long): a compressed node for the bytes they share, then a node branching on the first
    byte where they differ, or a leaf where they end."""
    first, last = keys[0], keys[-1]
    if len(keys) == 1:
        return 1 if depth == len(first) else 2
    common = depth
    while first[common] == last[common]:
        common += 1
    count = 2 if common > depth else 1
    at = 0
    while at < len(keys):
        byte = keys[at][common]
        stop = at + 1
        while stop < len(keys) and keys[stop][common] == byte:
            stop += 1
        count += _rax_nodes(keys[at:stop], common + 1)
        at = stop
    return count
