"""Streams (Redis's t_stream.c): entries in ID order, each with its fields and values.

A :class:`Stream` keeps two parallel lists, the entry IDs (``(ms, seq)`` tuples, ascending) and
their bodies, so that a range is two :mod:`bisect` searches and a slice, an append is O(1)
(IDs only grow) and trimming the oldest entries is one ``del`` of a prefix. An entry's body is
its fields and values as the caller encoded them, one ``bytes`` object the engine does not
read (the server keeps them as the reply they are sent in, so a range reply is a join, and an
entry is one object instead of one per field). Redis keeps a radix tree of listpacks instead,
which packs entries tighter; the cost here is counted honestly (``STREAM_ENTRY_OVERHEAD``).

A stream also holds its consumer groups (``engine/streamgroups.py``, their operations in
``engine/streamconsume.py``), counted in its cost, and Redis 7.0's bookkeeping for their lag:
the entries ever added and the greatest ID deleted.

Unlike the other containers a stream outlives its last entry (``XDEL`` or ``XTRIM`` to zero
leave an empty stream, as in Redis), since its last ID must not go back. Reads take the
:class:`Stream` from ``engine.lookup(key, Stream)``; every change goes through the functions
here, which keep the memory account.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Final

from blinkstore_gunicorn.engine.base import EngineError
from blinkstore_gunicorn.engine.streamgroups import Group, StreamID
from blinkstore_gunicorn.engine.typed import STREAM_ENTRY_OVERHEAD, STREAM_OVERHEAD, Container

if TYPE_CHECKING:
    from blinkstore_gunicorn.engine.base import Engine

__all__ = [
    "MAX_ID",
    "MIN_ID",
    "NODE_BYTES",
    "NODE_ENTRIES",
    "Stream",
    "StreamError",
    "StreamID",
    "Trim",
    "append",
    "next_id",
    "remove",
    "trim",
]

_U64: Final = 2**64 - 1
MIN_ID: Final[StreamID] = (0, 0)
MAX_ID: Final[StreamID] = (_U64, _U64)
#: Redis's ``stream-node-max-entries`` and ``stream-node-max-bytes``: Redis stores a stream
#: in nodes of at most this many entries (live or deleted) and bytes, and an approximate
#: (``~``) trim removes whole nodes only. The stream records where its nodes would start,
#: sizing the last one's listpack as Redis encodes it (:func:`_item_size`), so ``~`` removes
#: what Redis would and ``XINFO STREAM`` counts Redis's nodes.
NODE_ENTRIES: Final = 100
NODE_BYTES: Final = 4096
#: A string a listpack stores as an integer (Redis's ``lpStringToInt64``).
_INT_TEXT: Final = re.compile(rb"-?[1-9][0-9]{0,18}\Z|0\Z")
_INT_FIRST: Final = frozenset(b"-0123456789")

ERR_ID_ZERO: Final = "ERR The ID specified in XADD must be greater than 0-0"
ERR_ID_SMALLER: Final = (
    "ERR The ID specified in XADD is equal or smaller than the target stream top item"
)
ERR_EXHAUSTED: Final = "ERR The stream has exhausted the last possible ID, unable to add more items"


class StreamError(EngineError):
    """An XADD whose ID cannot be used (the message is Redis's error text)."""


class Stream(Container):
    """A Redis stream: ``ids`` ascending, ``bodies[i]`` the fields and values of ``ids[i]``."""

    __slots__ = (
        "bodies",
        "entries_added",
        "groups",
        "ids",
        "last_id",
        "max_deleted",
        "node_bytes",
        "node_count",
        "node_fields",
        "nodes",
    )

    kind = b"stream"
    base_cost = STREAM_OVERHEAD
    kept_empty = True

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[StreamID] = []
        self.bodies: list[bytes] = []
        #: The greatest ID ever added (deleted entries included): new IDs must be greater.
        self.last_id: StreamID = MIN_ID
        #: The first ID of each node Redis would have made, and the last node's entries, its
        #: listpack's bytes and its master entry's fields (see :data:`NODE_ENTRIES`).
        self.nodes: list[StreamID] = []
        self.node_count = 0
        self.node_bytes = 0
        self.node_fields: Sequence[bytes] = ()
        #: Entries ever added, and the greatest ID XDEL removed (Redis 7.0's lag inputs).
        self.entries_added = 0
        self.max_deleted: StreamID = MIN_ID
        #: The consumer groups by name.
        self.groups: dict[bytes, Group] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def clone(self) -> Stream:
        copy = Stream()
        copy.ids = self.ids.copy()
        copy.bodies = self.bodies.copy()
        copy.last_id = self.last_id
        copy.nodes = self.nodes.copy()
        copy.node_count, copy.node_bytes = self.node_count, self.node_bytes
        copy.node_fields = self.node_fields
        copy.entries_added, copy.max_deleted = self.entries_added, self.max_deleted
        copy.groups = {name: group.clone() for name, group in self.groups.items()}
        copy.cost = self.cost
        return copy

    @property
    def first_id(self) -> StreamID:
        """The first entry's ID, 0-0 when empty (Redis's ``recorded-first-entry-id``)."""
        return self.ids[0] if self.ids else MIN_ID

    def body(self, entry_id: StreamID) -> bytes | None:
        """The fields and values of the entry ``entry_id``, None when there is none."""
        at = bisect.bisect_left(self.ids, entry_id)
        if at < len(self.ids) and self.ids[at] == entry_id:
            return self.bodies[at]
        return None

    def live_nodes(self) -> list[StreamID]:
        """The first ID of each node that holds live entries: Redis's radix tree keys."""
        live, start = [], 0
        for node_start, end in zip(self.nodes, self.node_ends(), strict=False):
            if end > start:
                live.append(node_start)
            start = end
        return live

    def span(self, start: StreamID, end: StreamID) -> tuple[int, int]:
        """The positions ``[first, stop)`` of the entries with ``start <= id <= end``."""
        return bisect.bisect_left(self.ids, start), bisect.bisect_right(self.ids, end)

    def node_ends(self) -> Iterator[int]:
        """For each node from the oldest, the position just past its last live entry."""
        nodes, ids = self.nodes, self.ids
        for start in nodes[1:]:
            yield bisect.bisect_left(ids, start)
        yield len(ids)

    def add(
        self, new_id: StreamID, body: bytes, pairs: Sequence[bytes], *, new_node: bool = False
    ) -> None:
        """Append an entry (``new_id`` greater than :attr:`last_id`; ``pairs`` its fields and
        values, ``body`` them as kept), in a new node when Redis would start one (the last
        is full, or its listpack and the new fields and values would reach
        :data:`NODE_BYTES`) or when ``new_node`` says so (a snapshot's own nodes)."""
        fields = pairs[::2]
        total = 0
        for item in pairs:
            total += len(item)
        if (
            new_node
            or not self.nodes
            or self.node_count >= NODE_ENTRIES
            or self.node_bytes + total >= NODE_BYTES
        ):
            self.nodes.append(new_id)
            self.node_count = 0
            self.node_fields = fields
            # The listpack's header and end, then the master entry: count, deleted, the
            # number of fields, the fields, a 0.
            self.node_bytes = 13 + _int_size(len(fields)) + sum(map(_item_size, fields))
        master = self.nodes[-1]
        ms, seq = new_id[0] - master[0], new_id[1] - master[1]
        # flags, the ID's deltas (two bytes each while small, the usual case), the values
        # (with their fields unless they are the master entry's: SAMEFIELDS), the count.
        if 0 <= ms <= 127 and 0 <= seq <= 127:
            size = 6
        else:
            size = 2 + _int_size(ms) + _int_size(_signed(seq))
        same = fields == self.node_fields
        for item in pairs[1::2] if same else pairs:
            n = len(item)
            if n < 63 and (not n or item[0] not in _INT_FIRST):
                size += n + 2  # a short string: one byte of header, one of back length
            else:
                size += _item_size(item)
        count = len(fields)
        size += _int_size(count + 3) if same else _int_size(count) + _int_size(2 * count + 4)
        self.node_count += 1
        self.node_bytes += size
        self.ids.append(new_id)
        self.bodies.append(body)
        self.last_id = new_id
        self.entries_added += 1

    def drop_head(self, count: int) -> None:
        """Remove the ``count`` oldest entries (and the nodes left without entries)."""
        if not count:
            return
        self.cost -= sum(map(len, self.bodies[:count])) + count * STREAM_ENTRY_OVERHEAD
        del self.ids[:count]
        del self.bodies[:count]
        nodes = self.nodes
        if not self.ids:
            nodes.clear()
            return
        first = self.ids[0]
        gone = bisect.bisect_right(nodes, first) - 1
        if gone > 0:
            del nodes[:gone]

    def after(self, last: StreamID) -> int:
        """The position of the first entry whose ID is greater than ``last``."""
        return bisect.bisect_right(self.ids, last)


def _signed(n: int) -> int:
    """``n`` modulo 2**64 read as a signed 64-bit integer (Redis's ID deltas)."""
    n &= _U64
    return n - 2**64 if n >= 2**63 else n


def _int_size(n: int) -> int:
    """Bytes of a listpack element holding the integer ``n``, its back length included."""
    if 0 <= n <= 127:
        return 2
    if -4096 <= n <= 4095:
        return 3
    for width in (2, 3, 4):
        if -(1 << (8 * width - 1)) <= n < 1 << (8 * width - 1):
            return width + 2
    return 10


def _item_size(item: bytes) -> int:
    """Bytes of a listpack element holding ``item`` (as an integer when it reads as one),
    its back length included."""
    n = len(item)
    # Only a string starting with a digit or '-' may read as an integer: most values skip
    # the pattern (XADD pays this for each value).
    if n and n <= 20 and item[0] in _INT_FIRST and _INT_TEXT.match(item):
        number = int(item)
        if -(2**63) <= number < 2**63:
            return _int_size(number)
    size = n + (1 if n < 64 else 2 if n < 4096 else 5)
    return size + (1 if size < 128 else 2 if size < 16383 else 3 if size < 2097151 else 4)


def entry_cost(body: bytes) -> int:
    """What one entry counts."""
    return STREAM_ENTRY_OVERHEAD + len(body)


def next_id(last: StreamID, ms: int | None, seq: int | None, now_ms: int) -> StreamID:
    """The ID XADD gives a new entry after ``last``: ``*`` (``ms`` None), ``ms-*`` (``seq``
    None) or explicit. Raises :class:`StreamError` with Redis's text when it is not greater."""
    if ms is not None and seq is not None and (ms, seq) == MIN_ID:
        raise StreamError(ERR_ID_ZERO)
    if last == MAX_ID:
        raise StreamError(ERR_EXHAUSTED)
    if ms is None:  # '*': the clock, or the last ID's millisecond when the clock is behind
        ms = max(now_ms, last[0])
        if ms == last[0] and last[1] == _U64:
            return ms + 1, 0
    if seq is None:
        seq = 0 if ms > last[0] else last[1] + 1
    if (ms, seq) <= last or seq > _U64:
        raise StreamError(ERR_ID_SMALLER)
    return ms, seq


class Trim:
    """An XADD or XTRIM trimming rule: ``MAXLEN`` (``threshold`` an int) or ``MINID`` (an
    ID); ``approx`` (``~``) removes whole nodes only, at most ``limit`` entries (0: no limit)."""

    __slots__ = ("approx", "limit", "maxlen", "minid")

    def __init__(
        self, *, maxlen: int | None, minid: StreamID | None, approx: bool, limit: int
    ) -> None:
        self.maxlen = maxlen
        self.minid = minid
        self.approx = approx
        self.limit = limit

    def count(self, stream: Stream) -> int:
        """How many of the oldest entries the rule removes from ``stream``."""
        if self.maxlen is not None:
            surplus = max(0, len(stream) - self.maxlen)
        else:
            assert self.minid is not None
            surplus = bisect.bisect_left(stream.ids, self.minid)
        if not self.approx:
            return surplus
        # Whole nodes only, while the node ends within the surplus and the limit.
        removed = 0
        for end in stream.node_ends():
            if end > surplus or (self.limit and end > self.limit):
                break
            removed = end
        return removed


def append(
    engine: Engine,
    key: bytes,
    new_id: StreamID,
    body: bytes,
    pairs: Sequence[bytes],
    *,
    rule: Trim | None,
) -> None:
    """Add an entry (``new_id`` from :func:`next_id`) with its fields and values (``pairs``,
    and ``body``, them as the caller keeps them), then apply ``rule``. Raises the engine's
    ``WrongType`` and size-limit errors (changing nothing)."""
    cost = entry_cost(body)
    stream = engine.writable(key, Stream, cost)
    old_cost = stream.cost
    stream.add(new_id, body, pairs)
    stream.cost += cost
    if rule is not None:
        stream.drop_head(rule.count(stream))
    engine.resized(key, stream, old_cost)


def trim(engine: Engine, key: bytes, rule: Trim) -> int:
    """XTRIM: apply ``rule``; how many entries it removed."""
    stream = engine.lookup(key, Stream)
    if stream is None:
        return 0
    count = rule.count(stream)
    if count:
        old_cost = stream.cost
        stream.drop_head(count)
        engine.resized(key, stream, old_cost)
    return count


def remove(engine: Engine, key: bytes, ids: Iterable[StreamID]) -> int:
    """XDEL: remove the entries with these IDs; how many there were."""
    stream = engine.lookup(key, Stream)
    if stream is None:
        return 0
    old_cost = stream.cost
    removed = 0
    for wanted in ids:
        at = bisect.bisect_left(stream.ids, wanted)
        if at < len(stream.ids) and stream.ids[at] == wanted:
            stream.cost -= entry_cost(stream.bodies[at])
            del stream.ids[at]
            del stream.bodies[at]
            stream.max_deleted = max(stream.max_deleted, wanted)
            removed += 1
    if removed:
        if not stream.ids:
            stream.nodes.clear()  # Redis frees an emptied node: the next entry starts one
        engine.resized(key, stream, old_cost)
    return removed
