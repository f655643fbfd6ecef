"""Django cache backend on the shared store.

.. code-block:: python

    CACHES = {
        "default": {
            "BACKEND": "blinkstore_gunicorn.contrib.django.BlinkStoreCache",
            "LOCATION": "",  # empty: $BLINKSTORE_URL, else memory:// (per-process, warned)
            "TIMEOUT": 300,
            "KEY_PREFIX": "myapp",
        }
    }

It implements Django's whole cache API with Django's semantics (``TIMEOUT`` default, ``None``
= forever, ``0`` or less = expire now; ``KEY_PREFIX``, ``VERSION``, ``KEY_FUNCTION``; ``incr``
and ``decr`` raise ``ValueError`` for a missing key), and the ``a*`` methods are truly
asynchronous through :class:`~blinkstore_gunicorn.client.AsyncCache`.

Values are stored like Django's own Redis backend stores them (the client's
``serializer="pickle"``): integers as decimal text, so ``incr`` is atomic in the store, anything
else pickled, because Django caches arbitrary objects (``cache_page`` stores whole responses).
Each pickle is signed with ``SECRET_KEY`` (``SECRET_KEY_FALLBACKS`` accepted when reading) or
``OPTIONS["signing_key"]``, and a value whose signature fails is a miss, never unpickled: a
process that can write to the store but lacks the key cannot run code in the app.

``OPTIONS`` are keyword arguments for the client (``namespace``, ``on_error``, ``timeout``,
``serializer``...), plus ``signing_key`` and ``get_or_set`` (the single-flight options of
``get_or_set``). ``on_error`` defaults to ``"miss"``: a store outage reads as misses and
skipped writes, never a 500, and ``get_or_set`` always returns a value. A value the store
refuses for its size (``--max-value-size``) is not stored and the key's old value is deleted,
as Django's memcached backends do, with a warning naming the limit (``on_error="raise"``
raises :class:`~blinkstore_gunicorn.client.CacheValueTooLarge` instead).
"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.conf import settings
from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache
from django.core.exceptions import ImproperlyConfigured

from blinkstore_gunicorn.client import CacheError, CacheSignatureError, CacheValueTooLarge
from blinkstore_gunicorn.contrib._django_clients import Clients, clients_for, logger
from blinkstore_gunicorn.integrations._common import DEFAULT_ON_ERROR, resolve_url

__all__ = ["BlinkStoreCache"]

T = TypeVar("T")

# Options Django's BaseCache reads for its own (LocMem/file/db) culling; the store enforces a
# memory limit instead, so they are accepted and ignored rather than passed to the client.
_BASECACHE_OPTIONS = frozenset({"MAX_ENTRIES", "CULL_FREQUENCY"})
#: What ``OPTIONS["get_or_set"]`` may set (see the client's ``get_or_set``).
_FLIGHT_OPTIONS = frozenset({"lock_timeout", "wait_timeout", "stale_ttl", "early_refresh"})


def _flight_options(given: Any) -> dict[str, Any]:
    """``OPTIONS["get_or_set"]``: the client's single-flight options for ``get_or_set``."""
    if given is None:
        given = {}
    if not isinstance(given, Mapping) or not set(given) <= _FLIGHT_OPTIONS:
        raise ImproperlyConfigured(
            f"CACHES OPTIONS['get_or_set'] must be a dict with some of "
            f"{', '.join(sorted(_FLIGHT_OPTIONS))}; got {given!r}"
        )
    # Django's get_or_set returns a value, never a timeout: a caller that waited long enough
    # for another one's value computes it itself.
    return {**given, "on_wait_timeout": "compute"}


@dataclass(frozen=True)
class _Call:
    """One client method call that an operation plan asks its driver to make."""

    method: str
    args: tuple[Any, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)


class _Loader:
    """Django's ``default`` for ``get_or_set``: called at most once, its outcome remembered,
    so a cache problem after the call can still return the computed value."""

    def __init__(self, default: Any) -> None:
        self._default = default
        self.called = False
        self.failed = False
        self._value: Any = None

    def __call__(self) -> Any:
        if not self.called:
            self.called = True
            try:
                self._value = self._default() if callable(self._default) else self._default
            except BaseException:
                self.failed = True
                raise
        return self._value


# Each cache operation is written once, as a generator that yields the client calls it needs and
# receives their results; _run drives it with the sync client and _arun with the async one.
_Plan = Generator[_Call, Any, T]


class BlinkStoreCache(BaseCache):  # type: ignore[misc]
    """Django cache backend (``BACKEND: "blinkstore_gunicorn.contrib.django.BlinkStoreCache"``)."""

    def __init__(self, server: str, params: Mapping[str, Any]) -> None:
        super().__init__(params)
        options = {
            key: value
            for key, value in dict(params.get("OPTIONS") or {}).items()
            if key not in _BASECACHE_OPTIONS
        }
        options.setdefault("on_error", DEFAULT_ON_ERROR)
        options.setdefault("serializer", "pickle")
        self._flight = _flight_options(options.pop("get_or_set", None))
        self._signing_key: str | bytes | None = options.pop("signing_key", None)
        self._location = server or None
        self._options = options
        self._clients_cache: Clients | None = None

    @property
    def _clients(self) -> Clients:
        # Resolved on first use, not at construction: Django creates backends lazily anyway,
        # and the memory:// warning should only appear if the cache is actually used.
        if self._clients_cache is None:
            url = resolve_url(self._location)
            self._clients_cache = clients_for(url, self._options, self._signing_keys())
        return self._clients_cache

    def _signing_keys(self) -> tuple[str | bytes, ...]:
        """The key that signs pickles, then older keys still accepted when reading:
        ``OPTIONS["signing_key"]``, else ``SECRET_KEY`` and ``SECRET_KEY_FALLBACKS``."""
        if self._options["serializer"] != "pickle":
            return ()
        if self._signing_key is not None:
            return (self._signing_key,)
        try:
            secret_key = settings.SECRET_KEY
        except ImproperlyConfigured as exc:
            raise ImproperlyConfigured(
                f"{exc} The BlinkStoreCache backend signs the pickles it stores with "
                "SECRET_KEY; set it, or give the cache its own key in OPTIONS['signing_key']."
            ) from None
        return (secret_key, *getattr(settings, "SECRET_KEY_FALLBACKS", ()))

    # -- drivers -----------------------------------------------------------------------------

    # A call's exception is thrown into the plan at its ``yield``: the plan decides.

    def _run(self, plan: _Plan[T]) -> T:
        client = self._clients.sync()
        try:
            call = next(plan)
            while True:
                try:
                    reply = getattr(client, call.method)(*call.args, **call.options)
                except Exception as exc:
                    call = plan.throw(exc)
                else:
                    call = plan.send(reply)
        except StopIteration as done:
            result: T = done.value
            return result

    async def _arun(self, plan: _Plan[T]) -> T:
        client = await self._clients.for_loop()
        try:
            call = next(plan)
            while True:
                try:
                    reply = await getattr(client, call.method)(*call.args, **call.options)
                except Exception as exc:
                    call = plan.throw(exc)
                else:
                    call = plan.send(reply)
        except StopIteration as done:
            result: T = done.value
            return result

    # -- helpers -----------------------------------------------------------------------------

    def _ttl(self, timeout: Any) -> float | None:
        """Seconds to live for a Django timeout; 0 or less means "expire now"."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        if timeout is None:
            return None
        return float(timeout)

    @staticmethod
    def _expire_now(ttl: float | None) -> bool:
        return ttl is not None and ttl <= 0

    def _not_found(self, key: Any) -> ValueError:
        return ValueError(f"Key '{key}' not found.")

    # -- operation plans (written once for both drivers) ------------------------------------

    def _plan_add(self, key: Any, value: Any, timeout: Any, version: int | None) -> _Plan[bool]:
        made = self.make_and_validate_key(key, version=version)
        ttl = self._ttl(timeout)
        if self._expire_now(ttl):
            # Django: adding with timeout 0 succeeds when the key is absent, then it is gone.
            exists = yield _Call("exists", (made,))
            return not exists
        try:
            return bool((yield _Call("add", (made, value, ttl))))
        except CacheValueTooLarge as exc:
            self._refused(made, exc)
            return False

    def _plan_get(self, key: Any, default: Any, version: int | None) -> _Plan[Any]:
        return (
            yield from self._plan_read(self.make_and_validate_key(key, version=version), default)
        )

    @staticmethod
    def _plan_read(made: str, default: Any) -> _Plan[Any]:
        try:
            return (yield _Call("get", (made, default)))
        except CacheSignatureError:
            return default  # a pickle this app did not sign is never unpickled: a miss

    def _plan_set(self, key: Any, value: Any, timeout: Any, version: int | None) -> _Plan[bool]:
        """Store; False when the store refused the value for its size."""
        made = self.make_and_validate_key(key, version=version)
        ttl = self._ttl(timeout)
        if self._expire_now(ttl):
            yield _Call("delete", (made,))
            return True
        try:
            yield _Call("set", (made, value, ttl))
        except CacheValueTooLarge as exc:
            self._refused(made, exc)
            # Django's memcached backend deletes the old value rather than serve it stale.
            yield _Call("delete", (made,))
            return False
        return True

    def _refused(self, made: str, exc: CacheValueTooLarge) -> None:
        """A value the store refused for its size: raised with ``on_error="raise"``, else not
        stored (Django's memcached rule) and logged, since nothing else would say so."""
        if self._options["on_error"] == "raise":
            raise exc
        logger.warning("Django cache on %s: %s not stored: %s", self._clients.url, made, exc)

    def _plan_touch(self, key: Any, timeout: Any, version: int | None) -> _Plan[bool]:
        made = self.make_and_validate_key(key, version=version)
        # The client's touch already means "expire now" for <= 0 and "never" for None.
        return bool((yield _Call("touch", (made, self._ttl(timeout)))))

    def _plan_delete(self, key: Any, version: int | None) -> _Plan[bool]:
        made = self.make_and_validate_key(key, version=version)
        return bool((yield _Call("delete", (made,))))

    def _plan_get_many(self, keys: Iterable[Any], version: int | None) -> _Plan[dict[Any, Any]]:
        made = {self.make_and_validate_key(key, version=version): key for key in keys}
        if not made:
            return {}
        try:
            found: dict[Any, Any] = yield _Call("get_many", (list(made),))
        except CacheSignatureError:
            # Some value is not signed by this app: read the keys one by one to skip it.
            found = {}
            for name in made:
                value = yield from self._plan_read(name, self._missing_key)
                if value is not self._missing_key:
                    found[name] = value
        return {made[key]: value for key, value in found.items() if key in made}

    def _plan_has_key(self, key: Any, version: int | None) -> _Plan[bool]:
        made = self.make_and_validate_key(key, version=version)
        return bool((yield _Call("exists", (made,))))

    def _plan_incr(self, key: Any, delta: int, version: int | None) -> _Plan[int]:
        made = self.make_and_validate_key(key, version=version)
        if not (yield _Call("exists", (made,))):
            raise self._not_found(key)
        return int((yield _Call("incr", (made, delta))))

    def _plan_set_many(
        self, data: Mapping[Any, Any], timeout: Any, version: int | None
    ) -> _Plan[list[Any]]:
        made = {
            self.make_and_validate_key(key, version=version): value for key, value in data.items()
        }
        ttl = self._ttl(timeout)
        if not made:
            return []
        if self._expire_now(ttl):
            yield _Call("delete_many", (list(made),))
            return []
        try:
            yield _Call("set_many", (made, ttl))
        except CacheValueTooLarge:
            # Some value was refused for its size: store them one by one to learn which.
            failed = []
            for key, value in data.items():
                if not (yield from self._plan_set(key, value, timeout, version)):
                    failed.append(key)
            return failed
        return []  # Django's contract: the keys that failed to be inserted

    def _plan_delete_many(self, keys: Iterable[Any], version: int | None) -> _Plan[None]:
        made = [self.make_and_validate_key(key, version=version) for key in keys]
        if made:
            yield _Call("delete_many", (made,))

    def _plan_get_or_set(
        self, key: Any, default: Any, timeout: Any, version: int | None
    ) -> _Plan[Any]:
        ttl = self._ttl(timeout)
        if not self._expire_now(ttl):
            # The client's get_or_set is single-flight: on a miss one caller on the host computes
            # ``default`` while the others wait for its value, instead of all computing at once.
            made = self.make_and_validate_key(key, version=version)
            loader = _Loader(default)
            call = _Call("get_or_set", (made, loader, ttl), self._flight)
            try:
                try:
                    return (yield call)
                except CacheSignatureError:
                    # A pickle this app did not sign is a miss, which get_or_set overwrites.
                    yield _Call("delete", (made,))
                    return (yield call)
            except CacheError as exc:
                # Django's contract: get_or_set returns the default when the cache cannot help.
                if loader.failed or (
                    self._options["on_error"] == "raise"
                    and not isinstance(exc, CacheSignatureError)
                ):
                    raise
                self._clients.report(exc)
                return loader()
        value = yield from self._plan_get(key, self._missing_key, version)
        if value is not self._missing_key:
            return value
        # Timeout 0: Django still computes and returns the default, and stores nothing.
        return default() if callable(default) else default

    def _plan_clear(self) -> _Plan[None]:
        yield _Call("clear")

    def _plan_incr_version(self, key: Any, delta: int, version: int | None) -> _Plan[int]:
        if version is None:
            version = self.version
        old = self.make_and_validate_key(key, version=version)
        new = self.make_and_validate_key(key, version=version + delta)
        value = yield from self._plan_read(old, self._missing_key)
        if value is self._missing_key:
            raise self._not_found(key)
        # Unlike BaseCache's version, the entry keeps its remaining time to live.
        remaining = yield _Call("ttl", (old,))
        keep = None if remaining is None or math.isinf(remaining) else max(remaining, 0.001)
        yield _Call("set", (new, value, keep))
        yield _Call("delete", (old,))
        return version + delta

    # -- Django's cache API ------------------------------------------------------------------

    def add(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """Store ``value`` only if ``key`` is absent; return whether it was stored."""
        return self._run(self._plan_add(key, value, timeout, version))

    async def aadd(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """Async :meth:`add`."""
        return await self._arun(self._plan_add(key, value, timeout, version))

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        """Return the value of ``key``, or ``default``."""
        return self._run(self._plan_get(key, default, version))

    async def aget(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        """Async :meth:`get`."""
        return await self._arun(self._plan_get(key, default, version))

    def set(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        """Store ``value`` under ``key`` for ``timeout`` seconds (``None``: forever)."""
        self._run(self._plan_set(key, value, timeout, version))

    async def aset(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        """Async :meth:`set`."""
        await self._arun(self._plan_set(key, value, timeout, version))

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        """Give ``key`` a new timeout; return whether the key existed."""
        return self._run(self._plan_touch(key, timeout, version))

    async def atouch(
        self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """Async :meth:`touch`."""
        return await self._arun(self._plan_touch(key, timeout, version))

    def delete(self, key: Any, version: int | None = None) -> bool:
        """Remove ``key``; return whether it existed."""
        return self._run(self._plan_delete(key, version))

    async def adelete(self, key: Any, version: int | None = None) -> bool:
        """Async :meth:`delete`."""
        return await self._arun(self._plan_delete(key, version))

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        """Return ``{key: value}`` for the keys that are present."""
        return self._run(self._plan_get_many(keys, version))

    async def aget_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        """Async :meth:`get_many`."""
        return await self._arun(self._plan_get_many(keys, version))

    def has_key(self, key: Any, version: int | None = None) -> bool:
        """Return whether ``key`` is present."""
        return self._run(self._plan_has_key(key, version))

    async def ahas_key(self, key: Any, version: int | None = None) -> bool:
        """Async :meth:`has_key`."""
        return await self._arun(self._plan_has_key(key, version))

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        """Add ``delta`` to an integer value atomically; ``ValueError`` if ``key`` is missing."""
        return self._run(self._plan_incr(key, delta, version))

    async def aincr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        """Async :meth:`incr`."""
        return await self._arun(self._plan_incr(key, delta, version))

    def set_many(
        self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        """Store every item of ``data``; return the keys that failed (always none here)."""
        return self._run(self._plan_set_many(data, timeout, version))

    async def aset_many(
        self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        """Async :meth:`set_many`."""
        return await self._arun(self._plan_set_many(data, timeout, version))

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        """Remove every key in ``keys``."""
        self._run(self._plan_delete_many(keys, version))

    async def adelete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        """Async :meth:`delete_many`."""
        await self._arun(self._plan_delete_many(keys, version))

    def clear(self) -> None:
        """Remove every key (only the client ``namespace``'s keys when one is configured)."""
        self._run(self._plan_clear())

    async def aclear(self) -> None:
        """Async :meth:`clear`."""
        await self._arun(self._plan_clear())

    def incr_version(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        """Move ``key`` to version ``version + delta``, keeping its value and time to live."""
        return self._run(self._plan_incr_version(key, delta, version))

    async def aincr_version(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        """Async :meth:`incr_version`."""
        return await self._arun(self._plan_incr_version(key, delta, version))

    def get_or_set(
        self, key: Any, default: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> Any:
        """Return ``key``'s value; if missing, store ``default`` (called if callable) first."""
        return self._run(self._plan_get_or_set(key, default, timeout, version))

    async def aget_or_set(
        self, key: Any, default: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> Any:
        """Async :meth:`get_or_set` (a callable ``default`` is called, not awaited, like Django)."""
        return await self._arun(self._plan_get_or_set(key, default, timeout, version))

    def close(self, **kwargs: Any) -> None:
        """Keep the connections: Django calls this after every request, and they are pooled."""

    async def aclose(self, **kwargs: Any) -> None:
        """Async :meth:`close` (connections stay pooled)."""
