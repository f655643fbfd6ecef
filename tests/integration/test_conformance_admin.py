"""Redis 7.0's administrative replies, checked against redis-server and ``blinkstore serve``
alike (docs/protocol.md, "Conformance"): the same calls, byte-exact replies, and both servers
must pass.

``CONFIG GET``/``SET hll-sparse-max-bytes`` with Redis's validation and its effect on the
HyperLogLog encoding.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.support.differential import RawConnection

OK = b"+OK\r\n"


def _config_set_failed(why: str) -> bytes:
    return (
        b"-ERR CONFIG SET failed (possibly related to argument 'hll-sparse-max-bytes') - "
        + why.encode()
        + b"\r\n"
    )


@pytest.mark.parametrize(
    ("value", "reply", "then"),
    [
        ("1kb", OK, b"1024"),
        ("1K", OK, b"1000"),
        ("2GB", OK, b"2147483648"),
        ("0", OK, b"0"),
        ("abc", _config_set_failed("argument must be a memory value"), b"3000"),
        ("-1", _config_set_failed("argument must be a memory value"), b"3000"),
        ("1.5", _config_set_failed("argument must be a memory value"), b"3000"),
        (
            "9223372036854775808",
            _config_set_failed("argument must be between 0 and 9223372036854775807 inclusive"),
            b"3000",
        ),
    ],
)
def test_config_set_hll_sparse_max_bytes(
    connect: Callable[[], RawConnection], value: str, reply: bytes, then: bytes
) -> None:
    control = connect()
    try:
        assert control("CONFIG", "SET", "hll-sparse-max-bytes", value) == reply
        got = control("CONFIG", "GET", "hll-sparse-max-bytes")
        assert got == b"*2\r\n$20\r\nhll-sparse-max-bytes\r\n$%d\r\n%s\r\n" % (len(then), then)
    finally:
        control("CONFIG", "SET", "hll-sparse-max-bytes", "3000")


def test_config_set_refuses_a_setting_given_twice(connect: Callable[[], RawConnection]) -> None:
    control = connect()
    assert control(
        "CONFIG", "SET", "hll-sparse-max-bytes", "3000", "hll-sparse-max-bytes", "20"
    ) == _config_set_failed("duplicate parameter")


def test_hll_sparse_max_bytes_decides_when_an_hll_turns_dense(
    connect: Callable[[], RawConnection],
) -> None:
    control = connect()
    try:
        assert control("CONFIG", "SET", "hll-sparse-max-bytes", "30") == OK
        control("PFADD", "hll", *(f"e{n}" for n in range(10)))
        assert control("PFDEBUG", "ENCODING", "hll") == b"+dense\r\n"
        assert control("CONFIG", "SET", "hll-sparse-max-bytes", "3000") == OK
        control("PFADD", "other", *(f"e{n}" for n in range(10)))
        assert control("PFDEBUG", "ENCODING", "other") == b"+sparse\r\n"
        assert control("GET", "other") != control("GET", "hll")
        assert control("PFCOUNT", "other") == control("PFCOUNT", "hll") == b":10\r\n"
    finally:
        control("CONFIG", "SET", "hll-sparse-max-bytes", "3000")
