"""The Blink Store text protocol against a real ``blinkstore serve``, over Unix and TCP."""

from __future__ import annotations

import base64
import socket

import pytest

from harness.processes import StoreProcess
from tests.support.sockets import read_until_closed, recv_line


def test_exchange_from_design_byte_for_byte(blinkstore: StoreProcess) -> None:
    with blinkstore.connect() as sock:

        def ask(line: bytes) -> bytes:
            sock.sendall(line)
            return recv_line(sock)

        assert ask(b"GET greeting\n") == b"NOT_FOUND\n"
        assert ask(b"SET greeting hello brave new world\n") == b"OK\n"
        assert ask(b"GET greeting\n") == b"VALUE %s\n" % base64.b64encode(b"hello brave new world")
        usage = ask(b"USAGE\n")
        assert usage.startswith(b"USAGE ") and int(usage[6:-1]) > len(b"greeting")
        assert ask(b"STATS\n") == usage
        assert ask(b"DELETE greeting\n") == b"OK\n"
        assert ask(b"DELETE greeting\n") == b"NOT_FOUND\n"
        assert ask(b"SET other 1\n") == b"OK\n"
        assert ask(b"DEL other\n") == b"OK\n"
        assert ask(b"\n") == b"ERROR unknown command\n"
        assert ask(b"FLY me to the moon\n") == b"ERROR unknown command\n"
        assert ask(b"GET\n") == b"ERROR GET requires key\n"
        assert ask(b"SET\n") == b"ERROR SET requires key\n"
        # A trailing \r is tolerated and verbs are case-insensitive.
        assert ask(b"set crlf value\r\n") == b"OK\n"
        assert ask(b"get crlf\r\n") == b"VALUE dmFsdWU=\n"
        usage_after = ask(b"USAGE\n")
        assert int(usage_after[6:-1]) > 0
        sock.sendall(b"QUIT\n")
        assert read_until_closed(sock) == b""


def test_pipelined_lines_answered_in_order(blinkstore: StoreProcess) -> None:
    lines = b"".join(b"SET k%d v%d\nGET k%d\n" % (i, i, i) for i in range(200))
    expected = b"".join(b"OK\nVALUE %s\n" % base64.b64encode(b"v%d" % i) for i in range(200))
    with blinkstore.connect() as sock:
        sock.sendall(lines + b"QUIT\n")
        assert read_until_closed(sock) == expected


def test_a_line_split_across_packets(blinkstore: StoreProcess) -> None:
    with blinkstore.connect() as sock:
        for piece in (b"S", b"ET spl", b"it a b", b" c\n"):
            sock.sendall(piece)
        assert recv_line(sock) == b"OK\n"
        sock.sendall(b"GET split\n")
        assert recv_line(sock) == b"VALUE %s\n" % base64.b64encode(b"a b c")


def test_text_and_resp_clients_share_the_data(blinkstore: StoreProcess) -> None:
    with blinkstore.connect() as text_sock, blinkstore.connect() as resp_sock:
        text_sock.sendall(b"SET shared from text\n")
        assert recv_line(text_sock) == b"OK\n"
        resp_sock.sendall(b"*2\r\n$3\r\nGET\r\n$6\r\nshared\r\n")
        assert resp_sock.recv(100) == b"$9\r\nfrom text\r\n"


@pytest.mark.parametrize("request_bytes", [b"GET k", b"SET a 1\nGET k"])
def test_last_line_without_newline_is_answered_at_eof(
    blinkstore_unix: StoreProcess, request_bytes: bytes
) -> None:
    with blinkstore_unix.connect() as sock:
        sock.sendall(b"SET k v\n")
        assert recv_line(sock) == b"OK\n"
    with blinkstore_unix.connect() as sock:
        sock.sendall(request_bytes)
        sock.shutdown(socket.SHUT_WR)  # what `printf 'GET k' | nc -N` does
        assert read_until_closed(sock).endswith(b"VALUE dg==\n")
