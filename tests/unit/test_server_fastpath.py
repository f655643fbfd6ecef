"""The one-request parse of the hot path (C's ``one`` and the Python ``parse_single``) agrees
with the protocol's CommandReader, limits included, on every input.

The seeded differential fuzz over mutated streams is in ``test_protocol_differential.py``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from blinkstore_gunicorn.protocol import resp, resp_split
from blinkstore_gunicorn.protocol.errors import TooLarge
from blinkstore_gunicorn.protocol.resp_split import OneRequest
from blinkstore_gunicorn.server.fastpath import (
    FAST_PATH_MAX,
    parse_single,
    single_parser,
)
from tests.unit.test_protocol_differential import SPLIT_BUILT, one_request_parse

DEFAULT = resp.DEFAULT_MAX_REQUEST_SIZE


def python_parse(max_request: int = DEFAULT, max_bulk: int = DEFAULT) -> OneRequest:
    return one_request_parse("python", max_request, max_bulk)


def c_parse(max_request: int = DEFAULT, max_bulk: int = DEFAULT) -> OneRequest:
    return one_request_parse("C", max_request, max_bulk)


@pytest.fixture(params=["python", "C"])
def make(request: pytest.FixtureRequest) -> Callable[..., OneRequest]:
    """Builds the Python parse, then (where it is built) the C one, with the given limits."""
    if request.param == "C" and not SPLIT_BUILT:
        pytest.skip("protocol/_split.c is not built")
    return c_parse if request.param == "C" else python_parse


def reader_parse(data: bytes, max_request: int = DEFAULT, max_bulk: int = DEFAULT) -> list[object]:
    reader = resp.CommandReader(max_request, max_bulk)
    reader.feed(data)
    return list(reader.drain())


def test_common_requests(make: Callable[..., OneRequest]) -> None:
    parse = make()
    assert parse(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n") == [b"GET", b"k"]
    assert parse(b"*1\r\n$4\r\nPING\r\n") == [b"PING"]
    assert parse(b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n") == [b"GET", b""]


def test_everything_else_is_left_to_the_reader(make: Callable[..., OneRequest]) -> None:
    parse = make()
    for data in (
        b"",
        b"*0\r\n",
        b"*-1\r\n",
        b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n",  # two commands
        b"*2\r\n$3\r\nGET\r\n",  # partial
        b"*2\r\n$3\r\nGET\r\n$1\r\nk",  # partial
        b"*01\r\n$4\r\nPING\r\n",  # unusual spelling
        b"*1\r\n$04\r\nPING\r\n",
        b"GET k\r\n",
    ):
        assert parse(data) is None, data


def test_only_c_takes_a_large_read_or_a_value_holding_crlf() -> None:
    large = resp.encode_command("SET", "k", "v" * FAST_PATH_MAX)
    crlf = resp.encode_command("SET", "k", "a\r\nb")
    # The reader, which skips over a value, is faster than Python's split of a large one; and
    # that split cannot tell a CRLF in a value from a terminator.
    assert python_parse()(large) is None and python_parse()(crlf) is None
    if SPLIT_BUILT:
        assert c_parse()(large) == [b"SET", b"k", b"v" * FAST_PATH_MAX]
        assert c_parse()(crlf) == [b"SET", b"k", b"a\r\nb"]


@pytest.mark.parametrize(("max_request", "max_bulk"), [(1024, 16), (100, 1000), (1024, 1)])
def test_a_size_at_a_limit_is_left_to_the_reader(
    make: Callable[..., OneRequest], max_request: int, max_bulk: int
) -> None:
    parse = make(max_request, max_bulk)
    # Arguments of max_bulk - 1, max_bulk and max_bulk + 1 bytes; the reader refuses the last.
    for size in (max_bulk - 1, max_bulk, max_bulk + 1):
        for args in (["ECHO", "x" * size], ["GET", "k" * size], ["SET", "k", "v" * size]):
            data = resp.encode_command(*args)
            taken = parse(data)
            longest = max(map(len, args))
            if longest < max_bulk and len(data) - 2 < max_request:
                assert taken == [arg.encode() for arg in args]
            else:
                assert taken is None, data
            if longest > max_bulk:
                assert isinstance(reader_parse(data, max_request, max_bulk)[0], TooLarge)
    # The request as the reader measures it: from its ``*`` to the end of its last value.
    for size in range(max_request - 3, max_request + 3):
        data = set_of_size(size)
        taken = parse(data)
        if size > max_request:
            assert taken is None and isinstance(reader_parse(data, max_request)[0], TooLarge)
        elif taken is not None:
            assert size < max_request and [taken] == reader_parse(data, max_request, max_bulk)


def set_of_size(size: int) -> bytes:
    """``SET <key> <value>`` whose size as the reader measures it is ``size`` (a key of one or
    two bytes: a value whose length gains a digit grows the request by two)."""
    for key in (b"k", b"kk"):
        for value in range(max(0, size - 30), size):
            data = resp.encode_command(b"SET", key, b"v" * value)
            if len(data) - 2 >= size:
                break
        if len(data) - 2 == size:
            return data
    raise AssertionError(f"no SET of {size} bytes")


args_strategy = st.lists(st.binary(max_size=40), min_size=1, max_size=6)
limits_strategy = st.sampled_from([(DEFAULT, DEFAULT), (1024, 16), (4096, 1), (120, 60)])


@given(args_strategy, limits_strategy)
def test_encoded_commands_parse_like_the_reader(args: list[bytes], limits: tuple[int, int]) -> None:
    data = resp.encode_command(*args)
    expected = reader_parse(data, *limits)
    parses = [python_parse(*limits)] + ([c_parse(*limits)] if SPLIT_BUILT else [])
    for parse in parses:
        taken = parse(data)
        if taken is not None:
            assert [taken] == expected
        elif limits == (DEFAULT, DEFAULT) and len(data) <= FAST_PATH_MAX:
            assert any(b"\r\n" in arg for arg in args)  # the Python split's one blind spot


@given(st.binary(max_size=200), args_strategy, limits_strategy)
def test_arbitrary_bytes_never_disagree(
    noise: bytes, args: list[bytes], limits: tuple[int, int]
) -> None:
    parses = [python_parse(*limits)] + ([c_parse(*limits)] if SPLIT_BUILT else [])
    for data in (noise, b"*" + noise, resp.encode_command(*args) + noise):
        for parse in parses:
            taken = parse(data)
            if taken is not None:
                assert [taken] == reader_parse(data, *limits)


def test_a_connection_gets_c_where_it_is_on_and_python_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(resp_split.NATIVE_ENV, "0")
    parse = single_parser(DEFAULT, DEFAULT)
    assert isinstance(parse, functools.partial) and parse.func is parse_single
    monkeypatch.setenv(resp_split.NATIVE_ENV, "1")
    parse = single_parser(DEFAULT, DEFAULT)
    assert isinstance(parse, functools.partial)
    assert (parse.func is parse_single) is not SPLIT_BUILT
