"""The near cache's sans-IO parts: the upstream setting, the reply reader, the key routing."""

from __future__ import annotations

import pytest

from blinkstore_gunicorn.config import ConfigError, StoreSettings
from blinkstore_gunicorn.server.upstream.route import ALL, written_keys
from blinkstore_gunicorn.server.upstream.wire import Err, FrameReader, Push
from blinkstore_gunicorn.supervision.supervisor import StoreSupervisor
from blinkstore_gunicorn.upstream_url import parse_upstream


def test_upstream_urls() -> None:
    address = parse_upstream("rediss://app:pa%3Ass@cache.internal:6380/3")
    assert (address.host, address.port, address.db, address.tls) == (
        "cache.internal",
        6380,
        3,
        True,
    )
    assert (address.username, address.password) == ("app", "pa:ss")
    assert address.display == "rediss://app@cache.internal:6380/3"
    assert parse_upstream("valkey://h").display == "redis://h:6379/0"
    assert parse_upstream("redis+unix:///run/r.sock?db=2").unix_path == "/run/r.sock"


@pytest.mark.parametrize(
    "url",
    [
        "http://:hunter2@h",
        "redis://:hunter2@h:port",
        "redis://:hunter2@h/x",
        "redis://:hunter2@",
        "redis://:hunter2@cache..internal:6379/0",  # no name to look up: refused at start
    ],
)
def test_a_bad_upstream_is_refused_by_name_without_its_password(url: str) -> None:
    with pytest.raises(ConfigError) as raised:
        StoreSettings.from_mapping({"upstream": url})
    assert str(raised.value).startswith("upstream: ")
    assert "hunter2" not in str(raised.value)


def test_the_upstream_url_never_reaches_a_command_line() -> None:
    settings = StoreSettings.from_mapping({"upstream": "redis://:hunter2@h/0", "unix": "/t/s"})
    assert "hunter2" not in " ".join(settings.to_argv())
    assert settings.describe()["upstream"] == "redis://h:6379/0"
    supervisor = StoreSupervisor(None, settings.to_argv(), upstream=settings.upstream)  # type: ignore[arg-type]
    assert supervisor.store_env["BLINKSTORE_UPSTREAM"] == "redis://:hunter2@h/0"


def test_frames_of_resp3_replies_and_pushes() -> None:
    reader = FrameReader()
    stream = (
        b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n"
        b"$5\r\nhello\r\n:42\r\n_\r\n-ERR no\r\n%1\r\n+a\r\n#t\r\n>2\r\n$10\r\ninvalidate\r\n_\r\n"
    )
    reader.feed(stream[:20])
    assert reader.frames() == []
    reader.feed(stream[20:])
    frames = reader.frames()
    values = [value for _, value in frames]
    assert values == [[b"invalidate", [b"k"]], b"hello", 42, None, "ERR no", ["a", True],
                      [b"invalidate", None]]  # fmt: skip
    assert isinstance(values[0], Push) and isinstance(values[4], Err)
    assert b"".join(raw for raw, _ in frames) == stream


def test_what_a_forwarded_command_invalidates() -> None:
    assert written_keys([b"SET", b"k", b"v"]) == [b"k"]
    assert written_keys([b"GET", b"k"]) == []
    assert written_keys([b"mset", b"a", b"1", b"b", b"2"]) == [b"a", b"b"]
    assert written_keys([b"DEL", b"a", b"b"]) == [b"a", b"b"]
    assert written_keys([b"EVAL", b"return 1", b"2", b"x", b"y", b"arg"]) == [b"x", b"y"]
    assert written_keys([b"FLUSHDB"]) is ALL
    assert written_keys([b"NOSUCH", b"k", b"0"]) is ALL  # unknown here: flush
    assert written_keys([b"GEOADD", b"k", b"0", b"0", b"m"]) == [b"k"]
    assert written_keys([b"GEORADIUS", b"k", b"0", b"0", b"1", b"m", b"STORE", b"d"]) is ALL
    assert written_keys([b"GEOSEARCHSTORE", b"d", b"k", b"FROMMEMBER", b"m"]) == [b"d", b"k"]
    assert written_keys([b"GEOSEARCH", b"k", b"FROMMEMBER", b"m"]) == []
    assert written_keys([b"PFADD", b"k", b"v"]) == [b"k"]
    assert written_keys([b"SETRANGE", b"k", b"0", b"v"]) == [b"k"]
    assert written_keys([b"SORT", b"src", b"STORE", b"dst"]) is ALL  # movable keys
    assert written_keys([b"GETRANGE", b"k", b"0", b"1"]) == []
