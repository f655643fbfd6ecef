"""Helpers for the client tests: a store that can be killed and restarted on the same socket
(on top of ``harness.processes``), polling, and running an AsyncCache like a Cache."""

from __future__ import annotations

import asyncio
import functools
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from harness.processes import StoreProcess, start_blinkstore


class RestartableStore:
    """A ``blinkstore serve`` on a fixed Unix socket that a test can kill and start again."""

    def __init__(self, directory: Path, *extra_args: str) -> None:
        self.directory = directory
        self.extra_args = extra_args
        self.process: StoreProcess | None = None

    @property
    def url(self) -> str:
        """The store's ``unix://`` URL (the same across restarts)."""
        return f"unix://{self.directory / 'store.sock'}"

    def start(self) -> None:
        """Start a store on the socket path and wait until it listens."""
        self.process = start_blinkstore(*self.extra_args, directory=self.directory)

    def kill(self) -> None:
        """SIGKILL: the abrupt death a crash would be."""
        process, self.process = self.process, None
        if process is not None:
            process.stop(signal.SIGKILL)


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns a truthy value (returned) or fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


class Blocking:
    """Runs an :class:`AsyncCache` through the same calls as a :class:`Cache`, so one test body
    checks both clients (every call runs to completion on ``loop``)."""

    def __init__(self, cache: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._cache = cache
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._cache, name)
        if name == "keys":

            def keys(*args: Any) -> Iterator[str]:
                async def collect() -> list[str]:
                    return [key async for key in attr(*args)]

                return iter(self._loop.run_until_complete(collect()))

            return keys
        if name == "subscribe":
            return lambda *args, **kwargs: BlockingSubscription(attr(*args, **kwargs), self._loop)
        if name == "cached":

            def cached(*args: Any, **kwargs: Any) -> Any:
                decorate = attr(*args, **kwargs)

                def wrap(func: Callable[..., Any]) -> Callable[..., Any]:
                    # wraps(): same name and signature, so the same cache keys as with Cache.
                    @functools.wraps(func)
                    async def coroutine(*a: Any, **k: Any) -> Any:
                        return func(*a, **k)

                    wrapped = decorate(coroutine)

                    def call(*a: Any, **k: Any) -> Any:
                        return self._loop.run_until_complete(wrapped(*a, **k))

                    call.invalidate = lambda *a, **k: self._loop.run_until_complete(  # type: ignore[attr-defined]
                        wrapped.invalidate(*a, **k)
                    )
                    return call

                return wrap

            return cached
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            if asyncio.iscoroutine(result):
                return self._loop.run_until_complete(result)
            return result

        return call


class BlockingSubscription:
    """An ``AsyncSubscription`` used like a ``Subscription`` (what ``Blocking.subscribe``
    returns)."""

    def __init__(self, subscription: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._subscription = subscription
        self._loop = loop

    def open(self) -> None:
        self._loop.run_until_complete(self._subscription.open())

    def get(self, timeout: float | None = None) -> Any:
        return self._loop.run_until_complete(self._subscription.get(timeout))

    def close(self) -> None:
        self._loop.run_until_complete(self._subscription.close())

    def __enter__(self) -> BlockingSubscription:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
