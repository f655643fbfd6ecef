"""Snapshot commands (Redis's rdb.c): SAVE, BGSAVE, LASTSAVE.

They act on the store's snapshot file (the ``snapshot`` setting, ``storage/saving.py``); a
store without one answers with an error naming the setting, as Redis answers a failed save.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands.registry import command

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher

__all__: list[str] = []

_NO_SNAPSHOT = resp.error("ERR no snapshot file is configured (--snapshot, BLINKSTORE_SNAPSHOT)")


@command("save", 1, "admin noscript no_multi")
def cmd_save(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``SAVE``: write the snapshot now, in the store (every other client waits)."""
    snapshots = d.snapshots
    if snapshots is None or snapshots.path is None:
        return _NO_SNAPSHOT
    if snapshots.in_progress:
        return resp.error("ERR Background save already in progress")
    try:
        snapshots.save()
    except Exception as exc:
        return resp.error(f"ERR snapshot not saved: {exc}")
    return resp.OK


@command("bgsave", -1, "admin noscript")
def cmd_bgsave(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``BGSAVE [SCHEDULE]``: write the snapshot in a forked child."""
    snapshots = d.snapshots
    if snapshots is None or snapshots.path is None:
        return _NO_SNAPSHOT
    try:
        started = snapshots.background()
    except Exception as exc:
        return resp.error(f"ERR snapshot not saved: {exc}")
    if not started:
        return resp.error("ERR Background save already in progress")
    return resp.simple("Background saving started")


@command("lastsave", 1, "loading stale fast")
def cmd_lastsave(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``LASTSAVE``: Unix time of the last snapshot written (or loaded)."""
    snapshots = d.snapshots
    return resp.integer(snapshots.last_save_time if snapshots is not None else 0)
