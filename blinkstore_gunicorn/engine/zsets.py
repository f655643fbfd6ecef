"""Sorted sets (Redis's t_zset.c): members by score in a sorted list, scores in a dict.

Why not a skip list or ``sortedcontainers``: a Python ``list`` of ``(score, member)`` kept
sorted with :mod:`bisect` finds in O(log n) and inserts with one ``memmove`` (O(n) bytes but
~50 us at 100,000 members), needs no dependency, and rank queries (ZRANK, ZRANGE by index)
are plain indexing. Reads take the :class:`ZSet` from ``engine.lookup(key, ZSet)``; every
change goes through the functions here, which keep the memory account.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import TYPE_CHECKING

from blinkstore_gunicorn.engine.typed import ZSET_MEMBER_OVERHEAD, Container

if TYPE_CHECKING:
    from blinkstore_gunicorn.engine.base import Engine

__all__ = ["ZSet", "zadd", "zrem", "zrem_range", "zstore"]


class ZSet(Container):
    """A Redis sorted set: ``order`` sorted by (score, member), ``scores`` by member."""

    __slots__ = ("order", "scores")

    kind = b"zset"

    def __init__(self) -> None:
        super().__init__()
        self.scores: dict[bytes, float] = {}
        self.order: list[tuple[float, bytes]] = []

    def __len__(self) -> int:
        return len(self.scores)

    def clone(self) -> ZSet:
        copy = ZSet()
        copy.scores = self.scores.copy()
        copy.order = self.order.copy()
        copy.cost = self.cost
        return copy

    def rank(self, member: bytes) -> int | None:
        """The member's 0-based position by ascending score, None when absent."""
        score = self.scores.get(member)
        return None if score is None else bisect.bisect_left(self.order, (score, member))

    def first_at(self, score: float, exclusive: bool) -> int:
        """The position of the first member whose score is >= ``score`` (> if exclusive)."""
        find = bisect.bisect_right if exclusive else bisect.bisect_left
        return find(self.order, score, key=lambda entry: entry[0])


def _cost(member: bytes) -> int:
    return len(member) + ZSET_MEMBER_OVERHEAD


def zadd(engine: Engine, key: bytes, pairs: list[tuple[float, bytes]]) -> int:
    """Set each member's score (a later pair for the same member wins); return how many
    members are new. Raises the engine's ``WrongType`` and size-limit errors (changing
    nothing). Scores that change nothing leave the key untouched, as Redis signals no write.
    """
    found = engine.lookup(key, ZSet)
    # A write that adds no member needs no room: the one lookup above is all (ZADD of
    # existing members, the common update); one that adds goes through the engine's checks.
    scores = {} if found is None else found.scores
    new = [member for _, member in pairs if member not in scores]
    if new:
        found = engine.writable(key, ZSet, sum(map(_cost, new)))
    elif found is None:  # no pairs
        return 0
    old_cost = found.cost
    scores, order = found.scores, found.order
    added = changed = 0
    for score, member in pairs:
        old = scores.get(member)
        if old is not None:
            if old == score:
                continue
            del order[bisect.bisect_left(order, (old, member))]
            changed += 1
        else:
            found.cost += _cost(member)
            added += 1
        scores[member] = score
        bisect.insort(order, (score, member))
    if added or changed:
        engine.resized(key, found, old_cost)
    return added


def zrem(engine: Engine, key: bytes, members: Iterable[bytes]) -> int:
    """Remove the members; how many there were (the key goes with its last one; none
    removed leaves the key untouched)."""
    found = engine.lookup(key, ZSet)
    if found is None:
        return 0
    old_cost = found.cost
    removed = 0
    for member in members:
        score = found.scores.pop(member, None)
        if score is not None:
            del found.order[bisect.bisect_left(found.order, (score, member))]
            found.cost -= _cost(member)
            removed += 1
    if removed:  # removing only absent members is no write: a WATCH on the key holds, as in Redis
        engine.resized(key, found, old_cost)
    return removed


def zrem_range(engine: Engine, key: bytes, start: int, stop: int) -> list[tuple[float, bytes]]:
    """Remove the members at positions ``[start, stop)``; return them, lowest first."""
    found = engine.lookup(key, ZSet)
    if found is None or start >= stop:
        return []
    old_cost = found.cost
    taken = found.order[start:stop]
    del found.order[start:stop]
    for _, member in taken:
        del found.scores[member]
        found.cost -= _cost(member)
    engine.resized(key, found, old_cost)
    return taken


def zstore(engine: Engine, key: bytes, scores: dict[bytes, float]) -> None:
    """Make ``key`` the sorted set of ``scores`` (member to score), whatever it held (none:
    the key is deleted), as the ``*STORE`` commands do. Raises the engine's size-limit errors
    before changing anything."""
    if not scores:
        engine.delete(key)
        return
    result = ZSet()
    result.scores = scores
    result.order = sorted((score, member) for member, score in scores.items())
    result.cost += sum(_cost(member) for member in scores)
    engine.replace(key, result)
