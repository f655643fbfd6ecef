"""Streams through redis-py: the same code against redis-server and ``blinkstore serve``, in
RESP2 and RESP3; both servers must give the same answers (RQ keeps its job results so)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from harness.gunicorn import wait_until
from harness.processes import RedisProcess, StoreProcess, resp_command
from tests.support.processes import resp_server_process

WRONGTYPE = r"^WRONGTYPE Operation against a key holding the wrong kind of value$"
INVALID_ID = r"^Invalid stream ID specified as stream command argument$"


@pytest.fixture(scope="module", params=["store", "redis"])
def server(request: pytest.FixtureRequest) -> Iterator[StoreProcess | RedisProcess]:
    with resp_server_process(request.param) as process:
        yield process


@pytest.fixture(params=[2, 3])
def client(
    server: StoreProcess | RedisProcess, request: pytest.FixtureRequest
) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(server.url, protocol=request.param, socket_timeout=10) as connection:
        connection.flushdb()
        yield connection


def listed(reply: object) -> list[Any]:
    """A reply that must be a list (redis-py's stubs allow None)."""
    assert isinstance(reply, list)
    return reply


def entry(entry_id: str, **fields: str) -> tuple[bytes, dict[bytes, bytes]]:
    return entry_id.encode(), {k.encode(): v.encode() for k, v in fields.items()}


def test_xadd_ids_and_ranges(client: redis.Redis) -> None:
    assert client.xadd("s", {"a": "1"}, id="1-1") == b"1-1"
    assert client.xadd("s", {"b": "2"}, id="5-*") == b"5-0"
    assert client.xadd("s", {"c": "3"}, id="5-*") == b"5-1"
    assert client.xadd("s", {"d": "4", "e": "5"}, id="7") == b"7-0"
    auto = client.xadd("s", {"f": "6"})
    assert isinstance(auto, bytes)
    ms, seq = map(int, auto.split(b"-"))
    assert ms > 7 and seq == 0
    assert client.xlen("s") == 5 and client.type("s") == b"stream"
    everything = listed(client.xrange("s"))
    assert [entry_id for entry_id, _ in everything] == [b"1-1", b"5-0", b"5-1", b"7-0", auto]
    assert everything[3] == entry("7-0", d="4", e="5")
    assert client.xrange("s", "5", "5") == [entry("5-0", b="2"), entry("5-1", c="3")]
    assert client.xrange("s", "(5-0", "(7-0") == [entry("5-1", c="3")]
    assert client.xrange("s", "-", "+", count=2) == everything[:2]
    assert client.xrevrange("s", "+", "-", count=1) == [everything[-1]]
    assert client.xrevrange("s", "(7-0", "(1-1") == [entry("5-1", c="3"), entry("5-0", b="2")]
    # An exclusive end without a sequence excludes only ms-18446744073709551615.
    assert listed(client.xrevrange("s", "(7", "7"))[0][0] == b"7-0"
    assert client.xrevrange("s", "7", "5-1") == [entry("7-0", d="4", e="5"), entry("5-1", c="3")]
    assert client.xrange("s", "8", "9") == [] and client.xrange("missing") == []
    # COUNT 0: a nil array for a stream, an empty one for a missing key.
    count_0 = ("-", "+", "COUNT", "0")
    assert client.execute_command("XRANGE", "s", *count_0) in (None, [])  # type: ignore[no-untyped-call]
    assert client.execute_command("XRANGE", "missing", *count_0) == []  # type: ignore[no-untyped-call]


def test_xadd_errors(client: redis.Redis) -> None:
    client.xadd("s", {"a": "1"}, id="5-5")
    for bad_id, message in (
        ("5-5", r"^The ID specified in XADD is equal or smaller than the target stream top item$"),
        ("4", r"^The ID specified in XADD is equal or smaller"),
        ("0-0", r"^The ID specified in XADD must be greater than 0-0$"),
        ("x-1", INVALID_ID),
        ("18446744073709551616", INVALID_ID),
    ):
        with pytest.raises(redis.ResponseError, match=message):
            client.xadd("s", {"a": "1"}, id=bad_id)
    with pytest.raises(redis.ResponseError, match=r"^The ID specified in XADD must be greater"):
        client.xadd("new", {"a": "1"}, id="0-0")
    assert client.exists("new") == 0
    client.xadd("s", {"a": "1"}, id="18446744073709551615-18446744073709551615")
    with pytest.raises(redis.ResponseError, match=r"^The stream has exhausted the last possible"):
        client.xadd("s", {"a": "1"})
    with pytest.raises(redis.ResponseError, match=r"^wrong number of arguments for 'xadd'"):
        client.execute_command("XADD", "s", "*", "a")  # type: ignore[no-untyped-call]
    with pytest.raises(redis.ResponseError, match=r"^The MAXLEN argument must be >= 0\.$"):
        client.execute_command("XADD", "s", "MAXLEN", "-1", "*", "a", "1")  # type: ignore[no-untyped-call]
    with pytest.raises(redis.ResponseError, match=r"^syntax error, LIMIT cannot be used without"):
        client.execute_command("XADD", "s", "MAXLEN", "1", "LIMIT", "5", "*", "a", "1")  # type: ignore[no-untyped-call]
    with pytest.raises(redis.ResponseError, match=r"^syntax error, MAXLEN and MINID options"):
        client.execute_command("XADD", "s", "MAXLEN", "1", "MINID", "5", "*", "a", "1")  # type: ignore[no-untyped-call]
    for bad in (("(-", "+"), ("-", "x")):
        with pytest.raises(redis.ResponseError, match=INVALID_ID):
            client.xrange("s", *bad)
    with pytest.raises(redis.ResponseError, match=r"^invalid start ID for the interval$"):
        client.xrange("s", "(18446744073709551615-18446744073709551615", "+")
    with pytest.raises(redis.ResponseError, match=r"^invalid end ID for the interval$"):
        client.xrange("s", "-", "(0-0")
    with pytest.raises(redis.ResponseError, match=r"^syntax error$"):
        client.execute_command("XRANGE", "s", "-", "+", "LIMIT", "1")  # type: ignore[no-untyped-call]
    # The connection stays usable after the errors.
    assert client.xlen("s") == 2


def test_nomkstream_trim_and_delete(client: redis.Redis) -> None:
    assert client.xadd("none", {"a": "1"}, nomkstream=True) is None
    assert client.exists("none") == 0
    for i in range(1, 11):
        client.xadd("s", {"n": str(i)}, id=f"{i}-0")
    assert client.xadd("s", {"n": "11"}, id="11-0", maxlen=8, approximate=False) == b"11-0"
    assert client.xlen("s") == 8 and listed(client.xrange("s", count=1))[0][0] == b"4-0"
    assert client.xtrim("s", minid="6", approximate=False) == 2
    assert client.xtrim("s", maxlen=5, approximate=False) == 1
    assert client.xdel("s", "8-0", "8-0", "99-0") == 1
    assert [entry_id for entry_id, _ in listed(client.xrange("s"))] == [
        b"7-0",
        b"9-0",
        b"10-0",
        b"11-0",
    ]
    with pytest.raises(redis.ResponseError, match=INVALID_ID):
        client.xdel("s", "9-0", "bad")
    assert client.xlen("s") == 4
    # A stream emptied by XTRIM or XDEL stays, and keeps its last ID.
    assert client.xtrim("s", maxlen=0, approximate=False) == 4
    assert client.exists("s") == 1 and client.xlen("s") == 0 and client.type("s") == b"stream"
    with pytest.raises(redis.ResponseError, match=r"^The ID specified in XADD is equal or smaller"):
        client.xadd("s", {"a": "1"}, id="11-0")
    assert client.xadd("fresh", {"a": "1"}, maxlen=0, approximate=False)
    assert client.exists("fresh") == 1 and client.xlen("fresh") == 0
    with pytest.raises(redis.ResponseError, match=r"^syntax error, XTRIM must be called with"):
        client.execute_command("XTRIM", "s", "LIMIT", "0")  # type: ignore[no-untyped-call]


def test_approximate_trim_removes_whole_nodes(client: redis.Redis) -> None:
    # What RQ sends for its results (redis-py's default ``approximate=True``): MAXLEN ~ 10.
    pipe = client.pipeline(transaction=False)
    for i in range(1, 351):
        pipe.xadd("s", {"n": str(i)}, id=f"{i}-0", maxlen=10)
    pipe.execute()
    # Redis trims whole nodes of 100 small entries: 301-350 are left in the last node.
    assert client.xlen("s") == 50
    assert client.xtrim("s", maxlen=10, approximate=True) == 0
    assert client.xtrim("s", minid="340-0", approximate=True) == 0
    assert listed(client.xrevrange("s", count=1))[0][1] == {b"n": b"350"}
    assert client.xtrim("s", maxlen=10, approximate=False) == 40
    assert client.xlen("s") == 10


def test_streams_and_other_types(client: redis.Redis) -> None:
    client.set("str", "v")
    client.xadd("s", {"a": "1"}, id="1-0")
    for call in (
        lambda: client.xadd("str", {"a": "1"}),
        lambda: client.xlen("str"),
        lambda: client.xrange("str"),
        lambda: client.xrevrange("str"),
        lambda: client.xdel("str", "1-0"),
        lambda: client.xtrim("str", maxlen=1),
        lambda: client.xread({"str": "0"}),
        lambda: client.get("s"),
        lambda: client.lpush("s", "x"),
    ):
        with pytest.raises(redis.ResponseError, match=WRONGTYPE):
            call()
    assert client.xlen("missing") == 0 and client.xdel("missing", "1-0") == 0
    assert client.xtrim("missing", maxlen=0) == 0
    # Keyspace commands work on streams too.
    assert client.copy("s", "s2") and client.xrange("s2") == client.xrange("s")
    assert client.rename("s2", "s3") and client.expire("s3", 100) and client.ttl("s3") > 0
    assert client.delete("s3") == 1 and client.exists("s3") == 0
    assert list(client.scan_iter(_type="stream")) == [b"s"]


def test_xread(client: redis.Redis) -> None:
    client.xadd("a", {"n": "1"}, id="1-0")
    client.xadd("a", {"n": "2"}, id="2-0")
    client.xadd("b", {"m": "1"}, id="3-0")
    got = client.xread({"a": "0", "b": "0-0", "missing": "0"}, count=1)
    expected_a, expected_b = [entry("1-0", n="1")], [entry("3-0", m="1")]
    if isinstance(got, dict):  # RESP3: a map
        assert got == {b"a": [expected_a], b"b": [expected_b]}
    else:
        assert got == [[b"a", expected_a], [b"b", expected_b]]
    assert client.xread({"a": "2-0"}) in ([], {})
    assert client.xread({"a": "$"}, block=50) in ([], {}, None)
    with pytest.raises(redis.ResponseError, match=INVALID_ID):
        client.xread({"a": "-"})
    with pytest.raises(redis.ResponseError, match=r"^Unbalanced XREAD list of streams"):
        client.execute_command("XREAD", "STREAMS", "a", "b", "0")  # type: ignore[no-untyped-call]
    with pytest.raises(redis.ResponseError, match=r"^timeout is negative$"):
        client.execute_command("XREAD", "BLOCK", "-1", "STREAMS", "a", "0")  # type: ignore[no-untyped-call]
    with pytest.raises(redis.ResponseError, match=r"^syntax error$"):
        client.execute_command("XREAD", "COUNT", "1", "a", "0")  # type: ignore[no-untyped-call]


def test_xread_block_is_woken_by_xadd(server: StoreProcess | RedisProcess) -> None:
    # What RQ's ``Result.fetch_latest(timeout=)`` sends: XREAD BLOCK ms STREAMS key 0-0.
    with (
        redis.Redis.from_url(server.url, socket_timeout=30) as reader,
        redis.Redis.from_url(server.url, socket_timeout=30) as writer,
    ):
        reader.delete("results")
        answers: list[object] = []
        waiting = threading.Thread(
            target=lambda: answers.append(reader.xread({"results": "$"}, block=20_000))
        )
        waiting.start()
        try:
            # The reader is parked once the server counts it as blocked.
            wait_until(lambda: int(writer.info("clients")["blocked_clients"]) == 1, timeout=20)
            writer.xadd("results", {"status": "done"}, id="9-0")
        finally:
            waiting.join(timeout=30)
        assert answers == [[[b"results", [entry("9-0", status="done")]]]]


def test_a_parked_xread_goes_with_its_connection(server: StoreProcess | RedisProcess) -> None:
    with redis.Redis.from_url(server.url, socket_timeout=30) as observer:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(server.url.removeprefix("unix://"))
            sock.sendall(resp_command("XREAD", "BLOCK", "0", "STREAMS", "never", "$"))
            assert wait_until(lambda: observer.info("clients")["blocked_clients"] == 1, 20)
        finally:
            sock.close()
        assert wait_until(lambda: observer.info("clients")["blocked_clients"] == 0, 20)
        # Nothing is left parked on the key: an XADD to it serves no one and answers.
        assert observer.xadd("never", {"f": "v"}, id="1-0") == b"1-0"
