"""MULTI/EXEC bounds and refusals, through the dispatcher (the replies themselves are compared
with redis-server's in tests/integration/test_store_transactions.py)."""

from __future__ import annotations

from tests.unit.test_commands import Harness, err


def test_a_queue_larger_than_one_request_could_be_is_refused() -> None:
    r = Harness(max_request_size=64)
    assert r("MULTI") == b"+OK\r\n"
    assert r("SET", "a", "x" * 20) == b"+QUEUED\r\n"
    assert r("SET", "b", "x" * 40) == err(
        "ERR transaction too large: more than the request size limit"
    )
    assert r("EXEC") == err("EXECABORT Transaction discarded because of previous errors.")
    assert r("EXISTS", "a") == b":0\r\n"


def test_commands_that_may_park_or_change_the_connection_are_refused() -> None:
    r = Harness()
    r("MULTI")
    assert r("BS.FETCH", "k") == err("ERR Command not allowed inside a transaction")
    assert r("HELLO", "3") == err("ERR Command not allowed inside a transaction")
    assert r("exec") == err("EXECABORT Transaction discarded because of previous errors.")
    # The connection is back to normal, in RESP2.
    assert r("SET", "k", "v") == b"+OK\r\n"


def test_quit_inside_multi_closes_at_once() -> None:
    r = Harness()
    r("MULTI")
    assert r("QUIT") == b"+OK\r\n"
    assert r.client.close_after
