"""How values become bytes in the store and back.

The default encoding is designed so that values read back as the type they were written with,
on the Blink store and on plain Redis/Valkey alike:

============================  ===================================================
value                         stored bytes
============================  ===================================================
``int`` (not ``bool``)        ASCII decimal, no tag: ``b"42"`` (so ``INCRBY`` works)
``bytes`` / ``bytearray``     ``0xFA`` + the bytes
``str``                       ``0xFB`` + UTF-8
anything else (JSON)          ``0xFC`` + JSON (``orjson`` when installed)
anything else (pickle opt-in) ``0xFD`` + HMAC-SHA256 signature (32 bytes) + pickle
============================  ===================================================

The tag bytes ``0xFA``-``0xFD`` never start valid UTF-8, so text written by other clients
(``redis-cli SET k hello``, the Blink text protocol) is never mistaken for a tagged value: an
untagged value reads back as ``int`` when it is a plain decimal integer and as ``bytes``
otherwise.

Pickles are signed because unpickling runs code chosen by the writer: a pickle is only loaded
when its signature proves that a process holding the signing key wrote it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import pickle
from collections.abc import Callable, Iterable
from typing import Any, Final, Protocol, runtime_checkable

from blinkstore_gunicorn.client.errors import (
    CacheConfigError,
    CacheSerializationError,
    CacheSignatureError,
)

__all__ = [
    "SIGNING_KEY_ENV",
    "TAG_BYTES",
    "TAG_JSON",
    "TAG_PICKLE",
    "TAG_STR",
    "JSONSerializer",
    "PickleSerializer",
    "Serializer",
    "resolve_serializer",
]

TAG_BYTES: Final = 0xFA
TAG_STR: Final = 0xFB
TAG_JSON: Final = 0xFC
TAG_PICKLE: Final = 0xFD

_BYTES_PREFIX: Final = bytes([TAG_BYTES])
_STR_PREFIX: Final = bytes([TAG_STR])
_JSON_PREFIX: Final = bytes([TAG_JSON])
_PICKLE_PREFIX: Final = bytes([TAG_PICKLE])
_MINUS: Final = 0x2D

#: Where ``serializer="pickle"`` finds its signing key when none is passed.
SIGNING_KEY_ENV: Final = "BLINKSTORE_SIGNING_KEY"
_SIGNATURE_SIZE: Final = hashlib.sha256().digest_size
# Pickle signatures use a key derived for this purpose only, so that they can never be taken
# for signatures the same secret makes elsewhere (Django's SECRET_KEY signs cookies too).
_KEY_PURPOSE: Final = b"blinkstore_gunicorn.client.serializers.PickleSerializer"

logger = logging.getLogger("blinkstore_gunicorn.client")


@runtime_checkable
class Serializer(Protocol):
    """What a custom serializer provides: ``dumps(value) -> bytes`` and ``loads(bytes)``.

    ``loads`` also receives values the serializer did not write: counters written by
    ``incr`` arrive as ASCII decimal (``b"42"``), and values other clients wrote arrive as
    they are.
    """

    def dumps(self, value: Any) -> bytes:
        """Encode ``value``; raise ``TypeError`` for values it cannot encode."""
        ...

    def loads(self, data: bytes) -> Any:
        """Decode bytes read from the store."""
        ...


def _json_dumps_stdlib(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


_json_dumps: Callable[[Any], bytes] = _json_dumps_stdlib
_json_loads: Callable[[bytes], Any] = json.loads

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is an optional speed-up
    pass
else:
    # Without the pass-through options orjson would silently turn datetimes and dataclasses
    # into strings and dicts; with them such values fail exactly as with the stdlib json.
    _ORJSON_OPTIONS: Final = (
        orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
    )

    def _orjson_dumps(value: Any) -> bytes:
        return orjson.dumps(value, option=_ORJSON_OPTIONS)

    _json_dumps = _orjson_dumps
    _json_loads = orjson.loads


class _TaggedSerializer:
    """bytes, str and int natively (see the module docs); other values via :meth:`_dump_other`."""

    name = "tagged"

    def dumps(self, value: Any) -> bytes:
        """Encode ``value`` with its type tag."""
        kind = type(value)
        if kind is str:
            text: str = value
            return _STR_PREFIX + text.encode("utf-8")
        if kind is bytes:
            data: bytes = value
            return _BYTES_PREFIX + data
        if kind is int:
            return b"%d" % value
        if kind is bytearray or kind is memoryview:
            return _BYTES_PREFIX + bytes(value)
        return self._dump_other(value)

    def loads(self, data: bytes) -> Any:
        """Decode bytes written by :meth:`dumps` (or by another client, see module docs)."""
        if not data:
            return data
        tag = data[0]
        if tag == TAG_STR:
            return data[1:].decode("utf-8")
        if tag == TAG_BYTES:
            return data[1:]
        if tag == TAG_JSON:
            try:
                return _json_loads(data[1:])
            except ValueError as exc:
                raise CacheSerializationError(f"stored JSON value is corrupt: {exc}") from None
        if tag == TAG_PICKLE:
            return self._load_pickle(data)
        if data.isdigit() or (tag == _MINUS and len(data) > 1 and data[1:].isdigit()):
            return int(data)
        return data

    def _dump_other(self, value: Any) -> bytes:
        raise NotImplementedError

    def _load_pickle(self, data: bytes) -> Any:
        raise CacheSerializationError(
            "this value was written with serializer='pickle'; this client uses "
            f"serializer={self.name!r} and does not unpickle data from a shared store"
        )


class JSONSerializer(_TaggedSerializer):
    """The default: bytes/str/int natively, other JSON types (float, bool, None, list, dict)
    as JSON; anything else raises ``TypeError``. Tuples read back as lists (JSON)."""

    name = "json"

    def _dump_other(self, value: Any) -> bytes:
        try:
            return _JSON_PREFIX + _json_dumps(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"cannot cache a value of type {type(value).__name__!r} with the JSON "
                f"serializer ({exc}); cache bytes, str, int, float, bool, None, list or dict, "
                "or pass serializer='pickle' or your own Serializer"
            ) from None


class PickleSerializer(_TaggedSerializer):
    """Opt-in: bytes/str/int natively, everything else pickled (exact round-trips), signed.

    ``signing_key`` (str or bytes; default: the ``BLINKSTORE_SIGNING_KEY`` environment
    variable) is a secret that every process using the cache shares. Each pickle is stored
    with its HMAC-SHA256, and a value whose signature does not match is never unpickled:
    :meth:`loads` raises :class:`CacheSignatureError` (logged once). ``fallback_keys`` are
    older keys still accepted when reading, for key rotation.
    """

    name = "pickle"

    def __init__(
        self,
        signing_key: str | bytes | None = None,
        *,
        fallback_keys: Iterable[str | bytes] = (),
        protocol: int = pickle.HIGHEST_PROTOCOL,
    ) -> None:
        if signing_key is None:
            signing_key = os.environ.get(SIGNING_KEY_ENV)
        if not signing_key:
            raise CacheConfigError(
                "serializer='pickle' needs a signing key, a secret shared by every process "
                f"that uses the cache: set {SIGNING_KEY_ENV}, or pass "
                "serializer=PickleSerializer(signing_key=...); unsigned pickles would let "
                "whoever can write to the store run code in this process"
            )
        if isinstance(fallback_keys, str | bytes):
            raise CacheConfigError("fallback_keys is a list of keys, not one key")
        self.protocol = protocol
        self._signing = _derive_key(signing_key)
        self._accepted = [self._signing, *(_derive_key(key) for key in fallback_keys)]
        self._rejection_logged = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(protocol={self.protocol})"  # never the key

    def _dump_other(self, value: Any) -> bytes:
        try:
            data = pickle.dumps(value, protocol=self.protocol)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise TypeError(
                f"cannot pickle a value of type {type(value).__name__!r}: {exc}"
            ) from None
        return _PICKLE_PREFIX + _signature(self._signing, data) + data

    def _load_pickle(self, data: bytes) -> Any:
        signature = data[1 : 1 + _SIGNATURE_SIZE]
        payload = data[1 + _SIGNATURE_SIZE :]
        if not any(
            hmac.compare_digest(signature, _signature(key, payload)) for key in self._accepted
        ):
            self._log_rejection()
            raise CacheSignatureError(
                "a pickled value's signature does not match this client's signing key, so it "
                "was not unpickled (a process without the key wrote it, or a version of "
                "blinkstore-gunicorn that did not sign pickles)"
            )
        try:
            return pickle.loads(payload)
        except Exception as exc:
            raise CacheSerializationError(f"stored pickle is corrupt: {exc}") from None

    def _log_rejection(self) -> None:
        # Once per serializer: a foreign writer must not be able to flood the log.
        if not self._rejection_logged:
            self._rejection_logged = True
            logger.warning(
                "refused to unpickle a cached value whose signature does not match the signing "
                "key (a process without the key wrote it, or a version that did not sign "
                "pickles); such values read as misses in the Django backend and raise "
                "CacheSignatureError elsewhere. Logged once."
            )


def _derive_key(secret: str | bytes) -> bytes:
    raw = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hashlib.sha256(_KEY_PURPOSE + raw).digest()


def _signature(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()


def resolve_serializer(serializer: str | Serializer | None) -> Serializer:
    """``"json"`` (default), ``"pickle"`` or an object with ``dumps``/``loads``."""
    if serializer is None or serializer == "json":
        return JSONSerializer()
    if serializer == "pickle":
        return PickleSerializer()
    if isinstance(serializer, str):
        raise CacheConfigError(
            f"unknown serializer {serializer!r}: use 'json', 'pickle' or an object with "
            "dumps(value) -> bytes and loads(data) -> value"
        )
    if not isinstance(serializer, Serializer):
        raise CacheConfigError(
            f"serializer {serializer!r} needs dumps(value) -> bytes and loads(data) -> value"
        )
    return serializer
