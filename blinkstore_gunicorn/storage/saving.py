"""When the store saves its snapshot, and what ``INFO``'s persistence section says about it.

:class:`Snapshots` belongs to one store. It loads the file once before the store serves, saves
in the foreground on stop (and for ``SAVE``), and in a forked child for ``BGSAVE``, ``blinkstore
snapshot save`` and the interval, which saves only when a key changed since the last snapshot.
The child holds copy-on-write pages of the store's heap: the extra memory is what the store
changes while the child writes, plus the pages the child's own reference counting touches
(at most the store's heap, never the shared region); see ``docs/persistence.md``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence

from blinkstore_gunicorn.engine import Engine, MemoryEngine
from blinkstore_gunicorn.shm.reader import RegionReader
from blinkstore_gunicorn.storage.snapshot import (
    SnapshotError,
    load_file,
    records,
    restore,
    write_file,
)

__all__ = ["Snapshots"]

log = logging.getLogger("blinkstore.snapshot")


def _close_fds_except(keep: set[int]) -> None:
    """Close every descriptor above stderr but ``keep`` (the child must not hold the store's
    listening sockets: a successor would take the socket path for a live store's)."""
    low = 3
    for fd in sorted(keep):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


def _reap(pid: int) -> None:
    """Wait for the save child ``pid`` (gone already if something else reaped it)."""
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


class Snapshots:
    """The snapshot of one store's engine at ``path`` (None: none is configured)."""

    def __init__(self, path: str | None, engine: Engine) -> None:
        self.path = os.path.abspath(path) if path else None
        self.engine = engine
        #: Unix time of the last snapshot written (or loaded; the start when there is none).
        self.last_save_time = int(time.time())
        self.last_status = "ok"
        self.saves = 0
        #: Keys in the last snapshot written or loaded.
        self.keys = 0
        self.last_bgsave_seconds = -1
        self._saved_changes = self._changes()
        self._child: tuple[int, int, float, int] | None = None  # pid, pipe, start, changes
        self._report = b""
        #: The store's function libraries, which snapshots hold as Redis's RDB files do:
        #: ``libraries()`` gives each one's code to save, ``load_libraries(codes)`` loads those
        #: a snapshot holds. They belong to the scripting layer, which this module does not
        #: know: the store sets both (``server/store.py``).
        self.libraries: Callable[[], list[bytes]] = list
        self.load_libraries: Callable[[Sequence[bytes]], None] | None = None

    def _changes(self) -> int:
        return self.engine.watched.changes

    @property
    def changes_since_save(self) -> int:
        """Key changes since the last snapshot (``rdb_changes_since_last_save``)."""
        return self._changes() - self._saved_changes

    @property
    def in_progress(self) -> bool:
        """Whether a background save runs."""
        return self._child is not None

    def unusable(self) -> str | None:
        """Why no snapshot could ever be written (its directory is missing or not writable by
        this process), None when it can: checked at start, as a setting is."""
        if self.path is None:
            return None
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            return f"directory {directory} does not exist"
        if not os.access(directory, os.W_OK | os.X_OK):
            return f"directory {directory} is not writable by uid {os.geteuid()}"
        return None

    def _engine(self) -> MemoryEngine:
        if self.path is None:
            raise SnapshotError("no snapshot path is configured (--snapshot)")
        if not isinstance(self.engine, MemoryEngine):
            raise SnapshotError("this engine cannot be saved")
        return self.engine

    # -- loading ---------------------------------------------------------------------------

    def load(self, now_ms: int) -> None:
        """Add the snapshot's keys to the engine; a bad file is refused with one log line."""
        if self.path is None or not isinstance(self.engine, MemoryEngine):
            return
        started = time.monotonic()
        try:
            parsed = load_file(self.path, now_ms)
        except SnapshotError as exc:
            log.error(
                "snapshot %s refused: %s; starting empty (the next snapshot replaces it)",
                self.path,
                exc,
            )
            return
        if parsed is None:
            log.info("no snapshot at %s yet: starting empty", self.path)
            return
        found = len(parsed.records)
        added, refused = restore(self.engine, parsed)
        if parsed.functions and self.load_libraries is not None:
            self.load_libraries(parsed.functions)
        self.keys = added
        self.last_save_time = int(os.stat(self.path).st_mtime)
        self._saved_changes = self._changes()
        log.info(
            "snapshot %s loaded in %.3f s: %d keys (%d expired, %d present already, %d over this"
            " store's size limits)",
            self.path,
            time.monotonic() - started,
            added,
            parsed.expired,
            found - added - refused,
            refused,
        )

    # -- saving ----------------------------------------------------------------------------

    def save(self) -> int:
        """Write the snapshot now, in this process; return the number of keys.

        Raises :class:`SnapshotError` (or ``OSError``) when it cannot be written.
        """
        engine = self._engine()
        assert self.path is not None
        region = engine.region
        changes = self._changes()
        try:
            keys = write_file(
                self.path,
                records(engine, lambda key, block, _: region.read(block) if region else None),
                len(engine),
                self.libraries(),
            )
        except Exception:
            self.last_status = "err"
            raise
        self._saved(keys, changes, time.time())
        return keys

    def _saved(self, keys: int, changes: int, started: float) -> None:
        self.keys = keys
        self.last_status = "ok"
        self.last_save_time = int(started)
        self._saved_changes = changes
        self.saves += 1

    def background(self) -> bool:
        """Start a background save; False when one runs already.

        Raises :class:`SnapshotError` when no snapshot can be saved (no path, fork failed).
        """
        engine = self._engine()
        if self._child is not None:
            return False
        loop = asyncio.get_running_loop()
        # len() first adopts the rest of a dead predecessor's region (server/adoption.py) here:
        # in the child that would write into this store's live region.
        len(engine)
        libraries = self.libraries()
        read_end, write_end = os.pipe()
        started, changes = time.time(), self._changes()
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(read_end)
            os.close(write_end)
            raise SnapshotError(f"cannot fork: {exc.strerror}") from None
        if pid == 0:  # pragma: no cover - the child ends in os._exit, coverage cannot see it
            self._child_writes(engine, libraries, read_end, write_end)
        os.close(write_end)
        os.set_blocking(read_end, False)
        self._child = (pid, read_end, started, changes)
        self._report = b""
        loop.add_reader(read_end, self._child_output, loop)
        return True

    def _child_writes(
        self, engine: MemoryEngine, libraries: list[bytes], read_end: int, write_end: int
    ) -> None:
        """In the forked child: write, report on ``write_end``, exit. Never returns."""
        report = b"err the snapshot child failed"
        try:
            # Signals belong to the store: its loop's wake-up descriptor must not hear ours.
            signal.set_wakeup_fd(-1)
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
                signal.signal(signum, signal.SIG_DFL)
            gc.disable()  # a collection would touch (and so copy) every page of the heap
            # The store's clients come first: on a small host the child takes the CPU the
            # store leaves (Redis's child competes at full priority).
            os.nice(19)
            os.close(read_end)
            region = engine.region
            _close_fds_except({write_end, *(region.fds if region else ())})
            reader = RegionReader(*region.fds, 0) if region else None
            changed = 0

            def read(key: bytes, block: int, deadline: int | None) -> bytes | None:
                nonlocal changed
                value = reader.get(key, 1) if reader else None
                if reader and not isinstance(value, bytes):
                    # No probe finds a key placed far from home, for as long as it stays
                    # there: its block (the fork's engine holds the handle) is a second chance.
                    # A value the store wrote since the fork passes too: that write counted a
                    # change after the fork, so the next save covers it anyway.
                    value = reader.read_block(key, block, deadline or 0)
                if isinstance(value, bytes):
                    return value
                changed += 1
                return None

            assert self.path is not None
            keys = write_file(self.path, records(engine, read), len(engine), libraries)
            report = b"ok %d %d" % (keys, changed)
        except BaseException as exc:
            report = f"err {exc or type(exc).__name__}".encode(errors="replace")
        finally:
            try:
                os.write(write_end, report)
            finally:
                os._exit(0)

    def _child_output(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self._child is not None
        pid, read_end, started, changes = self._child
        try:
            data = os.read(read_end, 4096)
        except BlockingIOError:
            return
        if data:
            self._report += data
            return
        loop.remove_reader(read_end)
        os.close(read_end)
        _reap(pid)
        self._child = None
        self.last_bgsave_seconds = round(time.time() - started)
        self._finish(pid, self._report.decode(errors="replace"), changes, started)

    def _remove_temporary(self, pid: int) -> None:
        """Remove the temporary file a save by ``pid`` left (killed before its rename)."""
        assert self.path is not None
        directory, name = os.path.split(self.path)
        try:
            os.unlink(os.path.join(directory, f".{name}.{pid}.tmp"))
        except FileNotFoundError:
            pass

    def _finish(self, pid: int, report: str, changes: int, started: float) -> None:
        verdict, _, rest = report.partition(" ")
        if verdict == "ok":
            keys, left_out = (int(n) for n in rest.split())
            self._saved(keys, changes, started)
            log.info(
                "background snapshot %s saved: %d keys in %d s%s",
                self.path,
                keys,
                self.last_bgsave_seconds,
                f" ({left_out} changed during the save, left for the next)" if left_out else "",
            )
            if left_out:
                # Those keys changed, so the next interval saves again.
                self._saved_changes -= 1
            return
        self.last_status = "err"
        self._remove_temporary(pid)
        log.error("background snapshot %s failed: %s", self.path, rest or "the child died")

    def periodic(self) -> None:
        """The interval's tick: a background save when a key changed since the last one."""
        if self._child is None and self.changes_since_save > 0:
            try:
                self.background()
            except SnapshotError as exc:
                self.last_status = "err"
                log.error("background snapshot %s failed: %s", self.path, exc)

    def stop(self) -> None:
        """Stop a background save (its temporary file removed) and save in the foreground."""
        if self._child is not None:
            pid, read_end, _, _ = self._child
            self._child = None
            asyncio.get_running_loop().remove_reader(read_end)
            os.close(read_end)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _reap(pid)
            self._remove_temporary(pid)
        if self.path is None:
            return
        started = time.monotonic()
        try:
            keys = self.save()
        except (OSError, SnapshotError) as exc:
            log.error("snapshot %s not saved on stop: %s", self.path, exc)
            return
        log.info(
            "snapshot %s saved on stop: %d keys in %.3f s",
            self.path,
            keys,
            time.monotonic() - started,
        )

    # -- INFO --------------------------------------------------------------------------------

    def info(self) -> list[tuple[str, object]]:
        """``INFO persistence``: Redis's fields (redis_exporter reads them), then ours."""
        child = self._child
        running = -1 if child is None else round(time.time() - child[2])
        size = -1
        if self.path is not None:
            try:
                size = os.stat(self.path).st_size
            except OSError:
                pass
        return [
            ("loading", 0),
            ("async_loading", 0),
            ("rdb_changes_since_last_save", self.changes_since_save),
            ("rdb_bgsave_in_progress", int(child is not None)),
            ("rdb_last_save_time", self.last_save_time),
            ("rdb_last_bgsave_status", self.last_status),
            ("rdb_last_bgsave_time_sec", self.last_bgsave_seconds),
            ("rdb_current_bgsave_time_sec", running),
            ("rdb_saves", self.saves),
            ("rdb_last_cow_size", 0),
            ("aof_enabled", 0),
            ("aof_rewrite_in_progress", 0),
            ("aof_rewrite_scheduled", 0),
            ("aof_last_rewrite_time_sec", -1),
            ("aof_current_rewrite_time_sec", -1),
            ("aof_last_bgrewrite_status", "ok"),
            ("aof_last_write_status", "ok"),
            ("snapshot_path", self.path or ""),
            ("snapshot_keys", self.keys),
            ("snapshot_bytes", size),
        ]
