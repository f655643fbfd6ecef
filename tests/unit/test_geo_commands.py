"""The GEO commands' limits through the dispatcher (what redis-server has no equal of, so the
integration test cannot compare it): big search replies refused by name, members over the
size limits refused with nothing written, and a stored search serving a parked BZPOPMIN."""

from __future__ import annotations

from tests.unit.test_commands import Harness


def test_search_replies_over_the_reply_limit_are_refused() -> None:
    r = Harness(max_reply_size=1000)
    members = [arg for i in range(40) for arg in ("13.36", "38.11", f"m{i:02d}")]
    assert r("GEOADD", "g", *members) == b":40\r\n"
    assert r("GEOSEARCH", "g", "FROMMEMBER", "m00", "BYRADIUS", "1", "km", "COUNT", "2") == (
        b"*2\r\n$3\r\nm00\r\n$3\r\nm01\r\n"
    )
    for args in (
        ("GEOSEARCH", "g", "FROMMEMBER", "m00", "BYRADIUS", "1", "km", "WITHCOORD"),
        ("GEORADIUS", "g", "13.36", "38.11", "1", "km", "WITHDIST", "WITHHASH"),
    ):
        assert r(*args).startswith(b"-ERR reply too large: ")
    assert r("GEORADIUS", "g", "13.36", "38.11", "1", "km", "STORE", "dst") == b":40\r\n"
    assert r("PING") == b"+PONG\r\n"


def test_members_over_the_size_limits_write_nothing() -> None:
    r = Harness(max_key_size=50)
    too_large = b"-ERR key too large: key of 51 bytes exceeds max key size 50\r\n"
    assert r("GEOADD", "g", "1", "1", "a", "2", "2", "b" * 51) == too_large  # as ZADD's
    assert r("GEOADD", "k" * 51, "1", "1", "a") == too_large
    assert r("EXISTS", "g") == b":0\r\n"


def test_a_stored_search_serves_a_parked_pop() -> None:
    r = Harness()
    r("GEOADD", "g", "13.361389", "38.115556", "Palermo")
    waiter = r.d.new_client()
    replies: list[bytes] = []
    waiter.deliver = replies.append
    r("BZPOPMIN", "dst", "0", client=waiter)
    assert replies == []
    assert r("GEOSEARCHSTORE", "dst", "g", "FROMMEMBER", "Palermo", "BYRADIUS", "1", "m") == (
        b":1\r\n"
    )
    assert replies == [b"*3\r\n$3\r\ndst\r\n$7\r\nPalermo\r\n$16\r\n3479099956230698\r\n"]
