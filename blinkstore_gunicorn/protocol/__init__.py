"""Sans-IO wire protocols: bytes in, commands or replies out, no sockets.

``resp`` is the RESP2 subset used by redis-cli, redis-py and our clients; ``text`` is the
line-based Blink Store protocol. The store picks one per connection from the first byte
(:func:`is_resp_start`).
"""

from blinkstore_gunicorn.protocol import resp, text
from blinkstore_gunicorn.protocol.errors import ProtocolError, TooLarge


def is_resp_start(first_byte: int) -> bool:
    """Whether a connection whose first byte is ``first_byte`` speaks RESP (``*``)."""
    return first_byte == 0x2A


__all__ = ["ProtocolError", "TooLarge", "is_resp_start", "resp", "text"]
