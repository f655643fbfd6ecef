"""The store's locks (``BLINK.LOCK*``, see docs/locks.md) for :class:`AsyncStoreBackend`.

A lock is asked for on an unshared connection (a waiting ``BLINK.LOCK`` is parked in the
store, and would hold up every reply pipelined behind it) and that connection is kept out of
the spares while the lock is held: the store releases the locks of a closed connection, so a
killed process frees its locks at once. A server without the ``BLINK.*`` commands (Redis or
Valkey behind a ``unix://`` or ``tcp://`` URL) gets lock keys instead.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from blinkstore_gunicorn.client._locks_aio import AsyncKeyLocks, AsyncLockHold
from blinkstore_gunicorn.client.backends import _resp
from blinkstore_gunicorn.client.errors import CacheConnectionError, CacheResponseError

if TYPE_CHECKING:
    from blinkstore_gunicorn.client.backends.store_async import AsyncStoreBackend
    from blinkstore_gunicorn.client.backends.store_pipeline import Pipeline

__all__ = ["AsyncStoreLocks"]


class AsyncStoreLocks:
    """``BLINK.LOCK`` and ``BLINK.LOCKTOKEN`` over one backend's connections."""

    def __init__(self, backend: AsyncStoreBackend) -> None:
        self._backend = backend
        #: Lock keys, once the server turned out to be Redis/Valkey (no BLINK.* commands).
        self._key_locks: AsyncKeyLocks | None = None

    async def lock(self, name: bytes, px: int | None, wait_ms: int | None) -> AsyncLockHold | None:
        """The lock, held on its own connection until it is released, or None when it stays
        taken for ``wait_ms`` (0: no wait; None: no limit)."""
        if self._key_locks is not None:
            return await self._key_locks.lock(name, px, wait_ms)
        backend = self._backend
        timeout = _resp.lock_reply_timeout(backend._timeout, wait_ms)
        payload = _resp.cmd_lock(name, px, wait_ms)
        reply, pipeline = await backend._alone(payload, timeout, True, parked=wait_ms != 0)
        if not isinstance(reply, int):
            backend._give_back(pipeline)
        if _resp.is_unknown_command(reply):
            self._key_locks = AsyncKeyLocks(backend)
            return await self._key_locks.lock(name, px, wait_ms)
        token = _resp.lock_token(reply)
        return None if token is None else _AsyncStoreLock(backend, pipeline, name, token)

    async def lock_token(self, name: bytes) -> bytes | None:
        """The holder's token, or None when the lock is free."""
        if self._key_locks is None:
            try:
                return _resp.lock_token(await self._backend._request(_resp.cmd_locktoken(name)))
            except CacheResponseError as exc:
                if not _resp.is_unknown_command_error(exc):
                    raise
                self._key_locks = AsyncKeyLocks(self._backend)
        return await self._key_locks.lock_token(name)


class _AsyncStoreLock:
    """A lock granted on ``pipeline``, kept unshared while the lock is held."""

    __slots__ = ("_backend", "_name", "_pipeline", "token")

    def __init__(
        self, backend: AsyncStoreBackend, pipeline: Pipeline, name: bytes, token: bytes
    ) -> None:
        self._backend, self._pipeline, self._name, self.token = backend, pipeline, name, token

    async def _ask(self, payload: bytes) -> bool:
        """Whether the store answered 1; False when the connection is lost (and the lock
        with it: the store releases the locks of a closed connection)."""
        pipeline = self._pipeline
        try:
            reply = await asyncio.wait_for(pipeline.request(payload), self._backend._timeout)
        except (CacheConnectionError, asyncio.TimeoutError):
            pipeline.close()
            return False
        except BaseException:
            pipeline.close()
            raise
        return _resp.as_int(_resp.check(reply)) == 1

    async def release(self) -> bool:
        """BLINK.UNLOCK: whether the lock was still ours; the connection goes back either way."""
        try:
            return await self._ask(_resp.cmd_unlock(self._name, self.token))
        finally:
            self._backend._give_back(self._pipeline)

    async def extend(self, ms: int, replace: bool) -> bool:
        """BLINK.LOCKEXTEND: ``ms`` more (``replace``: from now); whether the lock was ours."""
        return await self._ask(_resp.cmd_lockextend(self._name, self.token, ms, replace))
