"""RESP2 sans-IO parser and encoders.

The request reader's tests run on every reader: the pure-Python reference
(``resp.CommandReader``), hiredis's (``resp_hiredis.HiredisCommandReader``) and the C
splitter's (``resp_split.SplitCommandReader``).
"""

from __future__ import annotations

from typing import TypeAlias

import pytest
from hypothesis import given
from hypothesis import strategies as st

from blinkstore_gunicorn.protocol import ProtocolError, TooLarge, is_resp_start, resp
from blinkstore_gunicorn.protocol.resp_hiredis import HiredisCommandReader, available
from blinkstore_gunicorn.protocol.resp_prefix import PrefixCommandReader
from blinkstore_gunicorn.protocol.resp_split import SplitCommandReader
from tests.unit.test_protocol_differential import needs_split

Reader: TypeAlias = type[resp.CommandReader] | type[PrefixCommandReader]

#: Every request reader, for ``@pytest.mark.parametrize("reader", READERS)``.
READERS = [
    pytest.param(resp.CommandReader, id="python"),
    pytest.param(
        HiredisCommandReader,
        id="hiredis",
        marks=pytest.mark.skipif(not available(), reason="hiredis is not installed"),
    ),
    pytest.param(SplitCommandReader, id="split", marks=needs_split),
]
with_both = pytest.mark.parametrize("reader", READERS)


def drain_all(
    data: bytes, chunk: int | None = None, reader: Reader = resp.CommandReader, **limits: int
) -> list[object]:
    parser = reader(**limits)
    out: list[object] = []
    pieces = [data] if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    for piece in pieces:
        parser.feed(piece)
        out.extend(parser.drain())
    return out


@with_both
def test_encode_command_round_trips_through_command_reader(reader: Reader) -> None:
    wire = resp.encode_command("SET", b"k\r\ney", 42, 1.5, "välue")
    assert wire.startswith(b"*5\r\n$3\r\nSET\r\n")
    assert drain_all(wire, reader=reader) == [[b"SET", b"k\r\ney", b"42", b"1.5", "välue".encode()]]


@with_both
def test_pipelined_commands_come_out_in_order(reader: Reader) -> None:
    wire = b"".join(resp.encode_command("INCR", str(i)) for i in range(100))
    assert drain_all(wire, reader=reader) == [[b"INCR", str(i).encode()] for i in range(100)]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64])
@with_both
def test_commands_split_anywhere_are_reassembled(reader: Reader, chunk: int) -> None:
    wire = resp.encode_command("SET", "key", b"x" * 300) + resp.encode_command("GET", "key")
    assert drain_all(wire, chunk, reader=reader) == [[b"SET", b"key", b"x" * 300], [b"GET", b"key"]]


@with_both
def test_large_value_in_chunks_waits_for_announced_length(reader: Reader) -> None:
    parser = reader()
    value = b"v" * 100_000
    wire = resp.encode_command("SET", "k", value)
    parser.feed(wire[:50])
    assert parser.drain() == []
    for i in range(50, len(wire) - 1, 4096):
        parser.feed(wire[i : min(i + 4096, len(wire) - 1)])
        assert parser.drain() == []
    parser.feed(wire[-1:])
    assert parser.drain() == [[b"SET", b"k", value]]
    assert parser.buffered == 0


@with_both
def test_empty_and_null_arrays_are_skipped_like_redis(reader: Reader) -> None:
    assert drain_all(b"*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n", reader=reader) == [[b"PING"]]


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"*x\r\n", "Protocol error: invalid multibulk length"),
        (b"*2\r\n:1\r\n", "Protocol error: expected '$', got ':'"),
        (b"*1\r\n$-5\r\n", "Protocol error: invalid bulk length"),
        (b"*1\r\n$abc\r\n", "Protocol error: invalid bulk length"),
        (b"*1\r\n$2\r\nabcd\r\n", "Protocol error: bulk string not terminated"),
        (b"*" + b"9" * 100, "Protocol error: too big mbulk count string"),
        (b"*99999999\r\n", "Protocol error: invalid multibulk length"),
        # What hiredis takes but a request never is: the Python reader's answer.
        (b"*4294967295\r\n", "Protocol error: invalid multibulk length"),
        (b"*1\r\n$3\r\nGETxy", "Protocol error: bulk string not terminated"),
        (b"*1\r\n+PING\r\n", "Protocol error: expected '$', got '+'"),
        (b"*2\r\n$3\r\nGET\r\n*1\r\n$1\r\nk\r\n", "Protocol error: expected '$', got '*'"),
        (b"x" * (64 * 1024 + 1), "Protocol error: too big inline request"),
        (b"*1\r\n$-1\r\n", "Protocol error: invalid bulk length"),
    ],
)
@with_both
def test_malformed_input_yields_a_protocol_error_value(
    reader: Reader, wire: bytes, message: str
) -> None:
    out = drain_all(wire, reader=reader)
    assert out == [ProtocolError(message)]


@pytest.mark.parametrize("chunk", [None, 1, 7])
@with_both
def test_inline_requests_mix_with_resp_ones_as_in_redis(reader: Reader, chunk: int | None) -> None:
    wire = b"PING\r\n\r\nECHO  a   b\r\n" + resp.encode_command("GET", "k") + b"INCR x\n%1\n"
    assert drain_all(wire, chunk, reader=reader) == [
        [b"PING"],
        [b"ECHO", b"a", b"b"],
        [b"GET", b"k"],
        [b"INCR", b"x"],
        [b"%1"],
    ]
    # A line is bounded by the request size too.
    out = drain_all(b"ECHO " + b"x" * 20 + b"\r\n", chunk, reader=reader, max_request_size=16)
    assert out == [ProtocolError("Protocol error: too big inline request")]


@with_both
def test_error_comes_after_the_good_commands_and_stops_the_reader(reader: Reader) -> None:
    parser = reader()
    parser.feed(resp.encode_command("PING") + b"*1\r\ngarbage\r\n")
    out = parser.drain()
    assert out[0] == [b"PING"]
    assert isinstance(out[1], ProtocolError)
    parser.feed(resp.encode_command("PING"))
    assert parser.drain() == []


@with_both
def test_an_absurd_bulk_length_ends_the_stream(reader: Reader) -> None:
    parser = reader(max_request_size=1024)
    parser.feed(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n" % (resp.MAX_SKIPPED_BULK + 1))
    assert parser.drain() == [ProtocolError("Protocol error: invalid bulk length")]


SET_BIG = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5000\r\n" + b"v" * 5000 + b"\r\n"
PING = resp.encode_command("PING")


@pytest.mark.parametrize("chunk", [None, 1, 7, 100, 4999, 5030])
@with_both
def test_an_oversized_argument_is_refused_from_its_header_and_skipped(
    reader: Reader, chunk: int | None
) -> None:
    # A refused SET between two PINGs: the refusal comes in its place, the next command after.
    wire = PING + SET_BIG + PING
    out = drain_all(wire, chunk, max_request_size=100_000, max_bulk=1000, reader=reader)
    assert out == [[b"PING"], TooLarge("value", 5000, 1000), [b"PING"]]


@with_both
def test_the_refusal_comes_before_the_payload_and_nothing_is_kept(reader: Reader) -> None:
    parser = reader(max_bulk=1000)
    parser.feed(SET_BIG[:40])
    assert parser.drain() == [TooLarge("value", 5000, 1000)]
    assert (parser.skipping, parser.idle) == (True, False)
    for start in range(40, len(SET_BIG), 512):
        parser.feed(SET_BIG[start : start + 512])
        assert parser.drain() == []
        assert parser.buffered == 0
    assert parser.idle
    parser.feed(PING)
    assert parser.drain() == [[b"PING"]]


@pytest.mark.parametrize("chunk", [None, 3, 64])
@with_both
def test_a_request_over_the_total_is_refused_with_its_later_arguments(
    reader: Reader, chunk: int | None
) -> None:
    # Each argument fits, the request does not: the rest of it (two more values) is skipped.
    values = [b"a" * 400, b"b" * 400, b"c" * 400, b"d" * 400]
    wire = resp.encode_command("MSET", *values) + PING
    out = drain_all(wire, chunk, max_request_size=1000, max_bulk=500, reader=reader)
    assert len(out) == 2 and out[1] == [b"PING"]
    refused = out[0]
    assert isinstance(refused, TooLarge) and refused.part == "request" and refused.limit == 1000


@with_both
def test_garbage_inside_a_skipped_request_still_ends_the_stream(reader: Reader) -> None:
    wire = b"*3\r\n$3\r\nSET\r\n$2000\r\n" + b"k" * 2000 + b"\r\n:oops\r\n"
    out = drain_all(wire, 100, max_bulk=1000, reader=reader)
    assert out == [
        TooLarge("value", 2000, 1000),
        ProtocolError("Protocol error: expected '$', got ':'"),
    ]


@given(st.binary(max_size=512), st.integers(min_value=1, max_value=64))
@with_both
def test_arbitrary_bytes_never_raise(reader: Reader, data: bytes, chunk: int) -> None:
    for item in drain_all(data, chunk, max_request_size=4096, reader=reader):
        assert isinstance(item, ProtocolError | TooLarge | list)


@given(st.lists(st.lists(st.binary(max_size=40), min_size=1, max_size=5), max_size=10))
@with_both
def test_any_commands_round_trip(reader: Reader, commands: list[list[bytes]]) -> None:
    wire = b"".join(resp.encode_command(*command) for command in commands)
    assert drain_all(wire, 5, reader=reader) == commands


def test_reply_encoders() -> None:
    assert resp.bulk(b"ab") == b"$2\r\nab\r\n"
    assert resp.simple("OK") == resp.OK
    assert resp.error("ERR bad\r\nthing") == b"-ERR bad  thing\r\n"
    assert resp.integer(-3) == b":-3\r\n"
    assert resp.array([resp.integer(1), resp.NIL]) == b"*2\r\n:1\r\n$-1\r\n"
    assert resp.bulk_array([b"a", None]) == b"*2\r\n$1\r\na\r\n$-1\r\n"


@given(
    st.lists(st.one_of(st.none(), st.binary(max_size=8), st.binary(min_size=1020, max_size=1030)))
)
def test_bulk_arrays_are_each_item_as_a_bulk_reply(values: list[bytes | None]) -> None:
    expected = b"*%d\r\n" % len(values) + b"".join(
        resp.NIL if value is None else b"$%d\r\n%b\r\n" % (len(value), value) for value in values
    )
    assert resp.bulk_array(values) == resp.bulk_array(iter(values)) == expected
    if None not in values:
        assert resp.bulk_list(values) == expected  # type: ignore[arg-type]


def test_encode_command_rejects_unsendable_arguments() -> None:
    with pytest.raises(TypeError, match="bool"):
        resp.encode_command("SET", "k", True)
    with pytest.raises(TypeError, match="object"):
        resp.encode_command("SET", "k", object())  # type: ignore[arg-type]


def read_replies(data: bytes, chunk: int | None = None) -> list[object]:
    reader = resp.ReplyReader()
    out: list[object] = []
    pieces = [data] if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    for piece in pieces:
        reader.feed(piece)
        while (reply := reader.next_reply()) is not resp.NEED_MORE:
            out.append(reply)
            if isinstance(reply, ProtocolError):
                return out
    return out


@pytest.mark.parametrize("chunk", [None, 1, 3, 100])
def test_reply_reader_decodes_every_reply_type(chunk: int | None) -> None:
    wire = (
        resp.OK
        + resp.bulk(b"va\r\nlue")
        + resp.NIL
        + resp.integer(42)
        + resp.error("WRONGTYPE Operation against a key")
        + resp.array([resp.bulk(b"a"), resp.array([resp.integer(1)]), resp.NIL])
        + resp.NIL_ARRAY
        + resp.EMPTY_ARRAY
    )
    replies = read_replies(wire, chunk)
    assert replies == [
        "OK",
        b"va\r\nlue",
        None,
        42,
        resp.ErrorReply("WRONGTYPE Operation against a key"),
        [b"a", [1], None],
        None,
        [],
    ]
    error = replies[4]
    assert isinstance(error, resp.ErrorReply)
    assert error.code == "WRONGTYPE"


def test_reply_reader_large_bulk_in_chunks() -> None:
    value = bytes(range(256)) * 1000
    assert read_replies(resp.bulk(value) + resp.OK, 1000) == [value, "OK"]


def test_reply_reader_reports_garbage_once_and_stays_failed() -> None:
    reader = resp.ReplyReader()
    reader.feed(b"?what\r\n")
    first = reader.next_reply()
    assert isinstance(first, ProtocolError)
    reader.feed(resp.OK)
    assert reader.next_reply() == first


@given(st.binary(max_size=256), st.integers(min_value=1, max_value=32))
def test_reply_reader_never_raises(data: bytes, chunk: int) -> None:
    for reply in read_replies(data, chunk):
        assert reply is not resp.NEED_MORE


def test_protocol_detection_by_first_byte() -> None:
    assert is_resp_start(b"*"[0])
    assert not is_resp_start(b"G"[0])


@given(
    st.lists(st.lists(st.binary(max_size=120), min_size=1, max_size=4), max_size=8),
    st.integers(min_value=1, max_value=200),
)
@with_both
def test_refused_commands_never_disturb_the_others(
    reader: Reader, commands: list[list[bytes]], chunk: int
) -> None:
    wire = b"".join(resp.encode_command(*command) for command in commands)
    out = drain_all(wire, chunk, max_request_size=300, max_bulk=80, reader=reader)
    assert len(out) == len(commands)
    for command, item in zip(commands, out, strict=True):
        fits = max(map(len, command)) <= 80 and len(resp.encode_command(*command)) - 2 <= 300
        assert item == command if fits else isinstance(item, TooLarge)
