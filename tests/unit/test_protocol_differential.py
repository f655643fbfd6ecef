"""The fast request readers (the C splitter's, hiredis's) and the hot path's one-request parses
(C's and Python's) against the pure-Python reference, on random and mutated streams.

Each case is a stream of requests (some over the size limits, some at them), mutated the ways a
broken or hostile client would (bytes flipped, inserted, dropped; a wrong CRLF; RESP types a
request never has; non-canonical numbers; absurd headers), split at random points. Each fast
reader and the Python reader are fed the same pieces, and after every piece they must give the
same commands, refusals and errors, and agree on what they hold (``idle``, ``skipping``,
``buffered``), which the connection's memory budget and hot path read. A one-request parse is
given single requests (mutated or not) and the pieces of such streams: where it returns
arguments, the Python reader fed the same read must return exactly them, and be idle after.

The seed is printed (``pytest -s``) and named in any failure; ``RESP_FUZZ_SEED=<n>`` replays it.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import random
from typing import Any

import pytest

from blinkstore_gunicorn.protocol import ProtocolError, resp, resp_hiredis
from blinkstore_gunicorn.protocol.resp_hiredis import (
    HIREDIS_MAX_READ,
    HiredisCommandReader,
    available,
    framing,
)
from blinkstore_gunicorn.protocol.resp_prefix import PrefixCommandReader
from blinkstore_gunicorn.protocol.resp_split import OneRequest, SplitCommandReader
from blinkstore_gunicorn.server.fastpath import parse_single

needs_hiredis = pytest.mark.skipif(not available(), reason="hiredis is not installed")
SPLIT_BUILT = importlib.util.find_spec("blinkstore_gunicorn.protocol._split") is not None
needs_split = pytest.mark.skipif(not SPLIT_BUILT, reason="protocol/_split.c is not built")
#: The readers checked against the Python reference.
FAST_READERS = [
    pytest.param(HiredisCommandReader, id="hiredis", marks=needs_hiredis),
    pytest.param(SplitCommandReader, id="split", marks=needs_split),
]

CASES = 3000

#: Pieces a mutation inserts: other RESP types, odd spellings, absurd and refused headers.
TOKENS = [
    b"*0\r\n",
    b"*-1\r\n",
    b"$-1\r\n",
    b"+OK\r\n",
    b":1\r\n",
    b"-ERR x\r\n",
    b"%1\r\n",
    b"~1\r\n",
    b">1\r\n",
    b"#f\r\n",
    b"_\r\n",
    b",1.5\r\n",
    b"=7\r\ntxt:abc\r\n",
    b"*02\r\n",
    b"$+3\r\n",
    b"$03\r\n",
    b"* 2\r\n",
    b"*1_0\r\n",
    b"\r\n",
    b"\r",
    b"\n",
    b"*1\r\n*1\r\n",
    b"*99999999\r\n",
    b"*268435456\r\n",
    b"$600000000\r\n",
    b"$5000\r\n",
    b"*" + b"9" * 70,
    b"*1\r\n$0\r\n\r\n",
    b"*1\r\n$00\r\n\r\n",
    b"*1\r\n$" + b"9" * 19 + b"\r\n",
    b"*" + b"9" * 19 + b"\r\n",
    b"*1048576\r\n",
    b"*1048577\r\n",
]
#: What a mutated terminator becomes.
TERMINATORS = [b"XY", b"\n\r", b"\r\r", b"\n\n", b"\r", b""]
LIMITS = [
    {},
    {"max_request_size": 4096, "max_bulk": 1000},
    {"max_request_size": 300, "max_bulk": 80},
    {"max_request_size": 100_000},
]


def random_command(rnd: random.Random) -> bytes:
    args = []
    for _ in range(rnd.choice([1, 2, 2, 3, 5, 21, 70])):
        kind = rnd.random()
        if kind < 0.6:
            args.append(b"key:%d" % rnd.randrange(1000))
        elif kind < 0.8:
            args.append(rnd.randbytes(rnd.randrange(12)))
        elif kind < 0.95:
            args.append(rnd.choice([b"", b"\r\n", b"a\r", b"\n", b"$3\r\n", b"*1\r\n"]))
        elif kind < 0.999:
            args.append(b"v" * rnd.choice([100, 1023, 1024, 3000]))
        else:
            args.append(b"v" * 70_000)  # past the 64 KiB a reply is written on its own
    return resp.encode_command(*args)


def limit_command(rnd: random.Random, limits: dict[str, int]) -> bytes:
    """A request with an argument, or a total, one byte below, at or above a limit."""
    request = limits.get("max_request_size", resp.DEFAULT_MAX_REQUEST_SIZE)
    bulk = limits.get("max_bulk", request)
    if rnd.random() < 0.5 and bulk <= 100_000:
        return resp.encode_command("SET", "k", b"v" * (bulk + rnd.choice([-1, 0, 1])))
    if request > 100_000:
        return random_command(rnd)
    # A request's size, as the reader measures it, runs from its ``*`` to the end of its last
    # value: ``*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$<n>\r\n`` and ``n`` bytes.
    target = request + rnd.choice([-1, 0, 1])
    value = target - 20 - len(b"$%d\r\n" % target)
    while 20 + len(b"$%d\r\n" % value) + value < target:
        value += 1
    return resp.encode_command("SET", "k", b"v" * value)


def random_stream(rnd: random.Random, limits: dict[str, int]) -> bytes:
    parts = [
        random_command(rnd)
        if (kind := rnd.random()) < 0.85
        else limit_command(rnd, limits)
        if kind < 0.9
        else rnd.choice(TOKENS)
        for _ in range(rnd.randrange(1, 20))
    ]
    return mutated(rnd, b"".join(parts))


def mutated(rnd: random.Random, wire: bytes) -> bytes:
    """``wire`` with none to five mutations: bytes flipped, inserted or dropped, a token of
    :data:`TOKENS` inserted, the end cut off, a CRLF replaced."""
    data = bytearray(wire)
    for _ in range(rnd.choice([0, 0, 1, 1, 2, 5])):
        at = rnd.randrange(len(data) + 1)
        kind = rnd.random()
        if kind < 0.3 and data:
            data[min(at, len(data) - 1)] = rnd.randrange(256)
        elif kind < 0.5:
            data[at:at] = rnd.choice(TOKENS)
        elif kind < 0.6:
            del data[at : at + rnd.randrange(1, 5)]
        elif kind < 0.7:
            data[at:at] = bytes([rnd.randrange(256)])
        elif kind < 0.8:
            del data[at:]
        else:
            end = data.find(b"\r\n", at)
            if end >= 0:
                data[end : end + 2] = rnd.choice(TERMINATORS)
    return bytes(data)


def random_pieces(rnd: random.Random, data: bytes) -> list[bytes]:
    if not data:
        return []
    cuts = sorted(rnd.sample(range(1, len(data)), min(len(data) - 1, rnd.randrange(6))))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


@pytest.mark.parametrize("reader", FAST_READERS)
def test_a_fast_reader_reads_every_stream_like_the_python_reader(
    reader: type[PrefixCommandReader],
) -> None:
    seed = int(os.environ.get("RESP_FUZZ_SEED", random.randrange(2**32)))
    print(f"RESP_FUZZ_SEED={seed}")
    rnd = random.Random(seed)
    for case in range(CASES):
        limits = rnd.choice(LIMITS)
        data = random_stream(rnd, limits)
        python, fast = resp.CommandReader(**limits), reader(**limits)
        for piece in random_pieces(rnd, data):
            python.feed(piece)
            fast.feed(piece)
            expected = (python.drain(), python.idle, python.skipping, python.buffered)
            got = (fast.drain(), fast.idle, fast.skipping, fast.buffered)
            assert got == expected, (
                f"RESP_FUZZ_SEED={seed}, case {case}, limits {limits}:\n"
                f"stream {data!r}\npiece {piece!r}"
            )


def one_request_parse(kind: str, max_request_size: int, max_bulk: int) -> OneRequest:
    """The hot path's test of a read for exactly one request (``server/fastpath.py``): C's, as
    ``resp_split.one_request`` binds it, or the pure-Python ``parse_single``."""
    if kind == "python":
        return functools.partial(parse_single, max_bulk, max_request_size)
    from blinkstore_gunicorn.protocol._split import one

    return functools.partial(one, max_bulk, max_request_size, resp.MAX_ARGUMENTS)


@pytest.mark.parametrize("kind", [pytest.param("C", marks=needs_split), "python"])
def test_a_read_taken_as_one_request_is_what_the_python_reader_reads(kind: str) -> None:
    seed = int(os.environ.get("RESP_FUZZ_SEED", random.randrange(2**32)))
    print(f"RESP_FUZZ_SEED={seed}")
    rnd = random.Random(seed)
    taken = 0
    for case in range(CASES):
        limits = rnd.choice(LIMITS)
        max_request = limits.get("max_request_size", resp.DEFAULT_MAX_REQUEST_SIZE)
        parse = one_request_parse(kind, max_request, limits.get("max_bulk", max_request))
        command = random_command(rnd) if rnd.random() < 0.7 else limit_command(rnd, limits)
        stream = random_pieces(rnd, random_stream(rnd, limits))
        for data in (command, mutated(rnd, command), *stream):
            args = parse(data)
            if args is None:
                continue  # the reader's, as any read
            taken += 1
            python = resp.CommandReader(**limits)
            python.feed(data)
            assert ([args], True) == (python.drain(), python.idle), (
                f"RESP_FUZZ_SEED={seed}, case {case}, limits {limits}: {data!r}"
            )
    assert taken > CASES // 2  # the common case does take the hot path


@pytest.mark.parametrize("reader", FAST_READERS)
@pytest.mark.parametrize("chunk", [1, 5, 64, 1000])
def test_a_pipeline_of_every_size_of_argument_is_read_whole(
    reader: type[PrefixCommandReader], chunk: int
) -> None:
    # Around the 1024-byte header table and the array header table (64 arguments).
    commands = [[b"SET", b"k", b"v" * size] for size in (0, 1, 1023, 1024, 1025, 70_000)]
    commands.append([b"MSET", *[b"x"] * 64])
    wire = b"".join(resp.encode_command(*command) for command in commands)
    assert framing(commands) == wire
    parser = reader()
    out: list[object] = []
    for start in range(0, len(wire), chunk):
        parser.feed(wire[start : start + chunk])
        out += parser.drain()
    assert out == commands and parser.idle and parser.buffered == 0


@needs_hiredis
def test_a_read_over_the_limits_goes_whole_to_the_python_reader() -> None:
    # 2 MiB of small requests in one read: no request in it may be taken unchecked.
    wire = resp.encode_command("PING") * (2 * HIREDIS_MAX_READ // 14)
    reader = HiredisCommandReader()
    reader.feed(wire)
    assert reader.drain() == [[b"PING"]] * (2 * HIREDIS_MAX_READ // 14)


class RecordingReader:
    """hiredis's reader, recording what it is fed."""

    real = resp_hiredis.hiredis.Reader if available() else None
    fed: list[bytes] = []

    def __init__(self, **options: Any) -> None:
        assert self.real is not None
        self._reader = self.real(**options)
        self.gets = self._reader.gets

    def feed(self, data: bytes) -> None:
        self.fed.append(data)
        self._reader.feed(data)


@needs_hiredis
@pytest.mark.parametrize("kind", [b"*", b"~", b">", b"|"])
def test_a_header_announcing_a_huge_list_never_reaches_hiredis(
    kind: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # hiredis allocates the list from the header; freeing 268 million slots took seconds.
    fake = type("hiredis", (), {"Reader": RecordingReader})
    monkeypatch.setattr(resp_hiredis, "hiredis", fake)
    monkeypatch.setattr(RecordingReader, "fed", [])
    reader = HiredisCommandReader()
    small = resp.encode_command("PING")
    reader.feed(small)
    assert reader.drain() == [[b"PING"]]
    assert RecordingReader.fed == [small]
    reader.feed(small + b"*1\r\n" + kind + b"268435456\r\n")
    out = reader.drain()
    assert out[0] == [b"PING"] and isinstance(out[-1], ProtocolError)
    assert RecordingReader.fed == [small]


@needs_hiredis
def test_an_idle_connection_keeps_no_large_hiredis_buffer() -> None:
    # hiredis keeps a buffer the size of its largest read (32 KiB after a 16 KiB read), which
    # no budget counts: after a read over 1 KiB the connection's hiredis reader is a new one.
    reader = HiredisCommandReader()
    small = resp.encode_command("GET", "k") * 10
    large = resp.encode_command("SET", "k", b"v" * 2000)
    kept = reader._hiredis
    reader.feed(small)
    assert reader.drain() == [[b"GET", b"k"]] * 10 and reader._hiredis is kept
    reader.feed(large)
    assert reader.drain() == [[b"SET", b"k", b"v" * 2000]] and reader._hiredis is not kept
