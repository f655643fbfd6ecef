"""SCAN cursors for the engine: snapshots of the key set, shared while no key is added.

Cursor = generation << 32 | position in that generation's snapshot. A snapshot costs 8 bytes
per key (and keeps keys deleted since alive), so only a few live at once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

__all__ = ["MAX_SCAN_SNAPSHOTS", "SCAN_IDLE_MS", "ScanCursors"]

# Live SCAN snapshots kept at once; a cursor whose snapshot was dropped restarts its scan.
MAX_SCAN_SNAPSHOTS = 4
# A snapshot unused this long (ms) is presumed abandoned and is the first to go when full.
SCAN_IDLE_MS = 60_000
# Generations wrap below 2**31 so cursors fit in a signed 64-bit integer as Redis clients expect.
_CURSOR_SHIFT = 32
_POSITION_MASK = (1 << _CURSOR_SHIFT) - 1
_MAX_GENERATION = 1 << 31


class _Snapshot:
    """Keys of the store at the start of a scan, shared by scans started before any insert."""

    __slots__ = ("inserts", "keys", "used_ms", "users")

    def __init__(self, keys: list[bytes], inserts: int, now_ms: int) -> None:
        self.keys = keys
        self.inserts = inserts
        self.used_ms = now_ms
        self.users = 1


class ScanCursors:
    """The snapshots behind the cursors of scans in flight."""

    __slots__ = ("_generation", "_snapshots")

    def __init__(self) -> None:
        self._generation = 0
        self._snapshots: OrderedDict[int, _Snapshot] = OrderedDict()

    def clear(self) -> None:
        """Drop every snapshot (their cursors restart their scans)."""
        self._snapshots.clear()

    def step(
        self,
        cursor: int,
        count: int,
        now: int,
        inserts: int,
        all_keys: Callable[[], list[bytes]],
    ) -> tuple[int, list[bytes]]:
        """The next cursor (0: done) and up to ``count`` snapshot keys from ``cursor``.

        ``inserts`` counts keys ever added (a snapshot taken at the same count still lists
        every key); ``all_keys`` takes a new snapshot. The caller filters out keys deleted
        since.
        """
        generation, position = cursor >> _CURSOR_SHIFT, cursor & _POSITION_MASK
        snapshot = self._snapshots.get(generation) if cursor else None
        if snapshot is None or position > len(snapshot.keys):
            generation, snapshot = self._start(now, inserts, all_keys)
            position = 0
        snapshot.used_ms = now
        keys = snapshot.keys
        end = min(position + count, len(keys))
        found = keys[position:end]
        if end < len(keys):
            return (generation << _CURSOR_SHIFT) | end, found
        snapshot.users -= 1
        if snapshot.users <= 0:
            self._snapshots.pop(generation, None)
        return 0, found

    def _start(
        self, now: int, inserts: int, all_keys: Callable[[], list[bytes]]
    ) -> tuple[int, _Snapshot]:
        snapshots = self._snapshots
        # The newest snapshot still lists every key present now if no key was added since.
        latest = snapshots.get(self._generation)
        if latest is not None and latest.inserts == inserts:
            latest.users += 1
            return self._generation, latest
        if len(snapshots) >= MAX_SCAN_SNAPSHOTS:
            for generation in [g for g, s in snapshots.items() if now - s.used_ms > SCAN_IDLE_MS]:
                del snapshots[generation]
        if len(snapshots) >= MAX_SCAN_SNAPSHOTS:
            # Drop the newest, not the least recently used: round-robin scans then cannot
            # evict each other forever, since the oldest ones always run to completion.
            snapshots.popitem(last=True)
        self._generation = self._generation % (_MAX_GENERATION - 1) + 1
        snapshot = _Snapshot(all_keys(), inserts, now)
        snapshots[self._generation] = snapshot
        return self._generation, snapshot
