"""The engine's per-key introspection: a key's value and size without touching its stats,
TOUCH, and RANDOMKEY (Redis's object.c and db.c).

:class:`Inspection` is a base of :class:`~blinkstore_gunicorn.engine.memory.MemoryEngine`,
like :class:`~blinkstore_gunicorn.engine.keyspace.Keyspace`, which holds the state and the
primitives these methods use; kept apart so that neither grows past its one job.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from itertools import islice
from typing import TYPE_CHECKING

from blinkstore_gunicorn.engine.keyspace import TTL_OVERHEAD, Stored
from blinkstore_gunicorn.engine.typed import Container

if TYPE_CHECKING:
    from blinkstore_gunicorn.shm.adoption import InheritedRegion

__all__ = ["Inspection"]


class Inspection:
    """Read-only views of keys; the state and the primitives are the engine's."""

    __slots__ = ()

    if TYPE_CHECKING:
        _ahead: OrderedDict[bytes, Stored]
        _behind: OrderedDict[bytes, Stored]
        _deadlines: dict[bytes, int]
        _visited: set[bytes]
        _inherited: InheritedRegion | None

        def _finish_inheritance(self) -> None: ...

        def _live(self, key: bytes) -> Stored | None: ...
        def _cost(self, key: bytes, value: Stored) -> int: ...
        def _read(self, handle: Stored) -> bytes: ...

    def value(self, key: bytes) -> bytes | Container | None:
        """The key's value of any type (a string as bytes), None when absent; no stats, no
        recency change (``OBJECT``, ``SORT``'s patterns)."""
        value = self._live(key)
        if isinstance(value, int):
            return self._read(value)
        return value

    def usage(self, key: bytes) -> int | None:
        """Bytes the key counts against the memory limit (its TTL included), None when absent."""
        value = self._live(key)
        if value is None:
            return None
        return self._cost(key, value) + (TTL_OVERHEAD if key in self._deadlines else 0)

    def touch(self, key: bytes) -> bool:
        """Mark the key recently used (SIEVE keeps it); False when absent."""
        if self._live(key) is None:
            return False
        self._visited.add(key)
        return True

    def random_key(self) -> bytes | None:
        """A key drawn at random, None when there is none. O(keys) (the SIEVE queues are
        ordered dicts, with no O(1) random access); an expired key drawn is removed and
        another one drawn."""
        if self._inherited is not None:
            self._finish_inheritance()  # every key may be drawn
        while True:
            ahead, behind = len(self._ahead), len(self._behind)
            if not ahead + behind:
                return None
            index = random.randrange(ahead + behind)
            queue = self._ahead if index < ahead else self._behind
            key = next(islice(dict.keys(queue), index if index < ahead else index - ahead, None))
            if self._live(key) is not None:
                return key
