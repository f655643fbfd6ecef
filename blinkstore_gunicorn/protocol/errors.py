"""Values the parsers return when a request cannot be taken as it is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """A malformed stream: returned (never raised) by the parsers.

    After a ``ProtocolError`` the stream cannot be resynchronised, so the
    connection should send the message as an error reply and close.
    """

    message: str


@dataclass(frozen=True, slots=True)
class TooLarge:
    """A request over a size limit: returned (never raised) by the parsers, in its place.

    The parser drops the request's bytes as they arrive, without keeping them, and goes on
    with the next request, so the connection answers this with an error reply and stays
    usable. ``part`` is what broke ``limit``: one argument (``"value"``) of ``size`` bytes,
    the whole request (``"request"``, ``size`` bytes counted when it was refused), or a text
    protocol line (``"line"``, ``size`` bytes up to its newline).
    """

    part: Literal["value", "request", "line"]
    size: int
    limit: int
