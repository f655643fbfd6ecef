"""Value encoding: tags, JSON, pickle opt-in, custom serializers."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import hashlib
import hmac
import pickle
from typing import Any

import pytest

from blinkstore_gunicorn.client import (
    Cache,
    CacheConfigError,
    CacheSerializationError,
    CacheSignatureError,
    JSONSerializer,
    PickleSerializer,
)
from blinkstore_gunicorn.client import serializers as ser
from blinkstore_gunicorn.client.serializers import resolve_serializer


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        (42, b"42"),
        (-7, b"-7"),
        (b"raw", b"\xfaraw"),
        ("text", b"\xfbtext"),
        (bytearray(b"ba"), b"\xfaba"),
        (1.5, b"\xfc1.5"),
        (True, b"\xfctrue"),
        (None, b"\xfcnull"),
        ([1, "a"], b'\xfc[1,"a"]'),
    ],
)
def test_stored_form(value: Any, stored: bytes) -> None:
    assert JSONSerializer().dumps(value) == stored


def test_foreign_values_read_sensibly() -> None:
    loads = JSONSerializer().loads
    assert loads(b"12") == 12
    assert loads(b"-12") == -12
    assert loads(b"hello") == b"hello"  # written by redis-cli or the text protocol
    assert loads(b"") == b""
    assert loads(b"-") == b"-"
    assert loads(b"1_000") == b"1_000"  # int() would accept it; a counter never looks so
    assert loads(b" 1") == b" 1"
    assert loads(b"1.5") == b"1.5"


def test_json_round_trips_and_tuple_becomes_list() -> None:
    s = JSONSerializer()
    value = {"a": [1, 2.5, None, True, {"b": "ü"}], "t": (1, 2)}
    assert s.loads(s.dumps(value)) == {"a": [1, 2.5, None, True, {"b": "ü"}], "t": [1, 2]}


@dataclasses.dataclass
class Point:
    x: int


@pytest.mark.parametrize(
    "value",
    [object(), {1, 2}, datetime.datetime(2024, 1, 1), Point(1), decimal.Decimal("1.1"), [object()]],
    ids=["object", "set", "datetime", "dataclass", "decimal", "nested"],
)
def test_json_refuses_other_types_with_a_clear_type_error(value: Any) -> None:
    with pytest.raises(TypeError, match="serializer='pickle'"):
        JSONSerializer().dumps(value)


def test_json_without_orjson_behaves_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ser, "_json_dumps", ser._json_dumps_stdlib)
    s = JSONSerializer()
    assert s.dumps([1, "a"]) == b'\xfc[1,"a"]'
    with pytest.raises(TypeError, match="serializer='pickle'"):
        s.dumps(datetime.datetime(2024, 1, 1))


KEY = "a secret every process of the app shares"


def test_pickle_is_opt_in() -> None:
    pickled = PickleSerializer(KEY).dumps({1, 2})
    assert pickled[0] == ser.TAG_PICKLE
    assert PickleSerializer(KEY).loads(pickled) == {1, 2}
    assert PickleSerializer(KEY).loads(PickleSerializer(KEY).dumps((1, 2))) == (1, 2)
    with pytest.raises(CacheSerializationError, match="serializer='pickle'"):
        JSONSerializer().loads(pickled)
    # The pickle serializer still reads what the JSON one wrote.
    assert PickleSerializer(KEY).loads(JSONSerializer().dumps([1])) == [1]


def test_corrupt_values() -> None:
    with pytest.raises(CacheSerializationError):
        JSONSerializer().loads(b"\xfc{not json")
    with pytest.raises(CacheSerializationError):
        PickleSerializer(KEY).loads(b"\xfdgarbage")


def test_pickles_are_signed_and_checked_before_loading() -> None:
    serializer = PickleSerializer(KEY)
    data = pickle.dumps({"a": 1}, protocol=pickle.HIGHEST_PROTOCOL)
    stored = serializer.dumps({"a": 1})
    # 0xFD, HMAC-SHA256 over the pickle with a key derived from KEY, the pickle.
    assert stored[33:] == data
    assert stored[1:33] == hmac.new(ser._derive_key(KEY), data, hashlib.sha256).digest()
    assert serializer.loads(stored) == {"a": 1}
    tampered = stored[:-2] + b"\x02" + stored[-1:]
    not_ours = [
        b"\xfd" + data,  # unsigned: what versions before signing wrote
        b"\xfd" + bytes(32) + data,
        tampered,
        PickleSerializer("another key").dumps({"a": 1}),
        b"\xfd",
    ]
    for value in not_ours:
        with pytest.raises(CacheSignatureError, match="signing key"):
            serializer.loads(value)


def test_signature_failures_are_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    serializer = PickleSerializer(KEY)
    for _ in range(3):
        with pytest.raises(CacheSignatureError):
            serializer.loads(b"\xfd" + pickle.dumps(1))
    assert caplog.text.count("refused to unpickle") == 1


def test_fallback_keys_rotate_the_signing_key() -> None:
    written = PickleSerializer("old").dumps({1})
    rotated = PickleSerializer("new", fallback_keys=["old"])
    assert rotated.loads(written) == {1}
    with pytest.raises(CacheSignatureError):
        PickleSerializer("old").loads(rotated.dumps({2}))  # new values use the new key
    assert PickleSerializer(b"new").loads(rotated.dumps({2})) == {2}  # str and bytes keys agree
    with pytest.raises(CacheConfigError, match="list of keys"):
        PickleSerializer("new", fallback_keys="old")


def test_pickle_needs_a_signing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BLINKSTORE_SIGNING_KEY", raising=False)
    with pytest.raises(CacheConfigError, match="BLINKSTORE_SIGNING_KEY"):
        Cache("memory://", serializer="pickle")
    with pytest.raises(CacheConfigError, match="BLINKSTORE_SIGNING_KEY"):
        PickleSerializer("")
    monkeypatch.setenv("BLINKSTORE_SIGNING_KEY", KEY)
    cache = Cache("memory://", serializer="pickle")
    cache.set("k", {1, 2})
    assert PickleSerializer(KEY).loads(cache.backend.get(b"k") or b"") == {1, 2}
    assert KEY not in repr(cache.serializer)


class Upper:
    """A custom serializer: str only, stored upper-cased."""

    def dumps(self, value: Any) -> bytes:
        if not isinstance(value, str):
            raise TypeError("str only")
        return value.upper().encode()

    def loads(self, data: bytes) -> Any:
        return data.decode()


def test_custom_serializer_is_used() -> None:
    cache = Cache("memory://", serializer=Upper())
    cache.set("k", "hello")
    assert cache.get("k") == "HELLO"
    with pytest.raises(TypeError):
        cache.set("k", 1)


def test_resolve_serializer(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(resolve_serializer(None), JSONSerializer)
    assert isinstance(resolve_serializer("json"), JSONSerializer)
    monkeypatch.setenv("BLINKSTORE_SIGNING_KEY", KEY)
    assert isinstance(resolve_serializer("pickle"), PickleSerializer)
    with pytest.raises(CacheConfigError, match="unknown serializer"):
        resolve_serializer("yaml")
    with pytest.raises(CacheConfigError, match="dumps"):
        resolve_serializer(object())  # type: ignore[arg-type]
