"""Hashes (Redis's t_hash.c): a dict of fields to values, its cost kept as it changes.

Reads take the :class:`Hash` from ``engine.lookup(key, Hash)`` and read :attr:`Hash.fields`;
every change goes through :func:`hset` or :func:`hdel`, which keep the memory account.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from blinkstore_gunicorn.engine.typed import HASH_FIELD_OVERHEAD, Container

if TYPE_CHECKING:
    from blinkstore_gunicorn.engine.base import Engine

__all__ = ["Hash", "hdel", "hset"]


class Hash(Container):
    """A Redis hash."""

    __slots__ = ("fields",)

    kind = b"hash"

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[bytes, bytes] = {}

    def __len__(self) -> int:
        return len(self.fields)

    def clone(self) -> Hash:
        copy = Hash()
        copy.fields = self.fields.copy()
        copy.cost = self.cost
        return copy


def _field_cost(field: bytes, value: bytes) -> int:
    return len(field) + len(value) + HASH_FIELD_OVERHEAD


def hset(
    engine: Engine, key: bytes, pairs: list[tuple[bytes, bytes]], *, only_new: bool = False
) -> int:
    """Set each field to its value (``only_new``: fields not set yet only, HSETNX); return
    how many fields were added. Raises the engine's ``WrongType`` and size-limit errors."""
    growth = sum(_field_cost(field, value) for field, value in pairs)
    hash_ = engine.writable(key, Hash, growth)
    old_cost = cost = hash_.cost
    fields = hash_.fields
    added = 0
    for field, value in pairs:
        previous = fields.get(field)
        if previous is None:
            added += 1
            cost += _field_cost(field, value)
        elif only_new:
            continue
        else:
            cost += len(value) - len(previous)
        fields[field] = value
    if only_new and not added:  # unchanged: a WATCH on the key stays intact, as in Redis
        return 0
    hash_.cost = cost
    engine.resized(key, hash_, old_cost)
    return added


def hdel(engine: Engine, key: bytes, names: Iterable[bytes]) -> int:
    """Remove the fields; return how many there were (the key goes with its last field)."""
    hash_ = engine.lookup(key, Hash)
    if hash_ is None:
        return 0
    old_cost = hash_.cost
    fields = hash_.fields
    removed = 0
    for field in names:
        value = fields.pop(field, None)
        if value is not None:
            removed += 1
            hash_.cost -= _field_cost(field, value)
    if removed:  # unchanged otherwise: a WATCH on the key stays intact
        engine.resized(key, hash_, old_cost)
    return removed
