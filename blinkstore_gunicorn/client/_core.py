"""What :class:`Cache` and :class:`AsyncCache` share: configuration, keys, TTLs, values,
error policy and the ``cached`` key builder. Neither I/O nor sync/async choices live here."""

from __future__ import annotations

import datetime
import hashlib
import inspect
import json
import logging
import math
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias, TypeVar

from blinkstore_gunicorn.client.backends import BackendOptions
from blinkstore_gunicorn.client.backends._resp import StoreSettings
from blinkstore_gunicorn.client.errors import (
    CacheConfigError,
    CacheConnectionError,
    CacheSerializationError,
)
from blinkstore_gunicorn.client.serializers import Serializer, resolve_serializer
from blinkstore_gunicorn.client.stampede import FlightPlan, now_ms, unwrap
from blinkstore_gunicorn.client.url import ENV_VAR, CacheURL, parse_url
from blinkstore_gunicorn.shm.reader import Fallback
from blinkstore_gunicorn.shm.reads import SharedReads

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "FALLBACK_URL",
    "MISSING",
    "TTL",
    "CacheCore",
    "K",
    "Key",
    "Message",
    "OnError",
    "configured_url",
    "decode_message",
    "normalize_stats",
    "reset_fallback_warning",
]

logger = logging.getLogger("blinkstore_gunicorn.client")

#: Seconds to wait for one reply, and for a connection to open (a local store answers in
#: microseconds; waiting longer only turns a dead store into stuck requests).
DEFAULT_TIMEOUT: Final = 2.0
DEFAULT_CONNECT_TIMEOUT: Final = 1.0
#: Keys fetched per SCAN call by keys() and clear().
SCAN_BATCH: Final = 500

Key: TypeAlias = str | bytes
K = TypeVar("K", bound=str | bytes)
TTL: TypeAlias = "int | float | datetime.timedelta | None"
OnError = Literal["raise", "miss"]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


#: Sentinel for "no value" where None is a legitimate cached value.
MISSING: Final = _Missing()


class _Unset:
    __slots__ = ()


_UNSET: Final = _Unset()
_GLOB_SPECIAL: Final = frozenset(b"*?[]\\")


#: Where every entry point goes when neither ``url=`` nor ``BLINKSTORE_URL`` names a store: one
#: in-process store shared by all clients of the process (a named ``memory://`` is shared, so a
#: script's ``Cache()``, the middleware and Django's sync and async clients see the same data).
FALLBACK_URL: Final = "memory://blinkstore"

_fallback_warned = False
_fallback_lock = threading.Lock()


def configured_url(url: str | None) -> str:
    """``url``, else ``$BLINKSTORE_URL``, else :data:`FALLBACK_URL` with one warning per process.

    The one rule for every entry point (``Cache()``, ``AsyncCache()``, the middleware, the
    Flask extension, the Django backend): a development server, a test or a script works
    without a store, like Django's default local-memory cache, and the warning makes sure
    nobody mistakes that per-process cache for the shared one in production.
    """
    if url is not None:
        return url
    from_env = os.environ.get(ENV_VAR, "").strip()
    if from_env:
        return from_env
    global _fallback_warned
    with _fallback_lock:
        warn, _fallback_warned = not _fallback_warned, True
    if warn:
        logger.warning(
            "BLINKSTORE_URL is not set: using an in-process memory:// cache. It is "
            "per-process, so workers do not share it. Run under `gunicorn -c "
            "python:blinkstore_gunicorn.conf` or `blinkstore run -- ...`, set BLINKSTORE_URL, "
            "or pass url=..., to share one cache."
        )
    return FALLBACK_URL


def reset_fallback_warning() -> None:
    """Allow the per-process fallback warning to be logged again (tests use this)."""
    global _fallback_warned
    with _fallback_lock:
        _fallback_warned = False


def _seconds(ttl: object) -> float:
    if isinstance(ttl, datetime.timedelta):
        return ttl.total_seconds()
    if isinstance(ttl, int | float) and not isinstance(ttl, bool):
        return float(ttl)
    raise TypeError(
        f"ttl must be seconds (int or float), a datetime.timedelta or None, not {ttl!r}"
    )


def ttl_ms(ttl: TTL) -> int | None:
    """A ``set`` TTL in whole milliseconds (at least 1); None means no expiry."""
    if ttl is None:
        return None
    seconds = _seconds(ttl)
    if not seconds > 0 or math.isinf(seconds):
        raise ValueError(f"ttl must be a finite number of seconds > 0, or None; got {ttl!r}")
    return max(1, round(seconds * 1000))


def expire_ms(ttl: TTL) -> int | None:
    """An ``expire``/``touch`` TTL: like :func:`ttl_ms`, but <= 0 means "expire now"."""
    if ttl is None:
        return None
    seconds = _seconds(ttl)
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"ttl must be a finite number of seconds, or None; got {ttl!r}")
    return 0 if seconds <= 0 else max(1, round(seconds * 1000))


def seconds_left(pttl: int) -> float | None:
    """A PTTL reply as :meth:`Cache.ttl` reports it."""
    if pttl == -2:
        return None
    if pttl == -1:
        return math.inf
    return pttl / 1000


def glob_escape(prefix: bytes) -> bytes:
    """``prefix`` with glob metacharacters escaped, for SCAN MATCH."""
    if not _GLOB_SPECIAL.intersection(prefix):
        return prefix
    return b"".join(b"\\" + bytes([c]) if c in _GLOB_SPECIAL else bytes([c]) for c in prefix)


def normalize_stats(info: Mapping[str, Any], backend: str) -> dict[str, Any]:
    """INFO plus backend-independent names: keys, used_memory, memory_limit, hits, misses,
    evictions, expirations (None when the backend does not report one)."""
    stats = dict(info)
    keys = 0
    for name, value in info.items():
        if name.startswith("db") and name[2:].isdigit() and isinstance(value, dict):
            keys += int(value.get("keys", 0))
    stats.update(
        backend=backend,
        keys=keys,
        used_memory=info.get("used_memory"),
        memory_limit=info.get("maxmemory"),
        hits=info.get("keyspace_hits"),
        misses=info.get("keyspace_misses"),
        evictions=info.get("evicted_keys"),
        expirations=info.get("expired_keys"),
    )
    return stats


class CacheCore:
    """Configuration and the pure helpers both cache classes use."""

    def __init__(
        self,
        url: str | None,
        *,
        namespace: str | None,
        serializer: str | Serializer | None,
        timeout: float | _Unset | None,
        connect_timeout: float | _Unset | None,
        on_error: OnError,
        max_connections: int | None,
        max_in_flight: int | None = None,
        attach_in_background: bool = False,
    ) -> None:
        self.url: CacheURL = parse_url(configured_url(url))
        if on_error not in ("raise", "miss"):
            raise CacheConfigError(f"on_error must be 'raise' or 'miss', not {on_error!r}")
        self.on_error: OnError = on_error
        self._raise = on_error == "raise"
        if namespace is not None and (not isinstance(namespace, str) or not namespace):
            raise CacheConfigError(f"namespace must be a non-empty str, not {namespace!r}")
        self.namespace = namespace
        self._prefix = namespace.encode("utf-8") + b":" if namespace else b""
        self.serializer = resolve_serializer(serializer)
        self._dumps = self.serializer.dumps
        self._loads = _envelope_aware(self.serializer.loads)
        self._warned_undecodable = False
        url_timeout = self.url.float_option("timeout")
        url_connect = self.url.float_option("connect_timeout")
        self._options = BackendOptions(
            timeout=_pick(timeout, url_timeout, DEFAULT_TIMEOUT),
            connect_timeout=_pick(connect_timeout, url_connect, DEFAULT_CONNECT_TIMEOUT),
            max_connections=max_connections or self.url.int_option("max_connections"),
            max_in_flight=max_in_flight,
            # A miss is a fine answer to a read during an outage; waiting is not.
            wait_on_reads=self._raise,
        )
        self._down = False
        #: Reads from the store's shared-memory region (a store on a Unix socket, Linux,
        #: unless ``?shm=off``); None: every read goes over the socket. ``AsyncCache`` maps
        #: the region from a thread, so that its event loop never waits for the store.
        self._shared = _shared_reads(self.url, attach_in_background, self._store_reachable)

    def __repr__(self) -> str:
        namespace = f", namespace={self.namespace!r}" if self.namespace else ""
        return f"{type(self).__name__}({self.url.display!r}{namespace})"

    def _store_reachable(self) -> bool:
        """Whether the store backend knows of no outage (the region is mapped only then: an
        attach would wait for a store that does not answer)."""
        backend = getattr(self, "backend", None)  # set by the subclass after this __init__
        return not isinstance(backend, StoreSettings) or backend.reachable

    # -- keys --------------------------------------------------------------------------------

    def _key(self, key: Key) -> bytes:
        if type(key) is str:
            return self._prefix + key.encode("utf-8", "surrogateescape")
        if isinstance(key, bytes):
            return self._prefix + key
        raise TypeError(f"cache keys are str or bytes, not {type(key).__name__}")

    def _strip(self, raw: bytes) -> str:
        """A stored key as keys() yields it: without the namespace, decoded (lossless)."""
        return raw[len(self._prefix) :].decode("utf-8", "surrogateescape")

    def _match(self, pattern: Key) -> bytes:
        if isinstance(pattern, str):
            pattern = pattern.encode("utf-8", "surrogateescape")
        elif not isinstance(pattern, bytes):
            raise TypeError(f"pattern must be str or bytes, not {type(pattern).__name__}")
        return glob_escape(self._prefix) + pattern

    def _items(self, mapping: Mapping[K, Any]) -> list[tuple[bytes, bytes]]:
        dumps = self._dumps
        return [(self._key(key), dumps(value)) for key, value in mapping.items()]

    # -- shared-memory reads (each returns None or MISSING where the store must answer) ------

    def _shared_many(self, names: list[bytes]) -> tuple[list[bytes | None], list[int]]:
        """Values from the region, and the positions (None in the list) to ask the store.

        All or nothing: values read from the region and values fetched later over the socket
        could come from different writes, so one key the region cannot answer sends them all.
        """
        shared = self._shared
        if shared is None:
            return [None] * len(names), list(range(len(names)))
        found = shared.get_many(names)
        if isinstance(found, list) and not any(isinstance(raw, Fallback) for raw in found):
            return [raw if isinstance(raw, bytes) else None for raw in found], []
        shared.fell_back()
        return [None] * len(names), list(range(len(names)))

    def _shared_exists(self, name: bytes) -> bool | None:
        shared = self._shared
        if shared is None:
            return None
        found = shared.exists(name)
        if isinstance(found, bool):
            return found
        shared.fell_back()
        return None

    def _shared_pttl(self, name: bytes) -> int | None:
        """PTTL as the store answers it (-2 absent, -1 no TTL, else ms left), or None."""
        shared = self._shared
        if shared is None:
            return None
        deadline = shared.expire_at(name)
        if deadline is None:
            return -2
        if not isinstance(deadline, int):
            shared.fell_back()
            return None
        return -1 if deadline == 0 else max(0, deadline - now_ms())

    def _shared_fresh(self, name: bytes, plan: FlightPlan) -> Any:
        """``get_or_set``'s hit from the region: the decoded value, or MISSING when the store
        must take part (a miss, a value due for refresh, one not in the region)."""
        shared = self._shared
        if shared is None:
            return MISSING
        raw = shared.get(name)
        if not isinstance(raw, bytes):
            return MISSING
        payload, fresh_until, compute_ms = unwrap(raw)
        if plan.needs_refresh(fresh_until, compute_ms):
            return MISSING
        return self._decode(payload, MISSING)

    def _found(self, keys: list[K], values: Iterable[bytes | None]) -> dict[K, Any]:
        found: dict[K, Any] = {}
        for key, raw in zip(keys, values, strict=True):
            if raw is not None:
                value = self._decode(raw, MISSING)
                if value is not MISSING:
                    found[key] = value
        return found

    def _decode(self, raw: bytes, default: Any) -> Any:
        """The value stored as ``raw``; one that cannot be decoded (corrupt, a counter too
        big for ``int``, another serializer's) raises, or is ``default`` with on_error="miss"."""
        try:
            return self._loads(raw)
        except Exception as exc:
            error = exc if isinstance(exc, CacheSerializationError) else None
            if error is None:
                error = CacheSerializationError(f"cannot decode a stored value: {exc}")
                error.__cause__ = exc
            if self._raise:
                raise error from error.__cause__
            if not self._warned_undecodable:
                self._warned_undecodable = True
                logger.warning(
                    "%s: a stored value cannot be decoded, served as a miss (logged once): %s: %s",
                    self.url.display,
                    type(error).__name__,
                    error,
                )
            return default

    # -- error policy ------------------------------------------------------------------------

    def _unreachable(self, exc: CacheConnectionError) -> None:
        """Raise ``exc`` (on_error="raise"), or log the outage once and let the caller miss.

        Either way the store's shared-memory region is not trusted any more: its store may
        be dead, and reads miss (or raise) during an outage as they do without the region.
        """
        if self._shared is not None:
            self._shared.distrust()
        if self._raise:
            raise exc
        if not self._down:
            self._down = True
            logger.warning(
                "cache store %s is unreachable; serving cache misses and skipping writes "
                "until it is back: %s",
                self.url.display,
                exc,
            )

    def _back(self) -> None:
        self._down = False
        logger.warning("cache store %s is reachable again", self.url.display)


def _envelope_aware(loads: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """``loads`` that also reads values get_or_set stored with a freshness envelope."""

    def load(raw: bytes) -> Any:
        if raw[:1] == b"\xfe":
            raw = unwrap(raw)[0]
        return loads(raw)

    return load


def _pick(explicit: float | _Unset | None, from_url: float | None, default: float) -> float | None:
    if not isinstance(explicit, _Unset):
        return explicit
    return from_url if from_url is not None else default


# -- the cached() decorator's keys ---------------------------------------------------------


def _canonical(value: Any) -> Any:
    """Arguments as JSON-able data that is the same in every process (unlike hash())."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, bytes):
        return {"__bytes__": value.hex()}
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    if isinstance(value, frozenset | set):
        return sorted((_canonical(item) for item in value), key=repr)
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    raise TypeError(type(value).__name__)


KeyBuilder: TypeAlias = Callable[[tuple[Any, ...], dict[str, Any]], str]


def key_builder(func: Callable[..., Any], key: str | Callable[..., str] | None) -> KeyBuilder:
    """How ``cached`` names the entry for one call of ``func``.

    * None: ``module.qualname:`` + a hash of the arguments (bound to the signature, so
      ``f(1)`` and ``f(x=1)`` share an entry); arguments must be JSON-like values.
    * a str: a template formatted with the bound arguments, e.g. ``"user:{user_id}"``.
    * a callable: called with the same arguments, returns the key.
    """
    signature = inspect.signature(func)
    name = f"{func.__module__}.{func.__qualname__}"

    def bound(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        binding = signature.bind(*args, **kwargs)
        binding.apply_defaults()
        return dict(binding.arguments)

    if callable(key):
        template = key

        def from_callable(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
            return template(*args, **kwargs)

        return from_callable
    if isinstance(key, str):
        pattern = key

        def from_template(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
            return pattern.format(**bound(args, kwargs))

        return from_template
    if key is not None:
        raise TypeError(f"key must be None, a str template or a callable, not {key!r}")

    def from_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        arguments = bound(args, kwargs)
        try:
            data = json.dumps(
                {k: _canonical(v) for k, v in arguments.items()},
                sort_keys=True,
                separators=(",", ":"),
            )
        except TypeError as exc:
            raise TypeError(
                f"cached({name}): cannot build a cache key from an argument of type {exc}; "
                "pass key='template {arg}' or key=callable to cached()"
            ) from None
        digest = hashlib.blake2b(data.encode("utf-8"), digest_size=16).hexdigest()
        return f"{name}:{digest}"

    return from_arguments


# -- pub/sub -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """A published message, as a subscription yields it: the channel (without the cache's
    namespace), the value published, and the pattern that matched (None for a channel)."""

    channel: str
    data: Any
    pattern: str | None = None


def decode_message(cache: CacheCore, raw: tuple[bytes, bytes, bytes | None]) -> Message:
    """The :class:`Message` for a backend's ``(channel, payload, pattern)``; a payload that
    cannot be decoded raises, or is handed over as bytes with on_error="miss"."""
    channel, payload, pattern = raw
    data = cache._decode(payload, payload)
    if pattern is not None:
        prefix = len(glob_escape(cache._prefix))
        return Message(cache._strip(channel), data, _text(pattern[prefix:]))
    return Message(cache._strip(channel), data)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _shared_reads(
    url: CacheURL, background: bool, reachable: Callable[[], bool]
) -> SharedReads | None:
    # ``shm`` is checked on tcp:// too (a URL may name either), where it changes nothing.
    wanted = url.flag_option("shm", True) if url.kind == "store" else False
    if not wanted or url.unix_path is None or not SharedReads.available():
        return None
    return SharedReads(url.unix_path, url.password, background, reachable)
