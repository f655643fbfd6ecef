"""Leases: how processes agree on which one computes a missing key (see ``stampede.py``).

Written once, for asyncio; ``_leases_sync.py`` is generated from this module by
``scripts/unasync.py`` (``make generate``). The store grants leases natively (``BS.FETCH``
parks waiters server-side), so its backend is its own lease source; lock-key leases
(``AsyncLockKeyLeases``, ``LockKeyLeases``) build a weaker version from plain commands for
Redis/Valkey (a lock key and polling with backoff); ``memory://`` needs none, being
per-process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

from blinkstore_gunicorn.client._runtime_aio import sleep
from blinkstore_gunicorn.client.stampede import LOCK_SUFFIX, TIMED_OUT, Fetched, Unshared

__all__ = ["AsyncLease", "AsyncLockKeyLeases", "AsyncUnsharedLeases", "async_leases"]

_FIRST_POLL: Final = 0.002
_MAX_POLL: Final = 0.05


class AsyncLease(Protocol):
    """The right to compute one key; exactly one of the methods is called, once."""

    async def fill(self, value: bytes, px: int | None) -> None:
        """Store the computed value (waking every waiter) and end the lease."""

    async def release(self) -> None:
        """End the lease without a value (the loader failed); one waiter takes over."""


class _AsyncPrimitives(Protocol):
    async def get(self, key: bytes) -> bytes | None: ...
    async def set(self, key: bytes, value: bytes, px: int | None, nx: bool, xx: bool) -> bool: ...
    async def delete_if_equal(self, key: bytes, expected: bytes) -> bool: ...


def _token() -> bytes:
    return os.urandom(12).hex().encode("ascii")


class _AsyncLockKeyLease:
    __slots__ = ("_backend", "_key", "_token")

    def __init__(self, backend: _AsyncPrimitives, key: bytes, token: bytes) -> None:
        self._backend, self._key, self._token = backend, key, token

    async def fill(self, value: bytes, px: int | None) -> None:
        await self._backend.set(self._key, value, px, False, False)
        await self.release()

    async def release(self) -> None:
        await self._backend.delete_if_equal(self._key + LOCK_SUFFIX, self._token)


class AsyncLockKeyLeases:
    """Leases from plain commands: ``SET <key>:bs:lock <token> NX PX``, waiters polling.

    Weaker than the store's: a crashed holder is noticed only when the lock key expires,
    and waiters see the value up to one poll interval (2 ms doubling to 50 ms) late.
    """

    def __init__(
        self, backend: _AsyncPrimitives, sleep: Callable[[float], Awaitable[None]] = sleep
    ) -> None:
        self._backend = backend
        self._sleep = sleep

    async def try_lease(self, key: bytes, lease_ms: int) -> AsyncLease | None:
        """The lease if nobody holds it, else None (never waits)."""
        token = _token()
        if await self._backend.set(key + LOCK_SUFFIX, token, lease_ms, True, False):
            return _AsyncLockKeyLease(self._backend, key, token)
        return None

    async def fetch(self, key: bytes, lease_ms: int, wait_ms: int) -> Fetched:
        """The value, else the lease, else wait (polling) up to ``wait_ms`` for either."""
        deadline = time.monotonic() + wait_ms / 1000
        delay = _FIRST_POLL
        backend = self._backend
        while True:
            raw = await backend.get(key)
            if raw is not None:
                return Fetched("hit", raw)
            lease = await self.try_lease(key, lease_ms)
            if lease is not None:
                # The value may have landed between the read and the lock.
                raw = await backend.get(key)
                if raw is not None:
                    await lease.release()
                    return Fetched("hit", raw)
                return Fetched("lease", lease=lease)
            left = deadline - time.monotonic()
            if left <= 0:
                return TIMED_OUT
            await self._sleep(min(delay, left))
            delay = min(delay * 2, _MAX_POLL)


class _AsyncUnsharedLease:
    __slots__ = ("_backend", "_key", "_tracked")

    def __init__(self, backend: Any, key: bytes, tracked: bool) -> None:
        self._backend, self._key, self._tracked = backend, key, tracked

    async def fill(self, value: bytes, px: int | None) -> None:
        try:
            await self._backend.set(self._key, value, px, False, False)
        finally:
            await self.release()

    async def release(self) -> None:
        if self._tracked:
            Unshared.give_back(self._backend.engine, self._key)


class AsyncUnsharedLeases:
    """Leases for ``memory://``, which no other process shares (see ``stampede.Unshared``)."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend

    async def try_lease(self, key: bytes, lease_ms: int) -> AsyncLease | None:
        """The refresh lease, unless a refresh of ``key`` is already running here."""
        if Unshared.take(self._backend.engine, key):
            return _AsyncUnsharedLease(self._backend, key, tracked=True)
        return None

    async def fetch(self, key: bytes, lease_ms: int, wait_ms: int) -> Fetched:
        """The value or the lease."""
        raw = await self._backend.get(key)
        if raw is not None:
            return Fetched("hit", raw)
        return Fetched("lease", lease=_AsyncUnsharedLease(self._backend, key, tracked=False))


def async_leases(backend: Any) -> Any:
    """How ``backend`` coordinates processes: natively (the store), with lock keys
    (Redis/Valkey), or not at all (``memory://``, per-process)."""
    if backend.name == "store":
        return backend
    if backend.name == "memory":
        return AsyncUnsharedLeases(backend)
    return AsyncLockKeyLeases(backend)
