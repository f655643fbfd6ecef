"""Lists (Redis's t_list.c): a deque of items, its cost kept as it changes.

Reads take the :class:`List` from ``engine.lookup(key, List)`` and read :attr:`List.items`;
every change goes through the functions here, which keep the memory account and
:attr:`List.width`: pushes and pops adjust them per item, the O(n) edits (LREM, LTRIM,
LINSERT, LSET) recount them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from blinkstore_gunicorn.engine.typed import LIST_ITEM_OVERHEAD, LIST_OVERHEAD, Container

if TYPE_CHECKING:
    from blinkstore_gunicorn.engine.base import Engine

__all__ = ["List", "edit", "lstore", "pop", "push"]


class List(Container):
    """A Redis list."""

    __slots__ = ("items", "width")

    kind = b"list"
    base_cost = LIST_OVERHEAD

    def __init__(self) -> None:
        super().__init__()
        self.items: deque[bytes] = deque()
        #: The length every item has, or -1 when they may differ. A reply of items of one
        #: width is encoded without a pass over their lengths (LRANGE; see
        #: ``server/commands/replies.bulk_items``); a pop keeps it, an edit recounts it.
        self.width = -1

    def __len__(self) -> int:
        return len(self.items)

    def clone(self) -> List:
        copy = List()
        copy.items = self.items.copy()
        copy.cost = self.cost
        copy.width = self.width
        return copy


def _cost(items: Collection[bytes]) -> int:
    return sum(map(len, items)) + LIST_ITEM_OVERHEAD * len(items)


def _width(items: Collection[bytes]) -> int:
    """The length every item has, -1 when they differ (or there are none)."""
    sizes = set(map(len, items))
    return sizes.pop() if len(sizes) == 1 else -1


def push(engine: Engine, key: bytes, values: list[bytes], left: bool) -> int:
    """Push the values at the head (``left``) or the tail, one after the other as Redis does;
    return the new length. Raises the engine's ``WrongType`` and size-limit errors."""
    if len(values) == 1:  # the common push: its cost and width without a pass over values
        width = len(values[0])
        growth = width + LIST_ITEM_OVERHEAD
    else:
        width = _width(values)
        growth = _cost(values)
    found = engine.writable(key, List, growth)
    old_cost = found.cost
    found.width = -1 if found.items and found.width != width else width
    if left:
        found.items.extendleft(values)
    else:
        found.items.extend(values)
    found.cost += growth
    engine.resized(key, found, old_cost)
    return len(found.items)


def pop(engine: Engine, key: bytes, count: int, left: bool) -> list[bytes] | None:
    """Remove and return up to ``count`` items from the head or the tail; None when the key
    is absent (the key goes with its last item)."""
    found = engine.lookup(key, List)
    if found is None:
        return None
    if not count:  # LPOP key 0 is no write: a WATCH on the key holds, as in Redis
        return []
    old_cost = found.cost
    items = found.items
    take = items.popleft if left else items.pop
    # A present list is never empty: one item (LPOP/RPOP without count) needs no loop.
    taken = [take()] if count == 1 else [take() for _ in range(min(count, len(items)))]
    found.cost -= _cost(taken)
    engine.resized(key, found, old_cost)
    return taken


def edit(engine: Engine, key: bytes, change: Callable[[deque[bytes]], None], growth: int) -> None:
    """Apply ``change`` to the items of a list that exists (``growth``: the most bytes it may add),
    then recount its cost."""
    found = engine.writable(key, List, growth)
    old_cost = found.cost
    change(found.items)
    found.cost = LIST_OVERHEAD + _cost(found.items)
    found.width = _width(found.items)
    engine.resized(key, found, old_cost)


def lstore(engine: Engine, key: bytes, values: list[bytes]) -> None:
    """Make ``key`` the list of ``values``, whatever it held (none: the key is deleted), as
    ``SORT ... STORE`` does. Raises the engine's size-limit errors before changing anything."""
    if not values:
        engine.delete(key)
        return
    result = List()
    result.items.extend(values)
    result.cost += _cost(values)
    result.width = _width(values)
    engine.replace(key, result)
