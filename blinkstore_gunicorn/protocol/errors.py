"""Values the parsers return when the byte stream itself is broken."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """A malformed stream: returned (never raised) by the parsers.

    After a ``ProtocolError`` the stream cannot be resynchronised, so the
    connection should send the message as an error reply and close.
    """

    message: str
