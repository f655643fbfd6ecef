"""The Blink Store text protocol on a near cache: ``GET``, ``SET`` and ``DELETE`` lines take
the same paths as their RESP twins (near read, forwarded write), and their RESP replies are
turned into the protocol's reply lines."""

from __future__ import annotations

from typing import TYPE_CHECKING

from blinkstore_gunicorn.protocol import resp, text
from blinkstore_gunicorn.server.commands.registry import DEFERRED
from blinkstore_gunicorn.server.upstream.wire import Err, FrameReader

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client
    from blinkstore_gunicorn.server.upstream.service import Upstream

__all__ = ["TEXT_VERBS", "execute_text_upstream"]

#: The text protocol's verbs that reach the upstream (USAGE, QUIT and AUTH stay local).
TEXT_VERBS = frozenset({"GET", "SET", "DELETE"})


def _line(raw: bytes) -> bytes:
    """The text reply line for the RESP reply ``raw`` (GET, SET or DEL)."""
    reader = FrameReader()
    reader.feed(raw)
    ((_, value),) = reader.frames()
    if isinstance(value, Err):
        return text.error_line(value.removeprefix("ERR "))
    if isinstance(value, bytes):
        return text.value_line(value)
    if value is None or value == 0:
        return text.NOT_FOUND_LINE
    return text.OK_LINE


class _TextClient:
    """Stands for a text connection where the near cache expects a RESP one."""

    __slots__ = ("_client", "id", "nil", "on_close", "resp3")

    def __init__(self, client: Client) -> None:
        self._client = client
        self.id = client.id
        self.on_close = client.on_close
        self.resp3 = False
        self.nil = resp.NIL

    def deliver(self, raw: bytes) -> None:
        self._client.deliver(_line(raw))


def execute_text_upstream(upstream: Upstream, client: Client, request: text.Request) -> bytes:
    """The reply line (or ``DEFERRED``) for a GET, SET or DELETE line."""
    proxy: Client = _TextClient(client)  # type: ignore[assignment]
    if request.verb == "GET":
        reply = upstream.near.get(proxy, request.key)
    elif request.verb == "SET":
        reply = upstream.forward(proxy, [b"SET", request.key, request.value])
    else:
        reply = upstream.forward(proxy, [b"DEL", request.key])
    return reply if reply is DEFERRED else _line(reply)
