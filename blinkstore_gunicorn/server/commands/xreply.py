"""What the stream families share (``streams``, ``streamgroups``, ``streaminfo``): Redis's
stream ID syntax, entries encoded as Redis sends them, and XREAD/XREADGROUP's options.

Not a family: it registers no command, so families may import it as they import ``replies``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final, TypeAlias

from blinkstore_gunicorn.engine.streams import MAX_ID, MIN_ID, Stream, StreamID
from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands.replies import (
    ERR_NOT_INT,
    ERR_SYNTAX,
    as_text,
    parse_int,
    reply_too_large,
    subcommand_syntax,
    unknown_subcommand,
    wrong_args,
)

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher

__all__ = [
    "ERR_GREATER",
    "ERR_INVALID_ID",
    "ERR_NO_KEY",
    "U64",
    "Read",
    "Slice",
    "bound",
    "encode",
    "entry",
    "format_id",
    "no_group",
    "parse_id",
    "parse_read",
    "slice_of",
    "strict_id",
    "subcommand_arity",
    "subcommand_syntax",
    "too_large",
    "xrange_id",
]

U64: Final = 2**64 - 1
_ID_RE: Final = re.compile(rb"([0-9]{1,20})(?:-([0-9]{1,20}|\*))?\Z")

ERR_INVALID_ID: Final = resp.error("ERR Invalid stream ID specified as stream command argument")
ERR_UNBALANCED: Final = resp.error(
    "ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' must be specified."
)
ERR_GREATER: Final = resp.error(
    "ERR The > ID can be specified only when calling XREADGROUP using the GROUP <group> "
    "<consumer> option."
)
ERR_NO_KEY: Final = resp.error("ERR no such key")
ERR_START: Final = resp.error("ERR invalid start ID for the interval")
ERR_END: Final = resp.error("ERR invalid end ID for the interval")
ERR_TIMEOUT_NOT_INT: Final = resp.error("ERR timeout is not an integer or out of range")
ERR_TIMEOUT_NEGATIVE: Final = resp.error("ERR timeout is negative")

ERR_GROUP_IN_XREAD: Final = resp.error(
    "ERR The GROUP option is only supported by XREADGROUP. You called XREAD instead."
)
ERR_NOACK_IN_XREAD: Final = resp.error(
    "ERR The NOACK option is only supported by XREADGROUP. You called XREAD instead."
)


def parse_id(raw: bytes, missing_seq: int, *, auto_seq: bool = False) -> tuple[int, int | None]:
    """``ms[-seq]`` (``ms-*`` too when ``auto_seq``: seq None). Raises ValueError."""
    match = _ID_RE.match(raw)
    if match is None:
        raise ValueError(raw)
    ms_text, seq_text = match.groups()
    ms = int(ms_text)
    if seq_text is None:
        seq: int | None = missing_seq
    elif seq_text == b"*":
        if not auto_seq:
            raise ValueError(raw)
        seq = None
    else:
        seq = int(seq_text)
    if ms > U64 or (seq is not None and seq > U64):
        raise ValueError(raw)
    return ms, seq


def strict_id(raw: bytes) -> StreamID | None:
    """A full ID (a missing sequence is 0), None when it does not parse."""
    try:
        ms, seq = parse_id(raw, 0)
    except ValueError:
        return None
    assert seq is not None
    return ms, seq


def _format_id(entry_id: StreamID) -> bytes:
    return b"%d-%d" % entry_id


def xrange_id(raw: bytes) -> StreamID | None:
    """An ID where ``-`` and ``+`` mean the least and greatest (a missing sequence is 0),
    None when it does not parse."""
    if raw in (b"-", b"+"):
        return MIN_ID if raw == b"-" else MAX_ID
    return strict_id(raw)


def format_id(entry_id: StreamID) -> bytes:
    """``ms-seq``."""
    return b"%d-%d" % entry_id


def bound(raw: bytes, missing_seq: int, start: bool) -> StreamID | bytes:
    """One end of an XRANGE interval: ``-``, ``+``, ``[(]ms[-seq]``; or the error reply."""
    exclusive = len(raw) > 1 and raw[:1] == b"("
    if not exclusive and raw in (b"-", b"+"):
        return MIN_ID if raw == b"-" else MAX_ID
    try:
        ms, seq = parse_id(raw[1:] if exclusive else raw, missing_seq)
    except ValueError:
        return ERR_INVALID_ID
    assert seq is not None
    if not exclusive:
        return ms, seq
    if start:
        if (ms, seq) == MAX_ID:
            return ERR_START
        return (ms, seq + 1) if seq < U64 else (ms + 1, 0)
    if (ms, seq) == MIN_ID:
        return ERR_END
    return (ms, seq - 1) if seq else (ms - 1, U64)


Slice: TypeAlias = tuple[list[StreamID], list[bytes]]


def slice_of(stream: Stream, first: int, stop: int, rev: bool) -> Slice:
    """The IDs and bodies of the entries at ``[first, stop)`` (newest first if ``rev``)."""
    ids, bodies = stream.ids[first:stop], stream.bodies[first:stop]
    if rev:
        ids.reverse()
        bodies.reverse()
    return ids, bodies


def too_large(d: Dispatcher, slices: list[Slice]) -> bytes | None:
    """The buffer error when the entries pass the reply limit (checked before anything is
    encoded), else None."""
    size = sum(len(body) for _, bodies in slices for body in bodies)
    return reply_too_large(size, d.max_reply_size)


def entry(entry_id: StreamID, body: bytes | None, nil: bytes = resp.NIL_ARRAY) -> bytes:
    """One entry, ``[id, [field, value...]]`` (``body`` is the encoded field array); an
    entry deleted while pending has ``nil`` for its fields."""
    text = format_id(entry_id)
    return b"*2\r\n$%d\r\n%b\r\n%b" % (len(text), text, nil if body is None else body)


def encode(entries: Slice) -> bytes:
    """``[[id, [field, value...]]...]``."""
    ids, bodies = entries
    out = [b"*%d\r\n" % len(ids)]
    out += map(entry, ids, bodies)
    return b"".join(out)


class Read:
    """What XREAD or XREADGROUP parsed: COUNT (0: all), BLOCK (ms, None: not given), GROUP
    and its consumer (None: not given), NOACK, the keys and their IDs."""

    __slots__ = ("block_ms", "consumer", "count", "group", "keys", "noack", "raw_ids")

    def __init__(self) -> None:
        self.count = 0
        self.block_ms: int | None = None
        self.group: bytes | None = None
        self.consumer = b""
        self.noack = False
        self.keys: list[bytes] = []
        self.raw_ids: list[bytes] = []


def parse_read(c: Client, args: list[bytes]) -> Read | bytes:
    """Redis's ``xreadCommand`` options for XREAD and XREADGROUP (``args[0]`` tells which),
    with its errors, in its order."""
    name = args[0].lower()
    grouped = name == b"xreadgroup"
    parsed = Read()
    i = 1
    while i < len(args):
        more = len(args) - 1 - i
        option = args[i].upper()
        if option == b"BLOCK" and more:
            if c.in_script:
                return resp.error(
                    f"ERR {name.decode()} command is not allowed with BLOCK option from scripts"
                )
            block = parse_int(args[i + 1])
            if block is None:
                return ERR_TIMEOUT_NOT_INT
            if block < 0:
                return ERR_TIMEOUT_NEGATIVE
            parsed.block_ms = block
            i += 1
        elif option == b"COUNT" and more:
            count = parse_int(args[i + 1])
            if count is None:
                return ERR_NOT_INT
            parsed.count = max(count, 0)
            i += 1
        elif option == b"STREAMS" and more:
            rest = args[i + 1 :]
            if len(rest) % 2:  # worded for XREAD by XREADGROUP too, as in Redis 7.0
                return ERR_UNBALANCED
            half = len(rest) // 2
            parsed.keys, parsed.raw_ids = rest[:half], rest[half:]
            break
        elif option == b"GROUP" and more >= 2:
            if not grouped:
                return ERR_GROUP_IN_XREAD
            parsed.group, parsed.consumer = args[i + 1], args[i + 2]
            i += 2
        elif option == b"NOACK":
            if not grouped:
                return ERR_NOACK_IN_XREAD
            parsed.noack = True
        else:
            return ERR_SYNTAX
        i += 1
    if not parsed.keys:
        return ERR_SYNTAX
    if grouped and parsed.group is None:
        return resp.error("ERR Missing GROUP option for XREADGROUP")
    return parsed


def subcommand_arity(args: list[bytes], arities: dict[bytes, int]) -> bytes | None:
    """The error for an unknown subcommand of ``args[0]`` or a wrong number of arguments to
    it (Redis's arity: exact when positive, a minimum when negative), None when right."""
    arity = arities.get(args[1].upper())
    if arity is None:
        return unknown_subcommand(args)
    if len(args) == arity or (arity < 0 and len(args) >= -arity):
        return None
    return wrong_args(f"{as_text(args[0]).lower()}|{as_text(args[1]).lower()}")


def no_group(key: bytes, name: bytes) -> bytes:
    """XGROUP's and XINFO's error for a missing group."""
    return resp.error(
        f"NOGROUP No such consumer group '{as_text(name)}' for key name '{as_text(key)}'"
    )
