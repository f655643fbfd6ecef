"""The clients behind the Django cache backend (``contrib/django.py``): one sync client and one
async client per event loop for each configuration, shared by every backend instance of the
process, and closed with their loop."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from blinkstore_gunicorn.client import AsyncCache, Cache, CacheError, PickleSerializer

__all__ = ["Clients", "clients_for", "logger"]

logger = logging.getLogger("blinkstore_gunicorn.contrib.django")


@dataclass
class Clients:
    """The clients of one configuration, shared by every backend instance in the process.

    Django builds a backend instance per thread (and per async context), and closes them after
    every request; the connections must outlive both, so they live here.
    """

    url: str
    options: dict[str, Any]
    _sync: Cache | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # An AsyncCache is bound to the loop that used it first; each entry lives as long as its
    # loop runs (async_to_sync runs every call in a new loop: its client goes with it).
    _async: dict[asyncio.AbstractEventLoop, _LoopClient] = field(default_factory=dict)
    _reported: set[str] = field(default_factory=set)

    def sync(self) -> Cache:
        client = self._sync
        if client is None:
            with self._lock:
                client = self._sync
                if client is None:
                    client = self._sync = Cache(self.url, **self.options)
        return client

    async def for_loop(self) -> AsyncCache:
        loop = asyncio.get_running_loop()
        entry = self._async.get(loop)
        if entry is not None:
            return entry.client
        # Loops may run in several threads (async_to_sync): the dict is shared, hence the lock.
        with self._lock:
            self._forget_closed_loops()
            entry = self._async[loop] = _LoopClient(AsyncCache(self.url, **self.options))
        entry.closer = self._close_at_loop_shutdown(loop, entry.client)
        await entry.closer.__anext__()
        return entry.client

    async def _close_at_loop_shutdown(
        self, loop: asyncio.AbstractEventLoop, client: AsyncCache
    ) -> AsyncGenerator[None, None]:
        # A loop has no "closing" callback, but asyncio.run (and so asgiref's async_to_sync,
        # uvicorn...) calls loop.shutdown_asyncgens() before loop.close(), which closes every
        # async generator still suspended: this one resumes there, in the loop, while its
        # connections can still be closed properly.
        try:
            yield
        finally:
            with self._lock:
                self._async.pop(loop, None)
            await client.close()

    def report(self, problem: CacheError) -> None:
        """Log a cache problem that was turned into a miss, once per kind of problem."""
        kind = type(problem).__name__
        if kind not in self._reported:
            self._reported.add(kind)
            logger.warning(
                "Django cache on %s: %s: %s; computing values without the cache "
                "(logged once per kind of problem)",
                self.url,
                kind,
                problem,
            )

    def _forget_closed_loops(self) -> None:
        """Drop the clients of loops closed without shutdown_asyncgens() (``loop.close()``).

        Their sockets belong to a closed loop, which can no longer close them; dropping the
        last reference lets the garbage collector do it.
        """
        for loop in [loop for loop in self._async if loop.is_closed()]:
            del self._async[loop]


@dataclass
class _LoopClient:
    """One loop's client, and the generator that closes it when the loop shuts down."""

    client: AsyncCache
    closer: AsyncGenerator[None, None] | None = None


_registry: dict[tuple[str, str, tuple[str | bytes, ...]], Clients] = {}
#: The number naming each configuration's memory:// store (a new signing key is no new store).
_memory_numbers: dict[tuple[str, str], int] = {}
_registry_lock = threading.Lock()


def clients_for(
    url: str, options: dict[str, Any], signing_keys: tuple[str | bytes, ...]
) -> Clients:
    """The clients of this configuration, made on first use."""
    config = (url, repr(sorted(options.items())))
    key = (*config, signing_keys)
    with _registry_lock:
        clients = _registry.get(key)
        if clients is None:
            if signing_keys:
                signing_key, *fallback_keys = signing_keys
                serializer = PickleSerializer(signing_key, fallback_keys=fallback_keys)
                options = {**options, "serializer": serializer}
            number = _memory_numbers.setdefault(config, len(_memory_numbers))
            clients = Clients(_shared_memory(url, number), options)
            _registry[key] = clients
        return clients


def _shared_memory(url: str, number: int) -> str:
    """Name a private ``memory://`` store so that the sync and async clients share it.

    Unnamed, each client would get its own store and ``aget`` would not see what ``set``
    wrote. Like LocMemCache, one configuration is one store for the whole process.
    """
    parts = urlsplit(url)
    if parts.scheme == "memory" and not parts.netloc:
        return urlunsplit(parts._replace(netloc=f"django-cache-{number}"))
    return url
