"""The store's data: bytes keys and values, memory limit, eviction, TTL and stats.

Strings are bytes; the other types are containers (``typed.py``), each type's operations in a
module of its own (``hashes.py``, ``sets.py``, ``lists.py``, ``zsets.py``). No I/O and no
protocol knowledge here; the server drives an :class:`Engine`.
"""

from blinkstore_gunicorn.engine.base import (
    Engine,
    EngineError,
    EngineStats,
    EntryTooLarge,
    KeyTooLarge,
    ValueTooLarge,
)
from blinkstore_gunicorn.engine.memory import (
    DEFAULT_MAX_KEY_SIZE,
    DEFAULT_MAX_VALUE_SIZE,
    DEFAULT_MEMORY_LIMIT,
    ENTRY_OVERHEAD,
    REGION_OVERHEAD,
    TTL_OVERHEAD,
    MemoryEngine,
    tune_allocator,
)
from blinkstore_gunicorn.engine.pattern import compile_pattern, match_pattern
from blinkstore_gunicorn.engine.typed import WRONGTYPE, Container, WrongType

__all__ = [
    "DEFAULT_MAX_KEY_SIZE",
    "DEFAULT_MAX_VALUE_SIZE",
    "DEFAULT_MEMORY_LIMIT",
    "ENTRY_OVERHEAD",
    "REGION_OVERHEAD",
    "TTL_OVERHEAD",
    "WRONGTYPE",
    "Container",
    "Engine",
    "EngineError",
    "EngineStats",
    "EntryTooLarge",
    "KeyTooLarge",
    "MemoryEngine",
    "ValueTooLarge",
    "WrongType",
    "compile_pattern",
    "match_pattern",
    "tune_allocator",
]
