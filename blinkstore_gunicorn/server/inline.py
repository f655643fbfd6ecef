"""Redis "inline" commands (``PING\\r\\n``): what redis-benchmark's PING_INLINE test sends.

A connection whose first byte is not ``*`` normally speaks the Blink Store text protocol; if
its first line starts with a RESP command that the text protocol does not have (``PING``,
``INCR``...), it is a Redis client typing inline commands: the connection is a RESP one
from there on, whose reader (``protocol/resp.py``) takes inline and ``*`` requests alike,
as Redis does on any connection.

The two protocols cannot be told apart after that first line: a RESP connection's inline
``GET k`` is RESP's GET, and a Blink Store connection's ``*1`` line is a text request.
"""

from __future__ import annotations

__all__ = ["TEXT_VERBS", "is_inline_resp"]

#: First words that keep a connection on the Blink Store text protocol.
TEXT_VERBS = frozenset({b"GET", b"SET", b"DEL", b"DELETE", b"USAGE", b"STATS", b"QUIT", b"AUTH"})


def is_inline_resp(first_line: bytes, known: frozenset[bytes]) -> bool:
    """Whether ``first_line`` is an inline RESP command (upper-case name in ``known``)."""
    words = first_line.split(None, 1)
    if not words:
        return False
    verb = words[0].upper()
    return verb not in TEXT_VERBS and verb in known
