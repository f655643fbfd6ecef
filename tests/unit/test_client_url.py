"""BLINKSTORE_URL parsing."""

from __future__ import annotations

import pytest

from blinkstore_gunicorn.client import Cache, CacheConfigError
from blinkstore_gunicorn.client.url import parse_url, resolve_url, unix_url


def test_unix_url() -> None:
    url = parse_url("unix:///run/app/store.sock")
    assert url.kind == "store"
    assert url.unix_path == "/run/app/store.sock"
    assert url.password is None
    assert url.display == "unix:///run/app/store.sock"


def test_unix_url_with_password_masks_it() -> None:
    url = parse_url("unix:///s.sock?password=s3cret&timeout=0.5")
    assert url.password == "s3cret"
    assert url.float_option("timeout") == 0.5
    assert "s3cret" not in url.display
    assert "***" in url.display


def test_tcp_url_defaults_and_userinfo_password() -> None:
    url = parse_url("tcp://127.0.0.1")
    assert (url.host, url.port) == ("127.0.0.1", 8765)
    url = parse_url("tcp://:p%40ss@localhost:9000")
    assert (url.host, url.port, url.password) == ("localhost", 9000, "p@ss")
    assert "p%40ss" not in url.display and "p@ss" not in url.display


@pytest.mark.parametrize(
    ("raw", "redis_url", "cluster"),
    [
        ("redis://localhost:6379/0", "redis://localhost:6379/0", False),
        ("rediss://h:6380", "rediss://h:6380", False),
        ("valkey://h/2", "redis://h/2", False),
        ("valkeys://h", "rediss://h", False),
        ("redis+unix:///tmp/r.sock?db=1", "unix:///tmp/r.sock?db=1", False),
        ("redis+cluster://h:7000", "redis://h:7000", True),
        (
            "redis://h:7000?cluster=true&health_check_interval=5",
            "redis://h:7000?health_check_interval=5",
            True,
        ),
        ("valkey://h?cluster=no", "redis://h", False),
    ],
)
def test_redis_urls(raw: str, redis_url: str, cluster: bool) -> None:
    url = parse_url(raw)
    assert url.kind == "redis"
    assert url.redis_url == redis_url
    assert url.cluster is cluster


def test_memory_urls() -> None:
    assert parse_url("memory://").memory_name is None
    url = parse_url("memory://shared?memory_limit=1MB")
    assert url.memory_name == "shared"
    assert url.options == {"memory_limit": "1MB"}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("localhost:8765", "not a URL"),
        ("http://x", "unsupported scheme"),
        ("unix://", "no socket path"),
        ("tcp://:1", "no host"),
        ("tcp://h:99999", "invalid port"),
        ("unix:///s?colour=red", "unknown option 'colour'"),
        ("memory://?size=1", "unknown option 'size'"),
        ("redis://h?cluster=maybe", "cluster='maybe'"),
    ],
)
def test_bad_urls_say_what_is_wrong(raw: str, message: str) -> None:
    with pytest.raises(CacheConfigError, match=message):
        parse_url(raw)


def test_bad_numeric_options() -> None:
    with pytest.raises(CacheConfigError, match="timeout"):
        Cache("unix:///s.sock?timeout=soon")
    with pytest.raises(CacheConfigError, match="max_connections"):
        Cache("unix:///s.sock?max_connections=0")
    with pytest.raises(CacheConfigError, match="memory_limit"):
        Cache("memory://?memory_limit=lots")


def test_unconfigured_url_explains_how_to_configure(monkeypatch: pytest.MonkeyPatch) -> None:
    # What the CLI reports; Cache() itself falls back to memory:// (docs/client.md).
    monkeypatch.delenv("BLINKSTORE_URL", raising=False)
    with pytest.raises(CacheConfigError) as info:
        resolve_url(None)
    message = str(info.value)
    assert "BLINKSTORE_URL" in message
    assert "gunicorn -c python:blinkstore_gunicorn.conf" in message
    assert "memory://" in message


def test_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLINKSTORE_URL", "unix:///from/env.sock")
    assert resolve_url(None).unix_path == "/from/env.sock"
    assert Cache().url.unix_path == "/from/env.sock"


def test_unix_url_helper_round_trips() -> None:
    assert (
        parse_url(unix_url("/tmp/dir with space/s.sock")).unix_path == "/tmp/dir with space/s.sock"
    )


def test_url_options_and_keywords_precedence() -> None:
    cache = Cache("unix:///s.sock?timeout=3&connect_timeout=0.5")
    assert cache._options.timeout == 3.0
    assert cache._options.connect_timeout == 0.5
    cache = Cache("unix:///s.sock?timeout=3", timeout=None)
    assert cache._options.timeout is None
    cache = Cache("unix:///s.sock")
    assert (cache._options.timeout, cache._options.connect_timeout) == (2.0, 1.0)
