"""What the asyncio sources need from asyncio, under the names the generated blocking modules
import from :mod:`~blinkstore_gunicorn.client._runtime_sync` (see ``scripts/unasync.py``)."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from blinkstore_gunicorn.client import _runtime_sync
from blinkstore_gunicorn.client.errors import CacheConnectionError

__all__ = ["check_decorated", "give_up", "load", "sleep", "spawn"]

logger = logging.getLogger("blinkstore_gunicorn.client")
#: Background tasks, referenced until done (the loop keeps only weak references).
_BACKGROUND: set[asyncio.Task[None]] = set()

#: Pause the calling coroutine.
sleep = asyncio.sleep


async def load(default_or_loader: Any) -> Any:
    """The value ``get_or_set`` stores: the loader's result (awaited if it is awaitable), or
    the default itself."""
    value = _runtime_sync.load(default_or_loader)
    if inspect.isawaitable(value):
        value = await value
    return value


def spawn(work: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None:
    """Run ``work(*args)`` in the background: a task of the running loop."""
    task = asyncio.get_running_loop().create_task(work(*args))
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


async def give_up(lease: Any, name: bytes) -> None:
    """Release ``lease`` after its loader failed, logging (not raising) a failure to do so.

    Shielded: a cancelled caller still hands the lease on at once.
    """
    try:
        await asyncio.shield(lease.release())
    except (CacheConnectionError, asyncio.CancelledError) as exc:
        logger.warning("could not release the lease on %r: %r", name, exc)


def check_decorated(func: Callable[..., Any]) -> None:
    """``AsyncCache.cached`` takes coroutine functions only."""
    if not inspect.iscoroutinefunction(func):
        raise TypeError(
            f"{func.__qualname__} is not a coroutine function: decorate it with Cache.cached"
        )
