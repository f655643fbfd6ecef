"""What consumer groups do to a stream (Redis 7.0's t_stream.c): create and destroy groups and
consumers, deliver new entries and a consumer's history, acknowledge, claim, and the read
counter and lag Redis reports.

Every function takes the :class:`~.streams.Stream` the caller looked up (``engine.lookup``)
with its key, changes it, and settles the memory account (``engine.resized``) when it
changed what the stream holds. Times are the caller's clock in milliseconds (``now_ms``), so
nothing here reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from blinkstore_gunicorn.engine.streamgroups import (
    NACK_OVERHEAD,
    UNKNOWN_READ,
    Consumer,
    Group,
    Nack,
    StreamID,
)
from blinkstore_gunicorn.engine.streams import MIN_ID, Stream

if TYPE_CHECKING:
    from blinkstore_gunicorn.engine.base import Engine

__all__ = [
    "Claim",
    "StreamGroups",
    "estimate_read",
    "history",
    "lag",
    "new_span",
    "set_last_id",
]


# --- the read counter (Redis 7.0's lag) -----------------------------------------------------


def _tombstone_after(stream: Stream, start: StreamID) -> bool:
    """Whether an entry deleted at or after ``start`` may sit among the live ones."""
    deleted = stream.max_deleted
    if not stream.ids or deleted == MIN_ID or stream.first_id > deleted:
        return False
    return start <= deleted


def estimate_read(stream: Stream, entry_id: StreamID) -> int:
    """The read counter of ``entry_id``: how many entries were added up to it, or
    :data:`UNKNOWN_READ` when deletions make that unknowable."""
    added = stream.entries_added
    if not added:
        return 0
    if entry_id == stream.last_id:
        return added
    if entry_id > stream.last_id:
        return UNKNOWN_READ
    deleted, first = stream.max_deleted, stream.first_id
    if deleted == MIN_ID or deleted < first:
        if entry_id < first:
            return added - len(stream)
        if entry_id == first:
            return added - len(stream) + 1
    return UNKNOWN_READ


def lag(stream: Stream, group: Group) -> int | None:
    """The entries added that the group has not read yet, None when unknown."""
    if not stream.entries_added:
        return 0
    if group.entries_read != UNKNOWN_READ and not _tombstone_after(stream, group.last_id):
        return stream.entries_added - group.entries_read
    read = estimate_read(stream, group.last_id)
    return None if read == UNKNOWN_READ else stream.entries_added - read


def _advance(stream: Stream, group: Group, entry_id: StreamID) -> None:
    """The group delivered ``entry_id``: move its last ID and read counter on."""
    if entry_id <= group.last_id:
        return
    if group.entries_read != UNKNOWN_READ and not _tombstone_after(stream, entry_id):
        group.entries_read += 1
    elif stream.entries_added:
        group.entries_read = estimate_read(stream, entry_id)
    group.last_id = entry_id


def new_span(stream: Stream, group: Group, count: int) -> tuple[int, int]:
    """The positions ``[first, stop)`` of the entries XREADGROUP ``>`` delivers next (at
    most ``count``, 0: all)."""
    first = stream.after(group.last_id)
    return first, len(stream) if not count else min(len(stream), first + count)


def history(
    stream: Stream, consumer: Consumer, start: StreamID, count: int, now_ms: int
) -> list[tuple[StreamID, bytes | None]]:
    """XREADGROUP with an ID: the consumer's pending entries from ``start``, up to ``count``
    (0: all), delivered again; a deleted entry comes with None."""
    served: list[tuple[StreamID, bytes | None]] = []
    for entry_id in consumer.pel.since(start):
        if count and len(served) >= count:
            break
        body = stream.body(entry_id)
        if body is not None:
            nack = consumer.pel.nacks[entry_id]
            nack.delivered_ms = now_ms
            nack.deliveries += 1
        served.append((entry_id, body))
    return served


def set_last_id(group: Group, last_id: StreamID) -> None:
    """XCLAIM LASTID: move the group's last ID forward only."""
    group.last_id = max(group.last_id, last_id)


def _assign(group: Group, entry_id: StreamID, nack: Nack, consumer: Consumer) -> None:
    """Give the pending ``entry_id`` to ``consumer``."""
    if nack.consumer is not consumer:
        if nack.consumer is not None:
            nack.consumer.pel.remove(entry_id)
        consumer.pel.add(entry_id, nack)
        nack.consumer = consumer


def _drop(stream: Stream, group: Group, entry_id: StreamID) -> None:
    """Forget the pending ``entry_id`` (acknowledged, or its entry is gone)."""
    nack = group.pel.nacks[entry_id]
    group.pel.remove(entry_id)
    if nack.consumer is not None:
        nack.consumer.pel.remove(entry_id)
    stream.cost -= NACK_OVERHEAD


class Claim:
    """How XCLAIM and XAUTOCLAIM take entries: the new owner's name, the minimum idle time,
    the delivery time to record, the count to set (-1: add one unless ``justid``)."""

    __slots__ = ("delivered_ms", "justid", "min_idle", "name", "now_ms", "retries")

    def __init__(
        self,
        name: bytes,
        min_idle: int,
        now_ms: int,
        *,
        delivered_ms: int | None = None,
        retries: int = -1,
        justid: bool = False,
    ) -> None:
        self.name = name
        self.min_idle = min_idle
        self.now_ms = now_ms
        self.delivered_ms = now_ms if delivered_ms is None else delivered_ms
        self.retries = retries
        self.justid = justid

    def idle_enough(self, nack: Nack) -> bool:
        return not self.min_idle or self.now_ms - nack.delivered_ms >= self.min_idle

    def take(self, nack: Nack) -> None:
        nack.delivered_ms = self.delivered_ms
        if self.retries >= 0:
            nack.deliveries = self.retries
        elif not self.justid:
            nack.deliveries += 1


class StreamGroups:
    """The consumer-group operations on one stream (under ``key``), keeping the engine's
    memory account of it."""

    __slots__ = ("engine", "key", "stream")

    def __init__(self, engine: Engine, key: bytes, stream: Stream) -> None:
        self.engine = engine
        self.key = key
        self.stream = stream

    def _settle(self, old_cost: int) -> None:
        """Settle the account of a change to the groups. Redis does not count one as a change
        of the key for WATCH (EXEC still runs after an XREADGROUP or XACK), so the key's
        watch count is left as it was; a snapshot still becomes due."""
        watched = self.engine.watched
        count = watched.get(self.key)
        self.engine.resized(self.key, self.stream, old_cost)
        if count is not None:
            watched[self.key] = count

    def create_group(self, name: bytes, last_id: StreamID, read: int) -> bool:
        """XGROUP CREATE: False when the group exists."""
        stream = self.stream
        if name in stream.groups:
            return False
        old_cost = stream.cost
        group = stream.groups[name] = Group(name, last_id, read)
        stream.cost += group.cost
        self._settle(old_cost)
        return True

    def destroy_group(self, name: bytes) -> bool:
        """XGROUP DESTROY: False when there was no such group."""
        stream = self.stream
        group = stream.groups.pop(name, None)
        if group is None:
            return False
        old_cost = stream.cost
        stream.cost -= group.cost
        self._settle(old_cost)
        return True

    def consumer_of(self, group: Group, name: bytes, now_ms: int) -> tuple[Consumer, bool]:
        """The group's consumer ``name``, made active now (created when absent: True)."""
        stream = self.stream
        consumer = group.consumers.get(name)
        if consumer is not None:
            consumer.seen_ms = now_ms
            return consumer, False
        old_cost = stream.cost
        consumer = group.consumers[name] = Consumer(name, now_ms)
        stream.cost += consumer.cost
        self._settle(old_cost)
        return consumer, True

    def delete_consumer(self, group: Group, name: bytes) -> int:
        """XGROUP DELCONSUMER: the consumer's pending entries (dropped from the group too)."""
        stream = self.stream
        consumer = group.consumers.pop(name, None)
        if consumer is None:
            return 0
        old_cost = stream.cost
        pending = len(consumer.pel)
        for entry_id in consumer.pel.ids:
            group.pel.remove(entry_id)
        stream.cost -= consumer.cost + pending * NACK_OVERHEAD
        self._settle(old_cost)
        return pending

    def read_new(
        self, group: Group, consumer: Consumer, count: int, *, noack: bool, now_ms: int
    ) -> tuple[list[StreamID], list[bytes]]:
        """XREADGROUP ``>``: up to ``count`` (0: all) entries after the group's last ID, each
        made pending for ``consumer`` unless ``noack``; their IDs and bodies."""
        stream = self.stream
        first, stop = new_span(stream, group, count)
        ids, bodies = stream.ids[first:stop], stream.bodies[first:stop]
        old_cost = stream.cost
        for entry_id in ids:
            _advance(stream, group, entry_id)
            if noack:
                continue
            nack = group.pel.nacks.get(entry_id)
            if nack is None:  # the usual case; one already pending (after SETID) changes owner
                nack = Nack(None, now_ms, 1)
                group.pel.add(entry_id, nack)
                stream.cost += NACK_OVERHEAD
            nack.delivered_ms, nack.deliveries = now_ms, 1
            _assign(group, entry_id, nack, consumer)
        if stream.cost != old_cost:
            self._settle(old_cost)
        return ids, bodies

    def ack(self, group: Group, ids: Iterable[StreamID]) -> int:
        """XACK: how many of ``ids`` were pending (they are not any more)."""
        stream = self.stream
        old_cost = stream.cost
        done = 0
        for entry_id in ids:
            if entry_id in group.pel.nacks:
                _drop(stream, group, entry_id)
                done += 1
        if done:
            self._settle(old_cost)
        return done

    def claim(
        self, group: Group, ids: list[StreamID], how: Claim, *, force: bool
    ) -> list[StreamID]:
        """XCLAIM: the IDs among ``ids`` now pending for ``how.name`` (with ``force``, also
        those not pending before). A pending entry deleted from the stream is dropped."""
        stream = self.stream
        old_cost = stream.cost
        consumer: Consumer | None = None
        claimed = []
        for entry_id in ids:
            nack = group.pel.nacks.get(entry_id)
            if stream.body(entry_id) is None:
                if nack is not None:
                    _drop(stream, group, entry_id)
                continue
            if nack is None:
                if not force:
                    continue
                nack = Nack(None, how.now_ms, 1)
                group.pel.add(entry_id, nack)
                stream.cost += NACK_OVERHEAD
            elif nack.consumer is not None and not how.idle_enough(nack):
                continue
            consumer = self._hand_over(group, entry_id, nack, how, consumer)
            claimed.append(entry_id)
        self._settle(old_cost)
        return claimed

    def _hand_over(
        self, group: Group, entry_id: StreamID, nack: Nack, how: Claim, consumer: Consumer | None
    ) -> Consumer:
        """Give the pending ``entry_id`` to ``how.name`` (its consumer made on the first claim
        of a call, passed back in as ``consumer``) and return that consumer."""
        if consumer is None:
            consumer, _ = self.consumer_of(group, how.name, how.now_ms)
        how.take(nack)
        _assign(group, entry_id, nack, consumer)
        return consumer

    def autoclaim(
        self, group: Group, start: StreamID, count: int, how: Claim
    ) -> tuple[StreamID, list[StreamID], list[StreamID]]:
        """XAUTOCLAIM: look at up to ``10 * count`` pending entries from ``start``; return the
        cursor (the next pending ID, 0-0 at the end), the IDs claimed (at most ``count``, with the
        deleted ones) and the IDs dropped because their entry was deleted."""
        stream = self.stream
        old_cost = stream.cost
        consumer: Consumer | None = None
        claimed: list[StreamID] = []
        deleted: list[StreamID] = []
        attempts = count * 10
        walk = group.pel.since(start)
        cursor = MIN_ID
        for entry_id in walk:
            if not attempts or not count:
                cursor = entry_id
                break
            attempts -= 1
            nack = group.pel.nacks[entry_id]
            if stream.body(entry_id) is None:
                _drop(stream, group, entry_id)
                deleted.append(entry_id)
                count -= 1
                continue
            if not how.idle_enough(nack):
                continue
            consumer = self._hand_over(group, entry_id, nack, how, consumer)
            claimed.append(entry_id)
            count -= 1
        self._settle(old_cost)
        return cursor, claimed, deleted
