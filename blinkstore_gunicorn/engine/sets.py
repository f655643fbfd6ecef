"""Sets (Redis's t_set.c): a Python set of members, its cost kept as it changes.

Reads take the :class:`Set` from ``engine.lookup(key, Set)`` and read :attr:`Set.members`;
every change goes through the functions here, which keep the memory account.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING

from blinkstore_gunicorn.engine.typed import SET_MEMBER_OVERHEAD, Container

if TYPE_CHECKING:
    from blinkstore_gunicorn.engine.base import Engine

__all__ = ["Set", "sadd", "spop", "srem", "sstore"]


class Set(Container):
    """A Redis set."""

    __slots__ = ("members",)

    kind = b"set"

    def __init__(self) -> None:
        super().__init__()
        self.members: set[bytes] = set()

    def __len__(self) -> int:
        return len(self.members)

    def clone(self) -> Set:
        copy = Set()
        copy.members = self.members.copy()
        copy.cost = self.cost
        return copy


def _growth(members: Iterable[bytes]) -> int:
    return sum(len(member) + SET_MEMBER_OVERHEAD for member in members)


def sadd(engine: Engine, key: bytes, members: Collection[bytes]) -> int:
    """Add the members; return how many were new. Raises the engine's ``WrongType`` and
    size-limit errors (changing nothing)."""
    found = engine.writable(key, Set, _growth(members))
    old_cost = found.cost
    before = len(found.members)
    new = [member for member in members if member not in found.members]
    if not new:  # unchanged: a WATCH on the key stays intact, as in Redis
        return 0
    found.members.update(new)
    found.cost += _growth(set(new))
    engine.resized(key, found, old_cost)
    return len(found.members) - before


def srem(engine: Engine, key: bytes, members: Iterable[bytes]) -> int:
    """Remove the members; return how many were there (the key goes with its last one)."""
    found = engine.lookup(key, Set)
    if found is None:
        return 0
    old_cost = found.cost
    removed = 0
    for member in members:
        if member in found.members:
            found.members.remove(member)
            found.cost -= len(member) + SET_MEMBER_OVERHEAD
            removed += 1
    if removed:  # unchanged otherwise: a WATCH on the key stays intact
        engine.resized(key, found, old_cost)
    return removed


def spop(engine: Engine, key: bytes, count: int) -> list[bytes]:
    """Remove and return up to ``count`` random members."""
    found = engine.lookup(key, Set)
    if found is None:
        return []
    old_cost = found.cost
    members = found.members
    if count >= len(members):
        taken = list(members)
        members.clear()
    else:
        taken = random.sample(list(members), count)
        members.difference_update(taken)
    found.cost -= _growth(taken)
    engine.resized(key, found, old_cost)
    return taken


def sstore(engine: Engine, key: bytes, members: set[bytes]) -> None:
    """Make ``key`` the set of ``members``, whatever it held (none: the key is deleted).
    Raises the engine's size-limit errors before changing anything."""
    if not members:
        engine.delete(key)
        return
    result = Set()
    result.members = members
    result.cost += _growth(members)
    engine.replace(key, result)
