"""The C request splitter (``protocol/_split.c``): what it takes, what it leaves to the Python
reader, what it allocates, and which reader a connection gets.

The seeded differential fuzz of every reader is in ``test_protocol_differential.py``; here each
input the splitter must not take is named, and must be left, from its first byte, to
``resp.CommandReader``, whose answer the splitting reader then gives.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tracemalloc

import pytest

from blinkstore_gunicorn.protocol import resp, resp_split
from blinkstore_gunicorn.protocol.resp_hiredis import ENV as HIREDIS_ENV
from blinkstore_gunicorn.protocol.resp_hiredis import HiredisCommandReader, command_reader
from blinkstore_gunicorn.protocol.resp_hiredis import available as hiredis_available
from blinkstore_gunicorn.protocol.resp_prefix import PrefixCommandReader
from blinkstore_gunicorn.protocol.resp_split import NATIVE_ENV, SplitCommandReader
from blinkstore_gunicorn.shm import native

if importlib.util.find_spec("blinkstore_gunicorn.protocol._split") is None:
    pytest.skip("protocol/_split.c is not built", allow_module_level=True)

from blinkstore_gunicorn.protocol._split import split

LIMITS = {"max_request_size": 300, "max_bulk": 80}
PING = resp.encode_command("PING")


def mset(last: int) -> bytes:
    """An MSET of arguments below max_bulk, ``299 + last - 22`` bytes from its ``*`` to the end
    of its last value (the size the reader measures): 299 for ``last=22``."""
    return resp.encode_command("MSET", b"a" * 79, b"b" * 79, b"c" * 79, b"d" * last)


def c_split(data: bytes) -> tuple[list[resp.Parsed], int]:
    """The C function with :data:`LIMITS`, as :class:`SplitCommandReader` calls it."""
    return split(data, LIMITS["max_bulk"], LIMITS["max_request_size"], resp.MAX_ARGUMENTS)


def outcome(
    reader: resp.CommandReader | PrefixCommandReader, data: bytes
) -> tuple[list[resp.Parsed], bool, bool, int]:
    """What a connection reads of ``reader`` after ``data``: commands, and what it holds."""
    reader.feed(data)
    return reader.drain(), reader.idle, reader.skipping, reader.buffered


def test_canonical_requests_are_taken_whole_without_the_python_reader() -> None:
    commands = [[b"GET", b"k"], [b"SET", b"k", b"v" * 79], [b"SET", b"", b"a\r\n*1\r\n"]]
    wire = b"".join(resp.encode_command(*command) for command in commands)
    assert c_split(wire) == (commands, len(wire))
    reader = SplitCommandReader(**LIMITS)
    assert outcome(reader, wire) == (commands, True, False, 0)
    assert reader._python.idle and reader._python.buffered == 0


#: Each left whole to the Python reader, after the PING before it.
NOT_TAKEN = {
    "inline": b"PING\r\n",
    "count with a leading zero": b"*01\r\n$4\r\nPING\r\n",
    "length with a leading zero": b"*1\r\n$04\r\nPING\r\n",
    "zero length spelled 00": b"*1\r\n$00\r\n\r\n",
    "count with a sign": b"*+1\r\n$4\r\nPING\r\n",
    "length with a sign": b"*1\r\n$+4\r\nPING\r\n",
    "count with a space": b"* 1\r\n$4\r\nPING\r\n",
    "count with an underscore": b"*1_0\r\n",
    "header ended by LF alone": b"*1\n$4\r\nPING\r\n",
    "empty array": b"*0\r\n" + PING,
    "null array": b"*-1\r\n" + PING,
    "null bulk": b"*1\r\n$-1\r\n",
    "simple string element": b"*1\r\n+PING\r\n",
    "integer element": b"*2\r\n$3\r\nGET\r\n:1\r\n",
    "nested array": b"*2\r\n$3\r\nGET\r\n*1\r\n$1\r\nk\r\n",
    "no CRLF after a bulk": b"*1\r\n$4\r\nPINGxy" + PING,
    "LF CR after a bulk": b"*1\r\n$4\r\nPING\n\r" + PING,
    "half a CRLF after a bulk": b"*1\r\n$4\r\nPING\r",
    "partial request": b"*2\r\n$3\r\nGET\r\n$1\r\n",
    "partial header": b"*2\r\n$3",
    "huge count": b"*268435456\r\n",
    "count of 19 digits": b"*" + b"9" * 19 + b"\r\n",
    "count over what the read holds": b"*3\r\n$3\r\nGET\r\n$1\r\nk\r\n",
    "huge length": b"*1\r\n$600000000\r\n",
    "length of 19 digits": b"*1\r\n$" + b"9" * 19 + b"\r\nx\r\n",
    "argument at max_bulk": resp.encode_command("SET", "k", b"v" * 80),
    "argument over max_bulk": resp.encode_command("SET", "k", b"v" * 81) + PING,
    "request at max_request_size": mset(23) + PING,
    "request over max_request_size": mset(24) + PING,
}


@pytest.mark.parametrize("tail", NOT_TAKEN.values(), ids=NOT_TAKEN.keys())
def test_anything_else_is_left_to_the_python_reader_from_its_first_byte(tail: bytes) -> None:
    assert c_split(PING + tail) == ([[b"PING"]], len(PING))
    expected = outcome(resp.CommandReader(**LIMITS), PING + tail)
    assert outcome(SplitCommandReader(**LIMITS), PING + tail) == expected


def test_the_sizes_just_below_the_limits_are_taken() -> None:
    assert len(mset(22)) - 2 == 299
    for wire in (resp.encode_command("SET", "k", b"v" * 79), mset(22)):
        (args,) = outcome(resp.CommandReader(**LIMITS), wire)[0]
        assert c_split(wire) == ([args], len(wire))


def test_a_count_at_the_argument_limit_is_the_python_readers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The reader refuses more than MAX_ARGUMENTS; the splitter takes only fewer.
    monkeypatch.setattr(resp, "MAX_ARGUMENTS", 3)
    monkeypatch.setattr(resp_split, "MAX_ARGUMENTS", 3)
    below, at, over = (resp.encode_command(*[b"x"] * count) for count in (2, 3, 4))
    assert split(below + at, 80, 300, 3) == ([[b"x", b"x"]], len(below))
    for wire in (below + at, below + over):
        assert outcome(SplitCommandReader(), wire) == outcome(resp.CommandReader(), wire)


def test_an_announced_count_allocates_nothing_the_read_cannot_fill() -> None:
    # 1,048,575 slots would be 8 MiB; the read holds 10 arguments: not complete, nothing taken.
    data = b"*1048575\r\n" + b"$1\r\nx\r\n" * 10
    tracemalloc.start()
    try:
        assert split(data, 2**29, 2**29, resp.MAX_ARGUMENTS) == ([], 0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


def test_the_switch_is_the_one_of_every_c_helper() -> None:
    assert NATIVE_ENV == native.ENV


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, SplitCommandReader),
        ({HIREDIS_ENV: "0"}, SplitCommandReader),
        ({NATIVE_ENV: "0"}, HiredisCommandReader),
        ({NATIVE_ENV: "0", HIREDIS_ENV: "0"}, resp.CommandReader),
    ],
)
def test_the_environment_chooses_the_reader_in_order(
    env: dict[str, str], expected: type[object], monkeypatch: pytest.MonkeyPatch
) -> None:
    if expected is HiredisCommandReader and not hiredis_available():
        pytest.skip("hiredis is not installed")
    for name in (NATIVE_ENV, HIREDIS_ENV):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reader = command_reader(4096, 100)
    assert type(reader) is expected
    assert outcome(reader, PING) == ([[b"PING"]], True, False, 0)


@pytest.mark.parametrize(
    ("missing", "expected"),
    [
        (["blinkstore_gunicorn.protocol._split"], "HiredisCommandReader"),
        (["hiredis"], "SplitCommandReader"),
        (["blinkstore_gunicorn.protocol._split", "hiredis"], "CommandReader"),
    ],
)
def test_without_a_compiler_or_hiredis_the_next_reader_serves(
    missing: list[str], expected: str
) -> None:
    # Made unimportable, as where no compiler built the C helper or the ``redis`` extra is not
    # installed.
    if expected == "HiredisCommandReader" and not hiredis_available():
        pytest.skip("hiredis is not installed")
    code = (
        "import sys\n"
        f"for name in {missing!r}: sys.modules[name] = None\n"
        "from blinkstore_gunicorn.protocol import resp, resp_hiredis\n"
        "reader = resp_hiredis.command_reader()\n"
        f"assert type(reader).__name__ == {expected!r}, type(reader)\n"
        "reader.feed(resp.encode_command('PING'))\n"
        "assert reader.drain() == [[b'PING']]\n"
    )
    env = {
        name: value for name, value in os.environ.items() if name not in {NATIVE_ENV, HIREDIS_ENV}
    }
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, env=env
    )
    assert done.returncode == 0, done.stderr
