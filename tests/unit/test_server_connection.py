"""StoreConnection driven directly with a fake transport: detection, order, arbitrary input."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blinkstore_gunicorn.config import StoreSettings
from blinkstore_gunicorn.protocol import resp, resp_hiredis, resp_split
from blinkstore_gunicorn.server import connection as connection_module
from blinkstore_gunicorn.server.commands.registry import DEFERRED
from blinkstore_gunicorn.server.connection import MAX_CLIENTS_REPLY, StoreConnection
from blinkstore_gunicorn.server.dispatch import Client, Dispatcher
from blinkstore_gunicorn.server.store import StoreServer
from tests.unit.test_protocol_differential import SPLIT_BUILT


class FakeTransport:
    def __init__(self, half_close: bool = False) -> None:
        self.written: list[bytes] = []
        self.closed = False
        self.reading = True
        self.half_close = half_close
        self.eof_written = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.written.append(data)

    def close(self) -> None:
        self.closed = True

    abort = close

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return self.half_close

    def write_eof(self) -> None:
        self.eof_written = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def get_extra_info(self, name: str) -> Any:
        return None

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0  # everything written counts as sent

    @property
    def output(self) -> bytes:
        return b"".join(self.written)


PING = resp.encode_command("PING")


def connect(server: StoreServer, half_close: bool = False) -> tuple[StoreConnection, FakeTransport]:
    connection = StoreConnection(server)
    transport = FakeTransport(half_close)
    connection.connection_made(transport)  # type: ignore[arg-type]
    return connection, transport


READERS = ["python", "hiredis", "split"]


def use_reader(reader: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the connections made next parse requests with ``reader`` of :data:`READERS`: the
    Python reader, hiredis's or the C splitter's (the first two with every C helper off, the
    last with them on)."""
    if reader == "hiredis" and not resp_hiredis.available():
        pytest.skip("hiredis is not installed")
    if reader == "split" and not SPLIT_BUILT:
        pytest.skip("protocol/_split.c is not built")
    monkeypatch.setenv(resp_hiredis.ENV, "1" if reader == "hiredis" else "0")
    monkeypatch.setenv(resp_split.NATIVE_ENV, "1" if reader == "split" else "0")


@pytest.fixture(params=READERS)
def server(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> StoreServer:
    """A server whose connections parse requests with each of :data:`READERS` in turn."""
    use_reader(request.param, monkeypatch)
    return StoreServer(StoreSettings(unix="/nonexistent/s.sock", max_request_size=4096))


def feed(connection: StoreConnection, data: bytes, chunk: int) -> None:
    for start in range(0, len(data), chunk):
        connection.data_received(data[start : start + chunk])


@pytest.mark.parametrize("chunk", [1, 3, 7, 1000])
def test_protocols_are_detected_whatever_the_chunking(server: StoreServer, chunk: int) -> None:
    conn, transport = connect(server)
    feed(conn, resp.encode_command("SET", "k", "v") + resp.encode_command("GET", "k"), chunk)
    assert transport.output == b"+OK\r\n$1\r\nv\r\n"
    conn, transport = connect(server)
    feed(conn, b"GET k\nDEL k\nGET k\n", chunk)
    assert transport.output == b"VALUE dg==\nOK\nNOT_FOUND\n"
    conn, transport = connect(server)
    feed(conn, b"PING\r\nECHO hi\r\n", chunk)
    assert transport.output == b"+PONG\r\n$2\r\nhi\r\n"


def test_one_write_per_pipelined_batch(server: StoreServer) -> None:
    conn, transport = connect(server)
    conn.data_received(resp.encode_command("PING") * 50)
    assert transport.written == [b"+PONG\r\n" * 50]
    assert server.stats.commands_processed == 50


def test_backpressure_parks_the_rest_of_the_batch(server: StoreServer) -> None:
    server.engine.set(b"big", b"x" * (1 << 20))
    conn, transport = connect(server)
    pause_after = [1]

    original_write = transport.write

    def write(data: bytes) -> None:
        original_write(data)
        pause_after[0] -= 1
        if pause_after[0] == 0:
            conn.pause_writing()

    transport.write = write  # type: ignore[method-assign]
    conn.data_received(resp.encode_command("GET", "big") * 3 + resp.encode_command("PING"))
    assert not transport.is_reading()
    written = len(transport.output)
    assert 0 < written < 3 * (1 << 20)
    conn.resume_writing()
    assert transport.is_reading()
    reply = b"$1048576\r\n" + b"x" * (1 << 20) + b"\r\n"
    assert transport.output == reply * 3 + b"+PONG\r\n"


def test_reads_of_a_large_value_share_one_reply_written_on_its_own(server: StoreServer) -> None:
    value = b"x" * (1 << 20)
    server.engine.set(b"big", value)
    conn, transport = connect(server)
    conn.data_received(resp.encode_command("PING") + resp.encode_command("GET", "big") * 2)
    reply = b"$1048576\r\n" + value + b"\r\n"
    # Not joined with the small reply before it (a copy), and not copied again per read.
    assert transport.written == [b"+PONG\r\n", reply, reply]
    assert transport.written[2] is transport.written[1]
    other, other_transport = connect(server)
    other.data_received(resp.encode_command("GET", "big"))
    assert other_transport.written[0] is transport.written[1]
    resp.forget_large_bulk()
    other.data_received(resp.encode_command("GET", "big"))
    assert other_transport.written[1] == reply
    assert other_transport.written[1] is not reply


def test_single_reads_wait_behind_a_deferred_reply(server: StoreServer) -> None:
    """One command per read (the hot path) keeps pipeline order around a deferred reply."""
    waiting: list[Client] = []

    def wait_handler(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
        waiting.append(c)
        return DEFERRED

    server.dispatcher.full_table[b"WAIT"] = (wait_handler, 1)

    async def main() -> None:
        conn, transport = connect(server)
        for _ in range(2):
            conn.data_received(resp.encode_command("SET", "k", "v"))
            conn.data_received(resp.encode_command("WAIT"))
            conn.data_received(resp.encode_command("GET", "k"))
            conn.data_received(resp.encode_command("PING"))
            assert transport.output == b"+OK\r\n"
            waiting.pop().deliver(b"+DONE\r\n")
            await asyncio.sleep(0)  # parked requests run on the next loop iteration
            assert transport.output == b"+OK\r\n+DONE\r\n$1\r\nv\r\n+PONG\r\n"
            transport.written.clear()
            # Half a command, then the rest: the reader, not the one-command shortcut.
            conn.data_received(b"*1\r\n$4\r\nPI")
            conn.data_received(b"NG\r\n")
            assert transport.output == b"+PONG\r\n"
            transport.written.clear()

    asyncio.run(main())


@pytest.mark.parametrize("reader", READERS)
def test_a_single_request_over_the_size_limits_is_refused_as_the_reader_refuses_it(
    reader: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The one-request path used to take any read of up to 1 KiB: it echoed a 100-byte ECHO,
    # answered a GET of a 100-byte key, and SET's own check named the key, not the request.
    use_reader(reader, monkeypatch)
    settings = StoreSettings(unix="/nonexistent/s.sock", max_key_size=16, max_value_size=16)
    server = StoreServer(settings)
    refused = b"-ERR value too large: value of 100 bytes exceeds max value size 16\r\n"
    for request in (
        resp.encode_command("ECHO", "x" * 100),
        resp.encode_command("GET", "k" * 100),
        resp.encode_command("SET", "k" * 100, "v"),
        resp.encode_command("SET", "k", "v" * 100),
    ):
        conn, transport = connect(server)
        conn.data_received(PING)  # the first read picks the protocol (the reader's)
        conn.data_received(request)  # one whole request in one read: the hot path
        conn.data_received(PING + request)  # a pipeline: the reader
        assert transport.written[1:] == [refused, b"+PONG\r\n" + refused], request


def test_a_closing_connection_lingers_over_unread_input(server: StoreServer) -> None:
    async def main() -> None:
        conn, transport = connect(server, half_close=True)
        conn.data_received(b"*x\r\n")
        # The reply goes out, then EOF; the socket stays open to drop what is still coming.
        assert transport.output == b"-ERR Protocol error: invalid multibulk length\r\n"
        assert transport.eof_written and not transport.is_closing() and transport.reading
        conn.data_received(resp.encode_command("PING"))
        assert transport.output.endswith(b"length\r\n") and not transport.is_closing()
        # ...but only so much of it.
        conn.data_received(b"x" * connection_module.LINGER_BYTES)
        assert transport.is_closing()
        # A client that hangs up ends the linger at once; a silent one, the timer.
        conn, transport = connect(server, half_close=True)
        conn.data_received(b"*x\r\n")
        assert not conn.eof_received()
        conn, transport = connect(server, half_close=True)
        conn.data_received(b"*x\r\n")
        deadline = asyncio.get_running_loop().time() + connection_module.LINGER_SECONDS + 5
        while not transport.is_closing() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        assert transport.is_closing()

    asyncio.run(main())


def test_quit_and_protocol_errors_close(server: StoreServer) -> None:
    conn, transport = connect(server)
    conn.data_received(resp.encode_command("QUIT") + resp.encode_command("PING"))
    assert transport.output == b"+OK\r\n" and transport.closed
    conn, transport = connect(server)
    conn.data_received(b"*1\r\n$4\r\nPING\r\n*x\r\n")
    assert transport.output == b"+PONG\r\n-ERR Protocol error: invalid multibulk length\r\n"
    assert transport.closed
    conn.data_received(resp.encode_command("PING"))  # ignored once closing
    assert transport.output.endswith(b"length\r\n")


def test_max_connections_refuses_before_any_byte() -> None:
    server = StoreServer(StoreSettings(unix="/nonexistent/s.sock", max_connections=1))
    first, first_transport = connect(server)
    _, second_transport = connect(server)
    assert second_transport.output == MAX_CLIENTS_REPLY and second_transport.closed
    assert not first_transport.closed
    first.connection_lost(None)
    _, third_transport = connect(server)
    assert not third_transport.closed
    assert server.stats.rejected_connections == 1


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    chunks=st.lists(
        st.one_of(
            st.binary(max_size=64),
            st.sampled_from(
                [
                    b"*",
                    b"*2\r\n",
                    b"$3\r\nGET\r\n",
                    b"$1\r\nk\r\n",
                    b"\r\n",
                    b"\n",
                    b"SET k v\n",
                    b"$99999999\r\n",
                    b"*-1\r\n",
                    b"PING",
                    b"GET",
                    b" ",
                    b"\x00\xff",
                ]
            ),
        ),
        max_size=20,
    )
)
def test_arbitrary_input_never_raises(
    server: StoreServer, chunks: list[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.clear()
    conn, _ = connect(server)
    with caplog.at_level(logging.ERROR, logger="blinkstore.server"):
        for chunk in chunks:
            if chunk:
                conn.data_received(chunk)
        conn.eof_received()
        conn.connection_lost(None)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert server.connections == set()


def test_a_partial_text_line_is_counted_once_for_the_client_budget() -> None:
    server = StoreServer(StoreSettings(unix="/nonexistent/s.sock"))
    conn, _ = connect(server)
    conn.data_received(b"SET k " + b"v" * 39_994)  # 40,000 bytes: protocol not chosen yet
    assert conn.held() == (40_000, 0)
    conn.data_received(b"v" * 30_000)  # past 64 KiB without a newline: the text reader
    assert conn.held() == (70_000, 0)
    conn.data_received(b"\n")
    assert conn.held() == (0, 0)


def test_the_store_lets_go_of_the_shared_reply_every_second(server: StoreServer) -> None:
    value = b"x" * (1 << 20)
    server.engine.set(b"big", value)
    conn, transport = connect(server)
    conn.data_received(resp.encode_command("GET", "big"))
    shared = transport.written.pop()
    assert reply_is_shared(shared, server)
    # What the one-second audit runs: the reply (and its value, even once deleted) is let go.
    server._audit_buffers()
    assert not reply_is_shared(shared, server)


def reply_is_shared(reply: bytes, server: StoreServer) -> bool:
    """Whether a new GET of ``big`` gets ``reply`` itself (the remembered one)."""
    conn, transport = connect(server)
    conn.data_received(resp.encode_command("GET", "big"))
    return transport.written[0] is reply
