"""The single-command shortcut agrees with the protocol's CommandReader on every input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server import fastpath
from blinkstore_gunicorn.server.fastpath import (
    FAST_PATH_MAX,
    MEMO_ENTRIES,
    MEMO_MAX,
    single_command,
)


def reader_parse(data: bytes) -> list[list[bytes] | object]:
    reader = resp.CommandReader()
    reader.feed(data)
    return list(reader.drain())


def test_common_requests() -> None:
    assert single_command(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n") == [b"GET", b"k"]
    assert single_command(b"*1\r\n$4\r\nPING\r\n") == [b"PING"]
    assert single_command(b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n") == [b"GET", b""]


def test_everything_else_is_left_to_the_reader() -> None:
    for data in (
        b"",
        b"*0\r\n",
        b"*-1\r\n",
        b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n",  # two commands
        b"*2\r\n$3\r\nGET\r\n",  # partial
        b"*2\r\n$3\r\nGET\r\n$1\r\nk",  # partial
        b"*1\r\n$4\r\nPI\r\n\r\n",  # CRLF inside a value
        b"*01\r\n$4\r\nPING\r\n",  # unusual spelling
        b"*1\r\n$04\r\nPING\r\n",
        b"GET k\r\n",
        resp.encode_command("SET", "k", "v" * FAST_PATH_MAX),  # too long for the shortcut
    ):
        assert single_command(data) is None, data


args_strategy = st.lists(st.binary(max_size=40), min_size=1, max_size=6)


@given(args_strategy)
def test_encoded_commands_parse_like_the_reader(args: list[bytes]) -> None:
    data = resp.encode_command(*args)
    fast = single_command(data)
    if fast is not None:
        assert [fast] == reader_parse(data)
    if not any(b"\r\n" in arg for arg in args) and len(data) <= FAST_PATH_MAX:
        assert fast == args


@given(st.binary(max_size=200), args_strategy)
def test_arbitrary_bytes_never_disagree(noise: bytes, args: list[bytes]) -> None:
    for data in (noise, b"*" + noise, resp.encode_command(*args) + noise):
        fast = single_command(data)
        if fast is not None:
            assert [fast] == reader_parse(data)


def test_small_requests_are_remembered_and_the_memo_is_bounded() -> None:
    request = resp.encode_command("GET", "hot")
    first = single_command(request)
    assert first == [b"GET", b"hot"]
    assert single_command(request) is first  # a repeat is one dict lookup
    assert fastpath.recall(request) is first  # what the connection asks first
    for i in range(MEMO_ENTRIES + 10):
        assert single_command(resp.encode_command("GET", f"k{i}")) == [b"GET", b"k%d" % i]
    assert len(fastpath._memo) <= MEMO_ENTRIES
    big = resp.encode_command("SET", "k", "v" * MEMO_MAX)
    assert single_command(big) == [b"SET", b"k", b"v" * MEMO_MAX]
    assert big not in fastpath._memo


class _CountingDict(dict[bytes, list[bytes]]):
    """A memo that counts lookups."""

    lookups = 0

    def get(self, key: bytes, default: object = None) -> object:  # type: ignore[override]
        type(self).lookups += 1
        return super().get(key, default)


def test_large_reads_are_never_hashed_for_the_memo(monkeypatch: pytest.MonkeyPatch) -> None:
    memo = _CountingDict()
    monkeypatch.setattr(fastpath, "_memo", memo)
    # Hashing a 64 KiB value per request cost more than parsing it (found by profiling).
    single_command(resp.encode_command("SET", "k", b"v" * 65536))
    single_command(resp.encode_command("SET", "k", b"v" * (FAST_PATH_MAX - 40)))
    assert _CountingDict.lookups == 0
    single_command(resp.encode_command("GET", "k"))
    assert _CountingDict.lookups == 1
