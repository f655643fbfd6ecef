"""A client process's access to its store's region: mapped on first use, mapped again after
the store changed, never carried across ``fork``.

A backend holds one :class:`SharedReads` per store URL and calls :attr:`SharedReads.get` (and
:meth:`~SharedReads.exists`, :meth:`~SharedReads.expire_at`) before its socket; anything but
:data:`~blinkstore_gunicorn.shm.reader.FALLBACK` is the answer. No system call on the way:
``get`` is the mapped reader's own method once attached, and fork is noticed by a hook, not by
asking for the pid on every read.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable

from blinkstore_gunicorn.shm.handout import RegionNotReady, RegionUnavailable, attach, supported
from blinkstore_gunicorn.shm.reader import FALLBACK, Fallback, RegionReader

__all__ = ["ATTACH_TIMEOUT", "REFUSED_INTERVAL", "RETRY_INTERVAL", "SharedReads"]

log = logging.getLogger("blinkstore_gunicorn.client")

#: Seconds an attach may take (it runs inline, also on an event loop: a local round trip).
ATTACH_TIMEOUT = 0.5
#: Seconds before another attach after one failed because the store was unreachable or not
#: ready to hand its region out.
RETRY_INTERVAL = 0.5
#: Seconds before asking again a store that refused (``shm`` off): it only changes on restart,
#: and a restarted store is noticed anyway (the socket path reconnects).
REFUSED_INTERVAL = 10.0

_live: weakref.WeakSet[SharedReads] = weakref.WeakSet()


class SharedReads:
    """Reads from the region of the store on ``unix_path`` (AUTH with ``password``).

    The region is mapped on the first read, inline (a local round trip, bounded by
    :data:`ATTACH_TIMEOUT`), or with ``background`` in a thread while that read and the next
    ones go to the socket: an event loop must not wait for a store that does not answer.
    """

    __slots__ = (
        "__weakref__",
        "_attaching",
        "_background",
        "_password",
        "_path",
        "_reachable",
        "_reader",
        "_retry_at",
        "get",
    )

    def __init__(
        self,
        unix_path: str,
        password: str | None,
        background: bool = False,
        reachable: Callable[[], bool] = lambda: True,
    ) -> None:
        self._path = unix_path
        #: False while the client knows its store is down: no attach then, not even inline.
        self._reachable = reachable
        self._password = password
        self._background = background
        self._attaching = False
        self._reader: RegionReader | None = None
        self._retry_at = 0.0
        #: ``get(key)``: the value, None (absent), or FALLBACK (ask the store).
        self.get: Callable[[bytes], bytes | Fallback | None] = self._attach_then_get
        _live.add(self)

    @staticmethod
    def available() -> bool:
        """Whether this platform can map a region at all."""
        return supported()

    @property
    def attached(self) -> bool:
        """Whether a region is mapped now."""
        return self._reader is not None

    def get_many(self, keys: list[bytes]) -> list[bytes | Fallback | None] | Fallback:
        """The values of ``keys`` as one multi-key write left them, or FALLBACK."""
        reader = self._current()
        return FALLBACK if reader is None else reader.get_many(keys)

    def exists(self, key: bytes) -> bool | Fallback:
        """Whether ``key`` exists, or FALLBACK."""
        reader = self._current()
        return FALLBACK if reader is None else reader.exists(key)

    def expire_at(self, key: bytes) -> int | Fallback | None:
        """``key``'s deadline (absolute ms, 0 none), None when absent, or FALLBACK."""
        reader = self._current()
        return FALLBACK if reader is None else reader.expire_at_of(key)

    def fell_back(self) -> None:
        """The caller got FALLBACK: if the region is dead, stop using it (try again later)."""
        reader = self._reader
        if reader is not None and not reader.alive:
            self._detach()

    def distrust(self) -> None:
        """The store did not answer on its socket: stop reading its region (it may be dead)
        and map one again only after :data:`RETRY_INTERVAL`."""
        self._detach()
        self._retry_at = time.monotonic() + RETRY_INTERVAL

    def close(self) -> None:
        """Let the region go (this process only); the next read maps it again."""
        self._detach()
        self._retry_at = 0.0

    def _current(self) -> RegionReader | None:
        if self._reader is None:
            self._start_attach()
        return self._reader

    def _attach_then_get(self, key: bytes) -> bytes | Fallback | None:
        self._start_attach()
        reader = self._reader
        return FALLBACK if reader is None else reader.get(key)

    def _start_attach(self) -> None:
        if self._attaching or time.monotonic() < self._retry_at or not self._reachable():
            return
        if not self._background:
            self._attach()
            return
        self._attaching = True
        threading.Thread(target=self._attach, name="blinkstore-shm-attach", daemon=True).start()

    def _attach(self) -> None:
        now = time.monotonic()
        try:
            reader = attach(self._path, self._password, ATTACH_TIMEOUT)
        except RegionNotReady:
            self._retry_at = now + RETRY_INTERVAL
        except RegionUnavailable as exc:
            log.debug("no shared-memory reads from %s: %s", self._path, exc)
            self._retry_at = now + REFUSED_INTERVAL
        except OSError:
            self._retry_at = now + RETRY_INTERVAL  # the store is down: the socket path says so
        else:
            self._reader = reader
            self.get = reader.get
        finally:
            self._attaching = False

    def _detach(self) -> None:
        # Not reader.close(): another thread may be in the middle of a read. The mapping goes
        # with the last reference.
        self._reader = None
        self.get = self._attach_then_get

    def _forget_after_fork(self) -> None:
        # The child inherited the mapping but shares the parent's counter slot: map anew.
        self._detach()
        self._retry_at = 0.0
        self._attaching = False  # an attaching thread did not survive the fork


def _after_fork_in_child() -> None:
    for reads in list(_live):
        reads._forget_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
