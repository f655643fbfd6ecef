"""What the engine's non-string values share: the container base, the WRONGTYPE error, costs.

A string stays plain ``bytes`` in the engine's dicts (or a region block offset), so the string
path pays nothing for the other types. A hash, set, list or sorted set is a
:class:`Container` subclass (``engine/hashes.py``, ``sets.py``, ``lists.py``, ``zsets.py``,
Redis's ``t_*.c``) that keeps its own :attr:`Container.cost` up to date as it changes; the
engine adds ``len(key) + ENTRY_OVERHEAD + cost`` to its account, like a string's ``len(key) +
len(value) + ENTRY_OVERHEAD``. A write goes through :meth:`~.keyspace.Keyspace.writable` (the
key's container, made room for and created when absent) and ends with
:meth:`~.keyspace.Keyspace.resized`, which settles the account, evicts other keys when over
the limit and deletes a container left empty (Redis keeps no empty one but a stream).

``server/_fasttypes.c`` answers the plain LPUSH, RPUSH, LPOP, RPOP, SADD, HSET and LRANGE in C
by doing what ``lists.push``/``pop``, ``sets.sadd`` and ``hashes.hset`` do with these
attributes (``cost``, ``List.items``/``width``, ``Set.members``, ``Hash.fields``,
``ZSet.scores``) and the overheads below: a change to them changes it too
(``tests/unit/test_fasttypes.py`` compares the two).

The per-element overheads are CPython 3.11/x86-64 sizes, rounded up the way ENTRY_OVERHEAD
is (``docs/engine.md``): a ``bytes`` object costs 33 bytes of header plus allocator rounding
(~40); a dict entry 24 bytes plus its index, at a load of 1/3..2/3 (~50-100); a set slot 16
bytes at the same load (~25-50); a deque slot 8 bytes (blocks of 64).
"""

from __future__ import annotations

from typing import ClassVar, TypeVar

from blinkstore_gunicorn.engine.base import EngineError

__all__ = [
    "CONTAINER_OVERHEAD",
    "HASH_FIELD_OVERHEAD",
    "LIST_ITEM_OVERHEAD",
    "LIST_OVERHEAD",
    "SET_MEMBER_OVERHEAD",
    "STREAM_ENTRY_OVERHEAD",
    "STREAM_OVERHEAD",
    "WRONGTYPE",
    "ZSET_MEMBER_OVERHEAD",
    "Container",
    "ContainerT",
    "WrongType",
]

#: The container object and its empty table (a dict or set of 8 slots).
CONTAINER_OVERHEAD = 256
#: A list's: the deque allocates a first block of 64 slots at once (measured ~1000 bytes of
#: RSS for a one-item list beyond its item).
LIST_OVERHEAD = 768
#: A hash field beyond len(field) + len(value): two bytes objects and a dict entry.
HASH_FIELD_OVERHEAD = 176
#: A set member beyond its length: one bytes object and its set slots (a set table grows 4x
#: when small, so just after a resize it holds several 16-byte slots per member; measured).
SET_MEMBER_OVERHEAD = 128
#: A sorted-set member beyond its length: one bytes object, its dict entry and float, and the
#: sorted list's (score, member) tuple and slot (measured 173-215 a member, RSS).
ZSET_MEMBER_OVERHEAD = 256
#: A list item beyond its length: one bytes object and a deque slot.
LIST_ITEM_OVERHEAD = 56
#: A stream's: the container and its two lists of entries.
STREAM_OVERHEAD = 640
#: A stream entry beyond its body: the ID tuple and its two integers, the body's bytes
#: object header, and a slot in each list.
STREAM_ENTRY_OVERHEAD = 192

#: Redis 7.0's text, byte for byte: clients match on the ``WRONGTYPE`` code.
WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"


class WrongType(EngineError):
    """The key holds a value of another type than the operation needs."""

    def __init__(self) -> None:
        super().__init__(WRONGTYPE)


class Container:
    """A value that is not a string; subclasses name their Redis type in :attr:`kind`."""

    __slots__ = ("cost",)

    #: What ``TYPE`` answers for it.
    kind: ClassVar[bytes] = b""
    #: Its cost when empty.
    base_cost: ClassVar[int] = CONTAINER_OVERHEAD
    #: Whether the key stays when the last element goes (a stream keeps its last ID).
    kept_empty: ClassVar[bool] = False

    def __init__(self) -> None:
        #: Bytes it counts against the memory limit beyond ``len(key) + ENTRY_OVERHEAD``.
        self.cost = self.base_cost

    def __len__(self) -> int:
        """Number of elements (0: the engine deletes the key unless :attr:`kept_empty`)."""
        raise NotImplementedError

    def clone(self) -> Container:
        """An independent copy with the same cost (``COPY``)."""
        raise NotImplementedError


ContainerT = TypeVar("ContainerT", bound=Container)
