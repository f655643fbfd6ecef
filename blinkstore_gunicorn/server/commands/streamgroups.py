"""Consumer-group commands (Redis 7.0's t_stream.c): XGROUP, XREADGROUP, XACK and XSETID.
``XREADGROUP ... BLOCK`` on ``>`` parks the caller in the store (``server/blocking.py``) as
XREAD and the blocking pops do, until an XADD brings entries the group has not delivered.

The groups and their memory account are the engine's (``engine/streamconsume.py``); this
module parses, checks and encodes with Redis's argument rules, reply shapes and error texts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from blinkstore_gunicorn.engine import EntryTooLarge, KeyTooLarge
from blinkstore_gunicorn.engine.streamconsume import StreamGroups, history, new_span
from blinkstore_gunicorn.engine.streamgroups import GROUP_OVERHEAD, UNKNOWN_READ, Group
from blinkstore_gunicorn.engine.streams import MAX_ID, MIN_ID, Stream, StreamID
from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands.registry import DEFERRED, command
from blinkstore_gunicorn.server.commands.replies import (
    ERR_NOT_INT,
    ERR_SYNTAX,
    ONE,
    RESP3_NULL,
    ZERO,
    as_text,
    help_reply,
    limit_error,
    parse_int,
    reply_too_large,
)
from blinkstore_gunicorn.server.commands.xreply import (
    ERR_INVALID_ID,
    ERR_NO_KEY,
    U64,
    entry,
    no_group,
    parse_read,
    strict_id,
    subcommand_arity,
    subcommand_syntax,
    xrange_id,
)

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher

__all__: list[str] = []

ERR_NEEDS_KEY: Final = resp.error(
    "ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want "
    "to use the MKSTREAM option to create an empty stream automatically."
)
ERR_BUSYGROUP: Final = resp.error("BUSYGROUP Consumer Group name already exists")
ERR_ENTRIESREAD: Final = resp.error("ERR value for ENTRIESREAD must be positive or -1")
ERR_DOLLAR: Final = resp.error(
    "ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the history "
    "of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ "
    "ID would just return an empty result set."
)
ERR_UNBLOCKED: Final = resp.error("UNBLOCKED the stream key no longer exists")
ERR_GROUP_GONE: Final = resp.error(
    "NOGROUP the consumer group this client was blocked on no longer exists"
)

_XGROUP_ARITY: Final = {
    b"CREATE": -5,
    b"SETID": -5,
    b"DESTROY": 4,
    b"CREATECONSUMER": 5,
    b"DELCONSUMER": 5,
    b"HELP": 2,
}
_XGROUP_HELP: Final = (
    "XGROUP <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CREATE <key> <groupname> <id|$> [option]",
    "    Create a new consumer group. Options are:",
    "    * MKSTREAM",
    "      Create the empty stream if it does not exist.",
    "    * ENTRIESREAD entries_read",
    "      Set the group's entries_read counter (internal use).",
    "CREATECONSUMER <key> <groupname> <consumer>",
    "    Create a new consumer in the specified group.",
    "DELCONSUMER <key> <groupname> <consumer>",
    "    Remove the specified consumer.",
    "DESTROY <key> <groupname>",
    "    Remove the specified group.",
    "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
    "    Set the current group ID and entries_read counter.",
    "HELP",
    "    Prints this help.",
)


def _group_options(args: list[bytes], sub: bytes) -> tuple[bool, int] | bytes:
    """CREATE's MKSTREAM and CREATE's or SETID's ENTRIESREAD, from ``args[5:]``."""
    mkstream, read = False, UNKNOWN_READ
    i = 5
    while i < len(args):
        option = args[i].upper()
        if sub == b"CREATE" and option == b"MKSTREAM":
            mkstream = True
            i += 1
        elif option == b"ENTRIESREAD" and i + 1 < len(args):
            number = parse_int(args[i + 1])
            if number is None:
                return ERR_NOT_INT
            if number < UNKNOWN_READ:
                return ERR_ENTRIESREAD
            read = number
            i += 2
        else:
            return subcommand_syntax(args)
    return mkstream, read


@command("xgroup", -2, "write")
def cmd_xgroup(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``XGROUP CREATE key group id|$ [MKSTREAM] [ENTRIESREAD n]``, ``SETID key group id|$
    [ENTRIESREAD n]``, ``DESTROY key group``, ``CREATECONSUMER|DELCONSUMER key group name``,
    ``HELP``."""
    sub = args[1].upper()
    error = subcommand_arity(args, _XGROUP_ARITY)
    if error is not None:
        return error
    if sub == b"HELP":
        return help_reply(_XGROUP_HELP)
    options = (False, UNKNOWN_READ)
    if sub in (b"CREATE", b"SETID"):
        parsed = _group_options(args, sub)
        if isinstance(parsed, bytes):
            return parsed
        options = parsed
    mkstream, read = options
    key, name = args[2], args[3]
    stream = d.engine.lookup(key, Stream)
    group = None if stream is None else stream.groups.get(name)
    if not mkstream:
        if stream is None:
            return ERR_NEEDS_KEY
        if group is None and sub not in (b"CREATE", b"DESTROY"):
            return no_group(key, name)
    if sub == b"CREATE":
        return _create(d, args, stream, read) if len(args) <= 8 else subcommand_syntax(args)
    assert stream is not None
    edit = StreamGroups(d.engine, key, stream)
    if sub == b"DESTROY":
        if not edit.destroy_group(name):
            return ZERO
        if d.blocked:  # its parked readers get NOGROUP
            d.blocked.ready(key)
        return ONE
    assert group is not None
    if sub == b"SETID":
        return (
            _set_id(args, stream, group, read) if len(args) in (5, 7) else subcommand_syntax(args)
        )
    if sub == b"CREATECONSUMER":
        created = args[4] not in group.consumers
        if created:
            edit.consumer_of(group, args[4], d.clock_ms())
        return ONE if created else ZERO
    return resp.integer(edit.delete_consumer(group, args[4]))


def _create(d: Dispatcher, args: list[bytes], stream: Stream | None, read: int) -> bytes:
    key, name = args[2], args[3]
    if args[4] == b"$":
        last_id = MIN_ID if stream is None else stream.last_id
    else:
        found = strict_id(args[4])
        if found is None:
            return ERR_INVALID_ID
        last_id = found
    if stream is not None and name in stream.groups:
        return ERR_BUSYGROUP
    try:  # room for the group (and the stream, with MKSTREAM) first
        stream = d.engine.writable(key, Stream, GROUP_OVERHEAD + len(name))
    except (EntryTooLarge, KeyTooLarge) as exc:
        return limit_error(exc)
    StreamGroups(d.engine, key, stream).create_group(name, last_id, read)
    return resp.OK


def _set_id(args: list[bytes], stream: Stream, group: Group, read: int) -> bytes:
    if args[4] == b"$":
        last_id = stream.last_id
    else:
        found = xrange_id(args[4])
        if found is None:
            return ERR_INVALID_ID
        last_id = found
    group.last_id, group.entries_read = last_id, read
    return resp.OK


def _read_group_error(key: bytes, name: bytes) -> bytes:
    return resp.error(
        f"NOGROUP No such key '{as_text(key)}' or consumer group '{as_text(name)}' in "
        "XREADGROUP with GROUP option"
    )


@command("xreadgroup", -7, "write blocking movablekeys")
def cmd_xreadgroup(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``XREADGROUP GROUP group consumer [COUNT n] [BLOCK ms] [NOACK] STREAMS key... id...``:
    with ``>`` the entries no consumer of the group was given yet (made pending for this
    one unless NOACK), parked with BLOCK until some come; with an ID the consumer's own
    pending entries after it."""
    parsed = parse_read(c, args)
    if isinstance(parsed, bytes):
        return parsed
    assert parsed.group is not None
    name, consumer_name, count = parsed.group, parsed.consumer, parsed.count
    wanted: list[StreamID | None] = []  # None: '>'
    for key, raw in zip(parsed.keys, parsed.raw_ids, strict=True):
        stream = d.engine.lookup(key, Stream)
        if stream is None or name not in stream.groups:
            return _read_group_error(key, name)
        if raw == b"$":
            return ERR_DOLLAR
        if raw == b">":
            wanted.append(None)
            continue
        found = strict_id(raw)
        if found is None:
            return ERR_INVALID_ID
        wanted.append(None if found == MAX_ID else found)  # Redis's own mark for '>'

    def serve(key: bytes, after: StreamID | None, parked: bool) -> bytes | None:
        """The key and its entries for this consumer, None when there are none, or an error
        reply."""
        stream = d.engine.lookup(key, Stream)
        if stream is None:
            return None
        group = stream.groups.get(name)
        if group is None:
            return ERR_GROUP_GONE
        if after is None:
            # Redis compares its last live entry when answering at once, its last ID when
            # waking a parked reader.
            newest = stream.last_id if parked else stream.ids[-1] if stream.ids else MIN_ID
            if newest <= group.last_id:
                return None
            # The client buffer limit, checked before anything is delivered.
            first, stop = new_span(stream, group, count)
            size = sum(map(len, stream.bodies[first:stop]))
            error = reply_too_large(size, d.max_reply_size)
            if error is not None:
                return error
        edit = StreamGroups(d.engine, key, stream)
        consumer, _ = edit.consumer_of(group, consumer_name, d.clock_ms())
        null = RESP3_NULL if c.resp3 else resp.NIL_ARRAY
        entries: list[tuple[StreamID, bytes | None]]
        if after is None:
            ids, bodies = edit.read_new(
                group, consumer, count, noack=parsed.noack, now_ms=d.clock_ms()
            )
            entries = list(zip(ids, bodies, strict=True))
        else:
            start = (after[0], after[1] + 1) if after[1] < U64 else (after[0] + 1, 0)
            entries = history(stream, consumer, start, count, d.clock_ms())
        return (
            resp.bulk(key)
            + b"*%d\r\n" % len(entries)
            + b"".join(entry(entry_id, body, null) for entry_id, body in entries)
        )

    served = []
    for key, after in zip(parsed.keys, wanted, strict=True):
        one = serve(key, after, parked=False)
        if one is not None and one[:1] == b"-":
            return one
        if one is not None:
            served.append(one)
    if served:
        error = reply_too_large(sum(map(len, served)), d.max_reply_size)
        if error is not None:
            return error
        if c.resp3:
            return b"%%%d\r\n%b" % (len(served), b"".join(served))
        return resp.array(b"*2\r\n" + part for part in served)
    null = RESP3_NULL if c.resp3 else resp.NIL_ARRAY
    if parsed.block_ms is None or c.in_exec:
        return null

    # Redis answers a parked reader when its stream is deleted or replaced (DEL, FLUSHALL,
    # SET...): checked when an XADD wakes it and on the store's timer. A stream moved onto
    # the key (RENAME, COPY, RESTORE) is judged as the key's stream instead: its group decides.
    streams = {key: d.engine.value(key) for key in parsed.keys}

    def gone() -> bytes | None:
        changed = any(d.engine.value(key) is not stream for key, stream in streams.items())
        return ERR_UNBLOCKED if changed else None

    def moved(key: bytes) -> None:
        value = d.engine.value(key)
        if isinstance(value, Stream):
            streams[key] = value

    def serve_parked(key: bytes) -> bytes | None:
        if gone() is not None:
            return ERR_UNBLOCKED
        one = serve(key, None, parked=True)
        if one is None or one[:1] == b"-":  # nothing yet, or an error that ends the wait
            return one
        return (b"%1\r\n" if c.resp3 else b"*1\r\n*2\r\n") + one

    deadline = None if parsed.block_ms == 0 else d.clock_ms() + parsed.block_ms
    d.blocked.park(
        c.id,
        parsed.keys,
        deadline,
        serve=serve_parked,
        deliver=c.deliver,
        timeout_reply=null,
        consumes=False,
        check=gone,
        moved=moved,
    )
    d.blocked.watch(c.id, c.on_close)
    return DEFERRED


@command("xack", -4, "write fast", (1, 1, 1))
def cmd_xack(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``XACK key group id [id...]``: how many of the entries were pending (no longer)."""
    stream = d.engine.lookup(args[1], Stream)
    group = None if stream is None else stream.groups.get(args[2])
    if stream is None or group is None:
        return ZERO
    ids = [strict_id(raw) for raw in args[3:]]
    if None in ids:
        return ERR_INVALID_ID
    return resp.integer(StreamGroups(d.engine, args[1], stream).ack(group, ids))  # type: ignore[arg-type]


@command("xsetid", -3, "write denyoom fast", (1, 1, 1))
def cmd_xsetid(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``XSETID key last-id [ENTRIESADDED n] [MAXDELETEDID id]``: the stream's last ID (and
    its counters) set, never below its last entry."""
    last_id = strict_id(args[2])
    if last_id is None:
        return ERR_INVALID_ID
    added, deleted = -1, MIN_ID
    i = 3
    while i < len(args):
        option = args[i].upper()
        if option == b"ENTRIESADDED" and i + 1 < len(args):
            number = parse_int(args[i + 1])
            if number is None:
                return ERR_NOT_INT
            if number < 0:
                return resp.error("ERR entries_added must be positive")
            added = number
        elif option == b"MAXDELETEDID" and i + 1 < len(args):
            found = strict_id(args[i + 1])
            if found is None:
                return ERR_INVALID_ID
            if last_id < found:
                return resp.error(
                    "ERR The ID specified in XSETID is smaller than the provided "
                    "max_deleted_entry_id"
                )
            deleted = found
        else:
            return ERR_SYNTAX
        i += 2
    stream = d.engine.lookup(args[1], Stream)
    if stream is None:
        return ERR_NO_KEY
    if stream.ids:
        if last_id < stream.ids[-1]:
            return resp.error(
                "ERR The ID specified in XSETID is smaller than the target stream top item"
            )
        if added != -1 and len(stream) > added:
            return resp.error(
                "ERR The entries_added specified in XSETID is smaller than the target stream length"
            )
    stream.last_id = last_id
    if added != -1:
        stream.entries_added = added
    if deleted != MIN_ID:
        stream.max_deleted = deleted
    return resp.OK
