"""``BLINKSTORE_URL`` parsing: which backend, where, and with which options.

=================================================  =========================================
URL                                                backend
=================================================  =========================================
``unix:///run/app/store.sock[?password=...]``       the Blink store over a Unix socket (RESP)
``tcp://host[:port][?password=...]``               the Blink store over TCP (port 8765)
``redis://``, ``rediss://``, ``valkey://``,        a Redis/Valkey server through redis-py
``valkeys://``                                     (URL passed on as redis-py understands it)
``redis+unix:///path/redis.sock[?db=0]``           Redis/Valkey on a Unix socket
``redis+cluster://...`` or ``redis://...?cluster=  Redis Cluster through ``redis.cluster``
true``
``memory://[name][?memory_limit=64MB]``            in-process, per process; ``name`` shares
                                                   one store between caches in the process
=================================================  =========================================

Store URLs also accept ``timeout`` and ``connect_timeout`` (seconds) and ``max_connections``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Final, Literal
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from blinkstore_gunicorn.client.errors import CacheConfigError

__all__ = [
    "DEFAULT_TCP_PORT",
    "ENV_VAR",
    "CacheURL",
    "mask_url",
    "parse_url",
    "resolve_url",
    "unix_url",
]

ENV_VAR: Final = "BLINKSTORE_URL"
DEFAULT_TCP_PORT: Final = 8765

_STORE_OPTIONS: Final = frozenset(
    {"password", "timeout", "connect_timeout", "max_connections", "shm"}
)
_MEMORY_OPTIONS: Final = frozenset({"memory_limit"})
_REDIS_SCHEMES: Final = frozenset(
    {"redis", "rediss", "valkey", "valkeys", "redis+unix", "valkey+unix"}
)
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})

NOT_CONFIGURED: Final = (
    "no cache store is configured. Either export BLINKSTORE_URL (e.g. "
    "BLINKSTORE_URL=unix:///run/myapp/blinkstore.sock for a running `blinkstore serve "
    "--unix ...`), or run under `gunicorn -c python:blinkstore_gunicorn.conf ...` (or "
    "`blinkstore run -- CMD`), which start a store and set it for you, or pass "
    "url='memory://' for tests and single-process development."
)

Kind = Literal["store", "redis", "memory"]


@dataclass(frozen=True)
class CacheURL:
    """A parsed cache URL. ``display`` is the URL with any password masked."""

    kind: Kind
    display: str
    unix_path: str | None = None
    host: str | None = None
    port: int | None = None
    password: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    redis_url: str | None = None
    cluster: bool = False
    memory_name: str | None = None

    def float_option(self, name: str) -> float | None:
        """A numeric query option (seconds), or None when absent."""
        raw = self.options.get(name)
        if raw is None:
            return None
        try:
            number = float(raw)
        except ValueError:
            raise CacheConfigError(
                f"{self.display}: {name}={raw!r} is not a number of seconds"
            ) from None
        if number <= 0:
            raise CacheConfigError(f"{self.display}: {name} must be > 0")
        return number

    def flag_option(self, name: str, default: bool) -> bool:
        """A yes/no query option (``on``/``off``, ``1``/``0``, ``true``/``false``...)."""
        raw = self.options.get(name)
        if raw is None:
            return default
        lowered = raw.lower()
        if lowered not in _TRUE | _FALSE:
            raise CacheConfigError(f"{self.display}: {name}={raw!r} must be on or off")
        return lowered in _TRUE

    def int_option(self, name: str) -> int | None:
        """A positive integer query option, or None when absent."""
        raw = self.options.get(name)
        if raw is None:
            return None
        if not raw.isdigit() or int(raw) < 1:
            raise CacheConfigError(f"{self.display}: {name}={raw!r} must be a positive integer")
        return int(raw)


def mask_url(url: str) -> str:
    """The URL with passwords (userinfo or ``?password=``) replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None and "password=" not in parts.query:
        return url
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hostport}"
    query = [(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query, True)]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe="*"), ""))


def _query(url: str, allowed: frozenset[str], display: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for key, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if key not in allowed:
            raise CacheConfigError(
                f"{display}: unknown option {key!r} (known: {', '.join(sorted(allowed))})"
            )
        options[key] = value
    return options


def _parse_store(url: str, scheme: str, display: str) -> CacheURL:
    parts = urlsplit(url)
    options = _query(url, _STORE_OPTIONS, display)
    password = options.pop("password", None)
    if parts.password is not None:
        password = unquote(parts.password)
    if scheme == "unix":
        # unix:///abs/path.sock has an empty netloc; unix://relative.sock keeps the netloc.
        path = unquote(parts.netloc.rpartition("@")[2] + parts.path)
        if not path:
            raise CacheConfigError(f"{display}: no socket path (use unix:///path/to/store.sock)")
        return CacheURL("store", display, unix_path=path, password=password, options=options)
    try:
        port = parts.port or DEFAULT_TCP_PORT
    except ValueError:
        raise CacheConfigError(f"{display}: invalid port") from None
    host = parts.hostname
    if not host:
        raise CacheConfigError(f"{display}: no host (use tcp://127.0.0.1:{DEFAULT_TCP_PORT})")
    return CacheURL("store", display, host=host, port=port, password=password, options=options)


def _parse_redis(url: str, scheme: str, display: str) -> CacheURL:
    parts = urlsplit(url)
    cluster = scheme.endswith("+cluster")
    base = scheme.removesuffix("+cluster")
    base = {
        "valkey": "redis",
        "valkeys": "rediss",
        "redis+unix": "unix",
        "valkey+unix": "unix",
    }.get(base, base)
    query: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "cluster":
            lowered = value.lower()
            if lowered not in _TRUE | _FALSE:
                raise CacheConfigError(f"{display}: cluster={value!r} must be true or false")
            cluster = cluster or lowered in _TRUE
        else:
            query.append((key, value))
    # Rebuilt by hand: urlunsplit drops the "//" of an empty netloc (unix:///path).
    redis_url = f"{base}://{parts.netloc}{parts.path}"
    if query:
        redis_url += "?" + urlencode(query)
    return CacheURL("redis", display, redis_url=redis_url, cluster=cluster)


def _parse_memory(url: str, display: str) -> CacheURL:
    parts = urlsplit(url)
    options = _query(url, _MEMORY_OPTIONS, display)
    name = unquote(parts.netloc + parts.path).strip("/") or None
    return CacheURL("memory", display, options=options, memory_name=name)


def parse_url(url: str) -> CacheURL:
    """Parse a cache URL; raise :class:`CacheConfigError` naming what is wrong."""
    if not isinstance(url, str) or "://" not in url:
        raise CacheConfigError(
            f"cache URL {url!r} is not a URL: use unix:///path.sock, tcp://host:port, "
            "redis://host:port/0 or memory://"
        )
    display = mask_url(url)
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("unix", "tcp"):
        return _parse_store(url, scheme, display)
    if scheme.removesuffix("+cluster") in _REDIS_SCHEMES:
        return _parse_redis(url, scheme, display)
    if scheme == "memory":
        return _parse_memory(url, display)
    raise CacheConfigError(
        f"{display}: unsupported scheme {scheme!r}: use unix://, tcp://, redis://, rediss://, "
        "valkey://, redis+unix://, redis+cluster:// or memory://"
    )


def resolve_url(url: str | None) -> CacheURL:
    """Parse ``url``, or ``$BLINKSTORE_URL`` when it is None; explain how to configure one."""
    if url is None:
        url = os.environ.get(ENV_VAR, "").strip()
        if not url:
            raise CacheConfigError(NOT_CONFIGURED)
    return parse_url(url)


def unix_url(path: str) -> str:
    """The ``unix://`` URL of a socket path (what the gunicorn plugin exports)."""
    return "unix://" + quote(os.path.abspath(path))
