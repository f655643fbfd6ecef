"""A stream's consumer groups (Redis's ``streamCG``): what each group delivered, and to whom.

A :class:`Group` has the last ID it delivered, its read counter (``entries_read``, -1 when
unknown, which is how Redis computes the lag), its pending entries list (:class:`Pel`: the IDs
delivered and not acknowledged, each with a :class:`Nack`) and its consumers by name. Each
:class:`Consumer` has its own :class:`Pel` holding the same :class:`Nack` objects as the
group's, so an entry changes owner by moving between two consumers' lists. Redis keeps these
lists as radix trees; here they are an ID-sorted list beside a dict, so that a range is one
:mod:`bisect` search and a lookup one dict access.

The data only: the operations (``engine/streamconsume.py``) keep the stream's memory account
with the costs below, and the stream (``engine/streams.py``) holds its groups by name.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Final, TypeAlias

__all__ = [
    "CONSUMER_OVERHEAD",
    "GROUP_OVERHEAD",
    "NACK_OVERHEAD",
    "UNKNOWN_READ",
    "Consumer",
    "Group",
    "Nack",
    "Pel",
    "StreamID",
]

StreamID: TypeAlias = tuple[int, int]

#: A group's read counter when it cannot be known (Redis's ``SCG_INVALID_ENTRIES_READ``).
UNKNOWN_READ: Final = -1
#: A group beyond its name: the object, its two dicts and its sorted list.
GROUP_OVERHEAD: Final = 512
#: A consumer beyond its name: the object, its dict and its sorted list.
CONSUMER_OVERHEAD: Final = 320
#: A pending entry: the Nack object, its ID tuple, and a slot in the group's and the
#: consumer's dict and list.
NACK_OVERHEAD: Final = 256


class Nack:
    """One delivered, unacknowledged entry: its owner, last delivery time and count."""

    __slots__ = ("consumer", "delivered_ms", "deliveries")

    def __init__(self, consumer: Consumer | None, delivered_ms: int, deliveries: int) -> None:
        self.consumer = consumer
        self.delivered_ms = delivered_ms
        self.deliveries = deliveries


class Pel:
    """A pending entries list: IDs ascending (``ids``) and each one's :class:`Nack`."""

    __slots__ = ("ids", "nacks")

    def __init__(self) -> None:
        self.ids: list[StreamID] = []
        self.nacks: dict[StreamID, Nack] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, entry_id: StreamID, nack: Nack) -> None:
        """Insert ``entry_id`` (absent); a new delivery is usually the greatest ID."""
        ids = self.ids
        if ids and entry_id < ids[-1]:
            bisect.insort(ids, entry_id)
        else:
            ids.append(entry_id)
        self.nacks[entry_id] = nack

    def remove(self, entry_id: StreamID) -> None:
        """Remove ``entry_id`` (present)."""
        del self.nacks[entry_id]
        ids = self.ids
        del ids[bisect.bisect_left(ids, entry_id)]

    def since(self, start: StreamID, end: StreamID | None = None) -> Iterator[StreamID]:
        """The IDs from ``start`` (to ``end`` included), ascending; taken as they are when
        each one is reached, so the list may change between two of them."""
        ids = self.ids
        at = bisect.bisect_left(ids, start)
        while at < len(ids):
            entry_id = ids[at]
            if end is not None and entry_id > end:
                return
            yield entry_id
            # Moved past what was just yielded, whatever the caller removed meanwhile.
            at = bisect.bisect_right(ids, entry_id)


class Consumer:
    """A consumer of a group: its name, when it was last active, and the entries it holds."""

    __slots__ = ("name", "pel", "seen_ms")

    def __init__(self, name: bytes, seen_ms: int) -> None:
        self.name = name
        self.seen_ms = seen_ms
        self.pel = Pel()

    @property
    def cost(self) -> int:
        """What it counts against the memory limit (its entries are the group's)."""
        return CONSUMER_OVERHEAD + len(self.name)


class Group:
    """A consumer group (see the module docstring)."""

    __slots__ = ("consumers", "entries_read", "last_id", "name", "pel")

    def __init__(self, name: bytes, last_id: StreamID, entries_read: int) -> None:
        self.name = name
        self.last_id = last_id
        self.entries_read = entries_read
        self.pel = Pel()
        self.consumers: dict[bytes, Consumer] = {}

    @property
    def cost(self) -> int:
        """What it counts against the memory limit: itself, its consumers, its entries."""
        own = GROUP_OVERHEAD + len(self.name) + NACK_OVERHEAD * len(self.pel)
        return own + sum(consumer.cost for consumer in self.consumers.values())

    def sorted_consumers(self) -> list[Consumer]:
        """The consumers by name, in Redis's (byte) order."""
        return [self.consumers[name] for name in sorted(self.consumers)]

    def clone(self) -> Group:
        """An independent copy (``COPY``): the same consumers and entries, new objects."""
        copy = Group(self.name, self.last_id, self.entries_read)
        for name, consumer in self.consumers.items():
            copy.consumers[name] = Consumer(name, consumer.seen_ms)
        for entry_id in self.pel.ids:
            nack = self.pel.nacks[entry_id]
            owner = None if nack.consumer is None else copy.consumers[nack.consumer.name]
            twin = Nack(owner, nack.delivered_ms, nack.deliveries)
            copy.pel.add(entry_id, twin)
            if owner is not None:
                owner.pel.add(entry_id, twin)
        return copy
