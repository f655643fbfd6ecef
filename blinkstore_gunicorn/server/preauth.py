"""The size gate of a connection that has not authenticated yet.

Before AUTH on a password-protected store a connection may only send small requests (at most
:data:`PREAUTH_REQUEST_MAX` bytes each, the way Redis limits unauthenticated clients since
CVE-2021-32675): a second reader with that limit checks the same bytes as the connection's
own reader, so a request announced larger (a bulk header, a long line) fails the gate before
its payload is buffered, and the connection is closed (``StoreConnection`` does that once the
read has run: an AUTH earlier in the same read still counts).
"""

from __future__ import annotations

import logging

from blinkstore_gunicorn.protocol import is_resp_start, resp, text
from blinkstore_gunicorn.protocol.errors import ProtocolError, TooLarge
from blinkstore_gunicorn.server.throttle import LogThrottle

__all__ = ["PREAUTH_REQUEST_MAX", "PreauthGate", "log_preauth_close"]

log = logging.getLogger("blinkstore.server")

#: Largest request accepted before AUTH (AUTH, HELLO, QUIT... are far smaller).
PREAUTH_REQUEST_MAX = 4 * 1024


class PreauthGate:
    """Reads what an unauthenticated connection sends with the pre-auth size limit."""

    __slots__ = ("_reader", "failed")

    def __init__(self) -> None:
        #: Chosen by the first byte, as the connection's own reader is.
        self._reader: resp.CommandReader | text.LineReader | None = None
        #: A request over the limit (or a protocol error) was seen: the connection must close.
        self.failed = False

    def check(self, data: bytes) -> None:
        """Feed the bytes the connection received; a request too large sets :attr:`failed`."""
        reader = self._reader
        if reader is None:
            if is_resp_start(data[0]):
                reader = resp.CommandReader(max_request_size=PREAUTH_REQUEST_MAX)
            else:
                reader = text.LineReader(max_line=PREAUTH_REQUEST_MAX)
            self._reader = reader
        reader.feed(data)
        parsed = reader.drain()
        if reader.skipping or any(isinstance(item, ProtocolError | TooLarge) for item in parsed):
            self.failed = True


def log_preauth_close(throttle: LogThrottle, client_id: int, peer: str) -> None:
    """Warn (at the throttle's rate) that a connection is closed for failing the gate."""
    count = throttle.event()
    if count:
        log.warning(
            "closed %d connection(s) sending a request over %d bytes before AUTH "
            "(last: client %d, %s)",
            count,
            PREAUTH_REQUEST_MAX,
            client_id,
            peer,
        )
