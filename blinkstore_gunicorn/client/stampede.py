"""Stampede protection for ``get_or_set``: one caller computes a missing key, the rest wait.

Three layers, each usable alone:

* :class:`LocalFlights` / :class:`AsyncLocalFlights` coalesce callers *inside* a process:
  threads or coroutines asking for the same key share one flight.
* Leases coordinate processes: ``_leases_aio.py`` (and ``_leases_sync.py``, generated from
  it). The store grants them natively (``BS.FETCH`` parks waiters server-side); lock keys
  build a weaker version from plain commands for Redis/Valkey; ``memory://`` needs none,
  being per-process (:class:`Unshared` only keeps one background refresh per key).
* The envelope (:func:`wrap` / :func:`unwrap`) stores when a value stops being fresh and how
  long its loader took, for stale-while-revalidate and early ("XFetch") refresh.
"""

from __future__ import annotations

import asyncio
import math
import random
import struct
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Hashable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

from blinkstore_gunicorn.client.errors import CacheStampedeTimeout

__all__ = [
    "ENVELOPE_TAG",
    "LOCK_SUFFIX",
    "TIMED_OUT",
    "AsyncLocalFlights",
    "Fetched",
    "FlightPlan",
    "LocalFlights",
    "Unshared",
    "should_refresh",
    "unwrap",
    "wrap",
]

T = TypeVar("T")

#: First byte of an enveloped value (the serializers use 0xFA-0xFD; none starts UTF-8).
ENVELOPE_TAG: Final = 0xFE
_HEADER: Final = struct.Struct(">BQI")  # tag, fresh-until (unix ms), loader duration (ms)

#: Suffix of the lock key used where the backend has no native leases.
LOCK_SUFFIX: Final = b":bs:lock"


def wrap(payload: bytes, fresh_until_ms: int, compute_ms: int) -> bytes:
    """``payload`` with its freshness deadline and loader duration in front."""
    return _HEADER.pack(ENVELOPE_TAG, fresh_until_ms, min(compute_ms, 0xFFFFFFFF)) + payload


def unwrap(raw: bytes) -> tuple[bytes, int | None, int]:
    """``(payload, fresh_until_ms, compute_ms)``; ``fresh_until_ms`` is None for a plain value."""
    if raw[:1] == b"\xfe" and len(raw) >= _HEADER.size:
        _, fresh_until_ms, compute_ms = _HEADER.unpack_from(raw)
        return raw[_HEADER.size :], fresh_until_ms, compute_ms
    return raw, None, 0


def should_refresh(
    now_ms: int,
    fresh_until_ms: int,
    compute_ms: int,
    beta: float | None,
    rand: Callable[[], float] = random.random,
) -> bool:
    """Whether a read at ``now_ms`` should refresh: the value is stale, or XFetch says so
    (``now - compute * beta * ln(U) >= fresh_until``, U uniform in (0, 1])."""
    if now_ms >= fresh_until_ms:
        return True
    if not beta:
        return False
    return now_ms - compute_ms * beta * math.log(1.0 - rand()) >= fresh_until_ms


def now_ms() -> int:
    """Wall-clock milliseconds (freshness deadlines are shared between processes)."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class FlightPlan:
    """The validated options of one ``get_or_set`` call, in milliseconds."""

    fresh_ms: int | None
    stale_ms: int
    lease_ms: int
    wait_ms: int
    early_refresh: float | None
    compute_on_timeout: bool

    @classmethod
    def make(
        cls,
        fresh_ms: int | None,
        *,
        lock_timeout: float,
        wait_timeout: float,
        stale_ttl: float | None,
        early_refresh: float | None,
        on_wait_timeout: str,
    ) -> FlightPlan:
        """Check the options; errors name the offending argument."""
        if not lock_timeout > 0:
            raise ValueError(f"lock_timeout must be > 0 seconds, not {lock_timeout!r}")
        if not wait_timeout >= 0:
            raise ValueError(f"wait_timeout must be >= 0 seconds, not {wait_timeout!r}")
        if stale_ttl is not None and not stale_ttl > 0:
            raise ValueError(f"stale_ttl must be > 0 seconds or None, not {stale_ttl!r}")
        if early_refresh is not None and not early_refresh > 0:
            raise ValueError(f"early_refresh must be a beta > 0 or None, not {early_refresh!r}")
        if (stale_ttl is not None or early_refresh is not None) and fresh_ms is None:
            raise ValueError("stale_ttl and early_refresh need a ttl: without one nothing expires")
        if on_wait_timeout not in ("raise", "compute"):
            raise ValueError(
                f"on_wait_timeout must be 'raise' or 'compute', not {on_wait_timeout!r}"
            )
        return cls(
            fresh_ms=fresh_ms,
            stale_ms=round(stale_ttl * 1000) if stale_ttl else 0,
            lease_ms=max(1, round(lock_timeout * 1000)),
            wait_ms=round(wait_timeout * 1000),
            early_refresh=early_refresh,
            compute_on_timeout=on_wait_timeout == "compute",
        )

    @property
    def enveloped(self) -> bool:
        """Whether values carry the envelope (needed to know when they stop being fresh)."""
        return self.stale_ms > 0 or self.early_refresh is not None

    @property
    def store_px(self) -> int | None:
        """The TTL the value is stored with: fresh time plus the stale window."""
        return None if self.fresh_ms is None else self.fresh_ms + self.stale_ms

    def encode(self, payload: bytes, compute_ms: int) -> bytes:
        """The bytes to store for a freshly computed value."""
        if not self.enveloped:
            return payload
        assert self.fresh_ms is not None
        return wrap(payload, now_ms() + self.fresh_ms, compute_ms)

    def needs_refresh(self, fresh_until_ms: int | None, compute_ms: int) -> bool:
        """Whether a value read now should be refreshed in the background."""
        if fresh_until_ms is None or not self.enveloped:
            return False
        return should_refresh(now_ms(), fresh_until_ms, compute_ms, self.early_refresh)

    def timeout_error(self, key: object) -> CacheStampedeTimeout:
        """What a waiter raises when nobody delivered within ``wait_timeout``."""
        return CacheStampedeTimeout(
            f"waited {self.wait_ms / 1000:g}s for another caller to compute {key!r}; "
            "raise wait_timeout, or pass on_wait_timeout='compute' to compute it yourself"
        )


# -- leases (the lease classes are in _leases_aio.py and, generated, _leases_sync.py) ------


Kind = Literal["hit", "lease", "timeout"]


@dataclass(frozen=True, slots=True)
class Fetched:
    """The outcome of asking for a key with a lease: its value, the lease, or a timeout."""

    kind: Kind
    value: bytes | None = None
    lease: Any = None  # SyncLease or AsyncLease


TIMED_OUT: Final = Fetched("timeout")


class Unshared:
    """Leases for a per-process backend (``memory://``): misses are always granted (the
    process's callers are already coalesced by :class:`LocalFlights`); refresh leases are
    held in this set so one refresh runs at a time per key."""

    lock = threading.Lock()
    held: set[tuple[int, bytes]] = set()

    @classmethod
    def take(cls, store: object, key: bytes) -> bool:
        """Hold the refresh lease on ``key`` of ``store``; False if it is already held."""
        with cls.lock:
            if (id(store), key) in cls.held:
                return False
            cls.held.add((id(store), key))
            return True

    @classmethod
    def give_back(cls, store: object, key: bytes) -> None:
        """Let the refresh lease on ``key`` of ``store`` go."""
        with cls.lock:
            cls.held.discard((id(store), key))


# -- coalescing inside one process -----------------------------------------------------------


class LocalFlights:
    """Threads asking for the same key share one flight: the first runs it, the rest wait."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Hashable, Future[Any]] = {}

    def run(self, key: Hashable, flight: Callable[[], T], wait_s: float, plan: FlightPlan) -> T:
        """``flight()``'s result, computed once for every concurrent caller with ``key``."""
        with self._lock:
            future = self._flights.get(key)
            leader = future is None
            if future is None:
                future = self._flights[key] = Future()
        if not leader:
            try:
                result: T = future.result(timeout=wait_s)
            except FutureTimeout:
                if plan.compute_on_timeout:
                    return flight()
                raise plan.timeout_error(key) from None
            return result
        try:
            value = flight()
        except BaseException as exc:
            future.set_exception(exc)
            raise
        else:
            future.set_result(value)
            return value
        finally:
            with self._lock:
                del self._flights[key]


class AsyncLocalFlights:
    """Coroutines asking for the same key share one flight (per event loop)."""

    def __init__(self) -> None:
        self._by_loop: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[Hashable, asyncio.Future[Any]]
        ] = weakref.WeakKeyDictionary()

    async def run(
        self,
        key: Hashable,
        flight: Callable[[], Awaitable[T]],
        wait_s: float,
        plan: FlightPlan,
    ) -> T:
        """``await flight()``'s result, computed once for every concurrent caller with ``key``."""
        loop = asyncio.get_running_loop()
        flights = self._by_loop.setdefault(loop, {})
        deadline = loop.time() + wait_s
        while (future := flights.get(key)) is not None:
            try:
                # Shielded: a waiter's timeout or cancellation must not cancel the leader.
                result: T = await asyncio.wait_for(
                    asyncio.shield(future), max(0.0, deadline - loop.time())
                )
            except asyncio.TimeoutError:
                if plan.compute_on_timeout:
                    return await flight()
                raise plan.timeout_error(key) from None
            except asyncio.CancelledError:
                if future.cancelled():
                    continue  # the leader was cancelled, not us: the next caller leads
                raise
            return result
        future = flights[key] = loop.create_future()
        try:
            value = await flight()
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(exc)
                future.exception()  # retrieved: the leader re-raises it itself
            raise
        else:
            future.set_result(value)
            return value
        finally:
            del flights[key]
