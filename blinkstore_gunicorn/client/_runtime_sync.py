"""The blocking counterparts of :mod:`~blinkstore_gunicorn.client._runtime_aio`, under the
same names: what the generated blocking modules use to wait, sleep and run in the background."""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from blinkstore_gunicorn.client.errors import CacheConnectionError

__all__ = ["check_decorated", "give_up", "load", "sleep", "spawn"]

logger = logging.getLogger("blinkstore_gunicorn.client")

#: Pause the calling thread (or greenlet, under gevent's monkey-patching).
sleep = time.sleep


def load(default_or_loader: Any) -> Any:
    """The value ``get_or_set`` stores: the loader's result, or the default itself."""
    return default_or_loader() if callable(default_or_loader) else default_or_loader


def spawn(work: Callable[..., None], *args: Any) -> None:
    """Run ``work(*args)`` in the background: a daemon thread."""
    threading.Thread(target=work, args=args, name="blinkstore-refresh", daemon=True).start()


def give_up(lease: Any, name: bytes) -> None:
    """Release ``lease`` after its loader failed, logging (not raising) a failure to do so."""
    try:
        lease.release()
    except CacheConnectionError as exc:
        logger.warning("could not release the lease on %r: %s", name, exc)


def check_decorated(func: Callable[..., Any]) -> None:
    """``Cache.cached`` takes plain functions only."""
    if inspect.iscoroutinefunction(func):
        raise TypeError(
            f"{func.__qualname__} is a coroutine function: decorate it with AsyncCache.cached"
        )
