# Generated from _locks_aio.py by scripts/unasync.py (make generate): do not edit.
"""Host-wide locks: ``cache.lock(name)`` (see docs/locks.md).

Written once, for asyncio; ``_locks_sync.py`` is generated from this module by
``scripts/unasync.py`` (``make generate``).

The store grants locks natively (``BLINK.LOCK`` parks waiters server-side, and a lock lives
on the connection that holds it, so a killed holder frees it at once); its backend is its own
lock source. :class:`AsyncKeyLocks` builds the usual Redis lock from plain commands for every
other backend: ``SET name token NX PX``, released by compare-and-delete and extended by
compare-and-pexpire, waiters polling with backoff. ``memory://`` uses it too (within the
process). The :class:`AsyncLock` object on top follows redis-py's ``Lock``.
"""

from __future__ import annotations

import math
import os
import time
from types import TracebackType
from typing import Any, Final, Protocol

from blinkstore_gunicorn.client._runtime_sync import sleep
from blinkstore_gunicorn.client.errors import LockError, LockNotOwnedError

__all__ = ["KeyLocks", "Lock", "LockHold", "sync_locks"]

_FIRST_POLL: Final = 0.002
_MAX_POLL: Final = 0.05


class LockHold(Protocol):
    """One acquisition of a lock, identified by its token."""

    token: bytes

    def release(self) -> bool:
        """Release the lock; whether it was still held by this token."""
        ...

    def extend(self, ms: int, replace: bool) -> bool:
        """``ms`` more (``replace``: ``ms`` from now); whether it was still held."""
        ...


class _KeyPrimitives(Protocol):
    def get(self, key: bytes) -> bytes | None: ...
    def set(self, key: bytes, value: bytes, px: int | None, nx: bool, xx: bool) -> bool: ...
    def delete_if_equal(self, key: bytes, expected: bytes) -> bool: ...
    def extend_if_equal(self, key: bytes, expected: bytes, ms: int, replace: bool) -> bool: ...


class _KeyLock:
    __slots__ = ("_backend", "_key", "token")

    def __init__(self, backend: _KeyPrimitives, key: bytes, token: bytes) -> None:
        self._backend, self._key, self.token = backend, key, token

    def release(self) -> bool:
        return self._backend.delete_if_equal(self._key, self.token)

    def extend(self, ms: int, replace: bool) -> bool:
        return self._backend.extend_if_equal(self._key, self.token, ms, replace)


class KeyLocks:
    """Locks as keys holding a random token (what redis-py's ``Lock`` does): a waiter polls,
    2 ms doubling to 50 ms, and a crashed holder's lock ends only at its timeout."""

    def __init__(self, backend: _KeyPrimitives) -> None:
        self._backend = backend

    def lock(self, name: bytes, px: int | None, wait_ms: int | None) -> LockHold | None:
        """The lock, or None when it stays taken for ``wait_ms`` (0: no wait; None: no limit)."""
        token = os.urandom(16).hex().encode("ascii")
        deadline = math.inf if wait_ms is None else time.monotonic() + wait_ms / 1000
        delay = _FIRST_POLL
        while not self._backend.set(name, token, px, True, False):
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            sleep(min(delay, left))
            delay = min(delay * 2, _MAX_POLL)
        return _KeyLock(self._backend, name, token)

    def lock_token(self, name: bytes) -> bytes | None:
        """The holder's token, or None when the lock is free."""
        return self._backend.get(name)


def sync_locks(backend: Any) -> Any:
    """Where ``backend``'s locks come from: the store itself, else lock keys."""
    return backend if backend.name == "store" else KeyLocks(backend)


def _seconds(value: float | None, name: str, *, zero: bool) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds or None, not {value!r}")
    if math.isnan(value) or math.isinf(value) or value < 0 or (value == 0 and not zero):
        bound = ">= 0" if zero else "> 0"
        raise ValueError(
            f"{name} must be a finite number of seconds {bound}, or None; got {value!r}"
        )
    return float(value)


class Lock:
    """A host-wide lock named ``name``, made by ``cache.lock(name)`` and used as a context
    manager or with :meth:`acquire` and :meth:`release` (see docs/locks.md).

    An object tracks one acquisition at a time, so each caller takes its own (``with
    cache.lock(name):`` makes one per use); acquiring again through the object that holds
    the lock is a :class:`LockError`, since a lock is not re-entrant.
    """

    __slots__ = ("_blocking", "_blocking_timeout", "_hold", "_key", "_locks", "_timeout", "name")

    def __init__(
        self,
        locks: Any,
        key: bytes,
        name: object,
        *,
        timeout: float | None,
        blocking: bool,
        blocking_timeout: float | None,
    ) -> None:
        self._locks = locks
        self._key = key
        #: The name given to ``lock()`` (without the cache's namespace).
        self.name = name
        self._timeout = _seconds(timeout, "timeout", zero=False)
        self._blocking = bool(blocking)
        self._blocking_timeout = _seconds(blocking_timeout, "blocking_timeout", zero=True)
        self._hold: LockHold | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} timeout={self._timeout}>"

    @property
    def token(self) -> bytes | None:
        """The token of the acquisition this object holds, or None."""
        return None if self._hold is None else self._hold.token

    def acquire(self, blocking: bool | None = None, blocking_timeout: float | None = None) -> bool:
        """Take the lock; True once held. Without ``blocking`` give up at once if it is taken;
        with it wait up to ``blocking_timeout`` seconds (None: without limit). Both default
        to the values given to ``lock()``."""
        if self._hold is not None:
            raise LockError(
                f"lock {self.name!r} is already acquired by this object (a lock is not "
                "re-entrant): release it first, or take another object from cache.lock()"
            )
        if blocking is None:
            blocking = self._blocking
        wait = self._blocking_timeout
        if blocking_timeout is not None:
            wait = _seconds(blocking_timeout, "blocking_timeout", zero=True)
        wait_ms: int | None = 0
        if blocking:
            wait_ms = None if wait is None else round(wait * 1000)
        px = None if self._timeout is None else max(1, round(self._timeout * 1000))
        hold = self._locks.lock(self._key, px, wait_ms)
        if hold is None:
            return False
        self._hold = hold
        return True

    def release(self) -> None:
        """Release the lock. Raises :class:`LockError` if this object does not hold it, and
        :class:`LockNotOwnedError` if it expired or its connection was lost meanwhile."""
        hold, self._hold = self._hold, None
        if hold is None:
            raise LockError(f"cannot release lock {self.name!r}: it is not acquired")
        if not hold.release():
            raise self._not_owned("release")

    def extend(self, additional_time: float, replace_ttl: bool = False) -> bool:
        """Give the held lock ``additional_time`` more seconds (``replace_ttl``: set its
        timeout to ``additional_time`` from now); True, or :class:`LockError` /
        :class:`LockNotOwnedError` as for :meth:`release`."""
        seconds = _seconds(additional_time, "additional_time", zero=False)
        if seconds is None:
            raise TypeError("additional_time must be a number of seconds, not None")
        hold = self._hold
        if hold is None:
            raise LockError(f"cannot extend lock {self.name!r}: it is not acquired")
        if self._timeout is None:
            raise LockError(f"cannot extend lock {self.name!r}: it has no timeout")
        if not hold.extend(max(1, round(seconds * 1000)), replace_ttl):
            raise self._not_owned("extend")
        return True

    def locked(self) -> bool:
        """Whether anyone holds the lock now."""
        return self._locks.lock_token(self._key) is not None

    def owned(self) -> bool:
        """Whether this object holds the lock now (it may have expired)."""
        hold = self._hold
        return hold is not None and self._locks.lock_token(self._key) == hold.token

    def _not_owned(self, action: str) -> LockNotOwnedError:
        return LockNotOwnedError(
            f"cannot {action} lock {self.name!r}: it is no longer held by this object (its "
            "timeout passed or its connection was lost), so another holder may have had it"
        )

    def __enter__(self) -> Lock:
        if self.acquire():
            return self
        raise LockError(
            f"could not acquire lock {self.name!r} within blocking_timeout="
            f"{self._blocking_timeout}s"
            if self._blocking
            else f"could not acquire lock {self.name!r}: it is held (blocking=False)"
        )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
