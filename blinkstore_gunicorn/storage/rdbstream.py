"""Streams in an RDB file, as redis-server 7.0 writes and reads them (type 19,
``RDB_TYPE_STREAM_LISTPACKS_2``).

Redis saves a stream as its radix tree of nodes: for each node its master ID (16 bytes, ms and
seq big-endian) and a listpack holding a *master entry* (live and deleted counts, the field
names of the node's first entry, a 0) and then each entry: flags, its ID as deltas from the
master ID, its fields and values (only the values when its fields are the master's, flag
``SAMEFIELDS``), and the number of listpack elements the entry took. After the nodes come the
stream's length, last ID, first ID, greatest deleted ID, entries ever added, and its consumer
groups. Blinkstore has no consumer groups: it writes none, and refuses a file with some.

An entry's fields and values travel as one list ``[field, value, field, value...]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Protocol

from blinkstore_gunicorn.storage.encodings import (
    FormatError,
    listpack,
    listpack_item,
    listpack_items,
    rdb_length,
)

__all__ = ["StreamID", "StreamValue", "dump", "load"]

StreamID = tuple[int, int]

_U64 = 1 << 64
_DELETED, _SAMEFIELDS = 1, 2
#: RDB_TYPE_STREAM_LISTPACKS (Redis 5 and 6): no first ID, deleted ID or added count.
T_STREAM, T_STREAM_2 = 15, 19


class StreamValue(NamedTuple):
    """A stream's live entries in ID order, split in nodes (each node's entries), and the
    greatest ID it ever held (its entries' or a deleted one's)."""

    nodes: list[list[tuple[StreamID, list[bytes]]]]
    last_id: StreamID


class Reader(Protocol):
    """What :func:`load` reads from (``rdb``'s cursor)."""

    def string(self) -> bytes: ...

    def count(self) -> int: ...


# --- writing --------------------------------------------------------------------------------


def _signed64(n: int) -> int:
    """``n`` modulo 2**64 as a signed 64-bit integer (Redis's sequence deltas wrap)."""
    n %= _U64
    return n - _U64 if n >= 1 << 63 else n


def _node(entries: list[tuple[StreamID, list[bytes]]]) -> bytes:
    (master_ms, master_seq), first = entries[0]
    master_fields = first[::2]
    # Fields and values as Redis appends them: integers' texts as integers.
    items: list[bytes | int] = [len(entries), 0, len(master_fields)]
    items += (*map(listpack_item, master_fields), 0)
    for (ms, seq), pairs in entries:
        fields = pairs[::2]
        delta = (ms - master_ms, _signed64(seq - master_seq))
        if fields == master_fields:
            items += (_SAMEFIELDS, *delta, *map(listpack_item, pairs[1::2]), len(fields) + 3)
        else:
            items += (0, *delta, len(fields), *map(listpack_item, pairs), 2 * len(fields) + 4)
    return listpack(items)


def _raw(data: bytes) -> bytes:
    return rdb_length(len(data)) + data


def dump(value: StreamValue, string: Callable[[bytes], bytes] = _raw) -> bytes:
    """The bytes after a stream's type and key (no consumer groups), each node's key and
    listpack written by ``string``."""
    nodes = [node for node in value.nodes if node]
    parts = [rdb_length(len(nodes))]
    for node in nodes:
        ms, seq = node[0][0]
        key = ms.to_bytes(8, "big") + seq.to_bytes(8, "big")
        blob = _node(node)
        parts += (string(key), string(blob))
    length = sum(map(len, nodes))
    first = nodes[0][0][0] if nodes else (0, 0)
    # The greatest deleted ID and the entries ever added are not kept here: 0-0 and the
    # length, what Redis reports for a stream nobody deleted from.
    numbers = (length, *value.last_id, *first, 0, 0, length, 0)
    parts.extend(map(rdb_length, numbers))
    return b"".join(parts)


# --- reading --------------------------------------------------------------------------------


def _integer(item: bytes) -> int:
    try:
        return int(item)
    except ValueError:
        raise FormatError(f"a stream node holds {item[:20]!r} where a number belongs") from None


def _entries(master: StreamID, blob: bytes) -> list[tuple[StreamID, list[bytes]]]:
    """The live entries of one node's listpack."""
    items = listpack_items(blob)
    try:
        n_fields = _integer(items[2])
        at = 3 + n_fields
        master_fields = items[3:at]
        if len(master_fields) != n_fields or items[at] != b"0":
            raise FormatError("a stream node's master entry is malformed")
        at += 1
        entries: list[tuple[StreamID, list[bytes]]] = []
        while at < len(items):
            flags, ms, seq = (_integer(item) for item in items[at : at + 3])
            at += 3
            if flags & _SAMEFIELDS:
                values = items[at : at + n_fields]
                at += n_fields
                pairs = [x for pair in zip(master_fields, values, strict=True) for x in pair]
            else:
                count = 2 * _integer(items[at])
                pairs = items[at + 1 : at + 1 + count]
                at += 1 + count
                if len(pairs) != count:
                    raise FormatError("a stream entry ends early")
            at += 1  # the entry's element count (a back link for reverse walks)
            if at > len(items):
                raise FormatError("a stream entry ends early")
            if not 0 <= master[0] + ms < _U64:
                raise FormatError("a stream entry's ID is out of range")
            if not flags & _DELETED:
                entries.append(((master[0] + ms, (master[1] + seq) % _U64), pairs))
    except (IndexError, ValueError):
        raise FormatError("a stream node's listpack is malformed") from None
    return entries


def load(cursor: Reader, kind: int) -> StreamValue:
    """A stream of RDB type ``kind`` (15 or 19) from ``cursor``."""
    nodes: list[list[tuple[StreamID, list[bytes]]]] = []
    previous: StreamID = (-1, 0)
    for _ in range(cursor.count()):
        key = cursor.string()
        if len(key) != 16:
            raise FormatError("a stream node's key is not a stream ID")
        master = (int.from_bytes(key[:8], "big"), int.from_bytes(key[8:], "big"))
        node = _entries(master, cursor.string())
        for entry_id, _ in node:
            if entry_id <= previous:
                raise FormatError("a stream's entries are out of order")
            previous = entry_id
        nodes.append(node)
    length = cursor.count()
    last_id = (cursor.count(), cursor.count())
    if kind == T_STREAM_2:
        for _ in range(5):  # first ID, greatest deleted ID, entries added: derived here
            cursor.count()
    if cursor.count():
        raise FormatError("holds stream consumer groups, which blinkstore cannot load")
    if length != sum(map(len, nodes)) or previous > last_id:
        raise FormatError("a stream's length or last ID does not match its entries")
    return StreamValue(nodes, last_id)
