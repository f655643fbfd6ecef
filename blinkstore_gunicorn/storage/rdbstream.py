"""Streams in an RDB file, as redis-server 7.0 writes and reads them (type 19,
``RDB_TYPE_STREAM_LISTPACKS_2``).

Redis saves a stream as its radix tree of nodes: for each node its master ID (16 bytes, ms and
seq big-endian) and a listpack holding a *master entry* (live and deleted counts, the field
names of the node's first entry, a 0) and then each entry: flags, its ID as deltas from the
master ID, its fields and values (only the values when its fields are the master's, flag
``SAMEFIELDS``), and the number of listpack elements the entry took. After the nodes come the
stream's length, last ID, first ID, greatest deleted ID, entries ever added, and its consumer
groups: for each its name, last delivered ID and read counter, its pending entries (ID, last
delivery time in ms as 8 little-endian bytes, delivery count) and its consumers (name, last
seen time, the IDs of the group's pending entries it owns).

An entry's fields and values travel as one list ``[field, value, field, value...]``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple, Protocol

from blinkstore_gunicorn.engine.streamgroups import Consumer, Group, Nack
from blinkstore_gunicorn.storage.encodings import (
    FormatError,
    listpack,
    listpack_item,
    listpack_items,
    rdb_length,
)

__all__ = [
    "ConsumerValue",
    "GroupValue",
    "StreamID",
    "StreamValue",
    "dump",
    "group_values",
    "groups_from",
    "load",
]

StreamID = tuple[int, int]

_U64 = 1 << 64
_DELETED, _SAMEFIELDS = 1, 2
#: RDB_TYPE_STREAM_LISTPACKS (Redis 5 and 6): no first ID, deleted ID or added count.
T_STREAM, T_STREAM_2 = 15, 19


class ConsumerValue(NamedTuple):
    """A consumer: its name, when it was last seen (ms), the pending IDs it owns."""

    name: bytes
    seen_ms: int
    ids: list[StreamID]


class GroupValue(NamedTuple):
    """A consumer group: name, last delivered ID, read counter (None: not in the file, a
    Redis 5/6 stream; -1: unknown), pending entries (ID, delivery ms, deliveries) by ID,
    and consumers."""

    name: bytes
    last_id: StreamID
    entries_read: int | None
    pending: list[tuple[StreamID, int, int]]
    consumers: list[ConsumerValue]


class StreamValue(NamedTuple):
    """A stream's live entries in ID order, split in nodes (each node's entries), the
    greatest ID it ever held (its entries' or a deleted one's), the entries ever added
    (None: not in the file, counted as its length), the greatest deleted ID, its groups."""

    nodes: list[list[tuple[StreamID, list[bytes]]]]
    last_id: StreamID
    added: int | None = None
    max_deleted: StreamID = (0, 0)
    groups: list[GroupValue] = []


class Reader(Protocol):
    """What :func:`load` reads from (``rdb``'s cursor)."""

    def string(self) -> bytes: ...

    def count(self) -> int: ...

    def take(self, n: int) -> bytes: ...


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


def _raw_id(entry_id: StreamID) -> bytes:
    return entry_id[0].to_bytes(8, "big") + entry_id[1].to_bytes(8, "big")


def _ms(ms: int) -> bytes:
    return ms.to_bytes(8, "little", signed=True)


def _string(data: bytes) -> bytes:
    return rdb_length(len(data)) + data


def _group(group: GroupValue, string: Callable[[bytes], bytes]) -> bytes:
    read = -1 if group.entries_read is None else group.entries_read
    parts = [string(group.name), rdb_length(group.last_id[0]), rdb_length(group.last_id[1])]
    parts += (rdb_length(read % _U64), rdb_length(len(group.pending)))
    for entry_id, delivered_ms, deliveries in group.pending:
        parts += (_raw_id(entry_id), _ms(delivered_ms), rdb_length(deliveries))
    parts.append(rdb_length(len(group.consumers)))
    for consumer in group.consumers:
        parts += (string(consumer.name), _ms(consumer.seen_ms), rdb_length(len(consumer.ids)))
        parts.extend(map(_raw_id, consumer.ids))
    return b"".join(parts)


def dump(value: StreamValue, string: Callable[[bytes], bytes] = _string) -> bytes:
    """The bytes after a stream's type and key, each string (node keys and listpacks, group
    and consumer names) written by ``string``."""
    nodes = [node for node in value.nodes if node]
    parts = [rdb_length(len(nodes))]
    for node in nodes:
        ms, seq = node[0][0]
        key = ms.to_bytes(8, "big") + seq.to_bytes(8, "big")
        blob = _node(node)
        parts += (string(key), string(blob))
    length = sum(map(len, nodes))
    first = nodes[0][0][0] if nodes else (0, 0)
    added = length if value.added is None else value.added
    numbers = (length, *value.last_id, *first, *value.max_deleted, added, len(value.groups))
    parts.extend(map(rdb_length, numbers))
    parts.extend(_group(group, string) for group in value.groups)
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
    added: int | None = None
    max_deleted: StreamID = (0, 0)
    if kind == T_STREAM_2:
        cursor.count()  # the first ID: derived here
        cursor.count()
        max_deleted = (cursor.count(), cursor.count())
        added = cursor.count()
    if length != sum(map(len, nodes)) or previous > last_id:
        raise FormatError("a stream's length or last ID does not match its entries")
    groups = [_load_group(cursor, kind) for _ in range(cursor.count())]
    return StreamValue(nodes, last_id, added, max_deleted, groups)


def _read_id(cursor: Reader) -> StreamID:
    raw = cursor.take(16)
    return int.from_bytes(raw[:8], "big"), int.from_bytes(raw[8:], "big")


def _read_ms(cursor: Reader) -> int:
    return int.from_bytes(cursor.take(8), "little", signed=True)


def _load_group(cursor: Reader, kind: int) -> GroupValue:
    name = cursor.string()
    last_id = (cursor.count(), cursor.count())
    read: int | None = None
    if kind == T_STREAM_2:
        read = cursor.count()
        read = read - _U64 if read >= 1 << 63 else read  # -1 is saved as 2**64 - 1
    pending = [(_read_id(cursor), _read_ms(cursor), cursor.count()) for _ in range(cursor.count())]
    known = {entry_id for entry_id, _, _ in pending}
    if len(known) != len(pending):
        raise FormatError("a consumer group lists a pending entry twice")
    consumers = []
    for _ in range(cursor.count()):
        consumer = ConsumerValue(cursor.string(), _read_ms(cursor), [])
        for _ in range(cursor.count()):
            entry_id = _read_id(cursor)
            if entry_id not in known:
                raise FormatError("a consumer's pending entry is not in its group's list")
            known.discard(entry_id)  # each entry has one owner
            consumer.ids.append(entry_id)
        consumers.append(consumer)
    if known:
        raise FormatError("a consumer group's pending entry has no consumer")
    return GroupValue(name, last_id, read, pending, consumers)


# --- the engine's groups -------------------------------------------------------------------


def group_values(groups: Iterable[Group]) -> list[GroupValue]:
    """The engine's groups as they are saved, by name as Redis orders them."""
    values = []
    for group in sorted(groups, key=lambda group: group.name):
        pel = group.pel
        pending = [(i, pel.nacks[i].delivered_ms, pel.nacks[i].deliveries) for i in pel.ids]
        consumers = [
            ConsumerValue(consumer.name, consumer.seen_ms, list(consumer.pel.ids))
            for consumer in group.sorted_consumers()
        ]
        values.append(GroupValue(group.name, group.last_id, group.entries_read, pending, consumers))
    return values


def groups_from(
    values: list[GroupValue], estimate: Callable[[StreamID], int]
) -> dict[bytes, Group]:
    """The engine's groups from their saved form; ``estimate`` gives the read counter of a
    last delivered ID when the file has none (Redis 5 and 6)."""
    groups = {}
    for value in values:
        read = estimate(value.last_id) if value.entries_read is None else value.entries_read
        group = groups[value.name] = Group(value.name, value.last_id, read)
        for entry_id, delivered_ms, deliveries in value.pending:
            group.pel.add(entry_id, Nack(None, delivered_ms, deliveries))
        for saved in value.consumers:
            consumer = group.consumers[saved.name] = Consumer(saved.name, saved.seen_ms)
            for entry_id in saved.ids:
                nack = group.pel.nacks[entry_id]
                nack.consumer = consumer
                consumer.pel.add(entry_id, nack)
    return groups
