"""Requests split in C (the optional ``protocol/_split.c``), with :class:`~.resp.CommandReader`
as the authority.

The C function takes requests from the start of a read only while each is canonical RESP:
``*<n>\\r\\n`` then ``n`` times ``$<len>\\r\\n<bytes>\\r\\n``, numbers without sign or leading
zero, ``n >= 1``, and every size strictly below the limit the Python reader applies (arguments
per request, bytes per argument, bytes per request). It stops at anything else: another RESP
type, a nested array, a missing CRLF after a value, an empty array, a huge count, a size at a
limit, the partial request at the end of a read. Those bytes go to the Python reader
(:class:`~.resp_prefix.PrefixCommandReader`), which answers them as it would any read. What C
takes is what the Python reader would read, so, unlike hiredis's requests, nothing is encoded
back and compared.

:func:`one_request` is the same test for a read that must be exactly one request (a connection's
request/response path, ``server/fastpath.py``): the C function ``one`` with a connection's
limits bound, which returns the argument list or None, without :func:`split`'s tuple and list.

An array header is not trusted for an allocation: one announcing more arguments than the rest
of the read can hold is a request not complete yet, which the Python reader then keeps or
refuses (``*268435456\\r\\n`` is 12 bytes and costs C one comparison).

The C helper is built by ``setup.py`` where a compiler is at hand; ``BLINKSTORE_NATIVE=0`` in
the store's environment turns it off with the other C helpers (see :func:`available`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Final

from blinkstore_gunicorn.protocol.resp import DEFAULT_MAX_REQUEST_SIZE, MAX_ARGUMENTS, Parsed
from blinkstore_gunicorn.protocol.resp_prefix import PrefixCommandReader

_c_split: Callable[[bytes, int, int, int], tuple[list[Parsed], int]] | None
_c_one: Callable[[int, int, int, bytes], list[bytes] | None] | None
try:
    from blinkstore_gunicorn.protocol._split import one as _c_one
    from blinkstore_gunicorn.protocol._split import split as _c_split
except ImportError:  # built only where a C compiler was at hand (setup.py)
    _c_split = _c_one = None

__all__ = ["NATIVE_ENV", "OneRequest", "SplitCommandReader", "available", "one_request"]

#: ``parse(data)``: the arguments of ``data`` when it is exactly one request that a reader with
#: the bound limits would read unchanged, else None (then the reader is asked).
OneRequest = Callable[[bytes], "list[bytes] | None"]

#: The switch of every C helper ("0": off). It is ``shm.native.ENV``; the protocol layer names
#: it itself because the region's modules import this layer, not the other way round.
NATIVE_ENV: Final = "BLINKSTORE_NATIVE"


def available() -> bool:
    """Whether the C splitter is built and ``BLINKSTORE_NATIVE`` does not turn it off.

    The environment is read each time (not once at import), so that a test can switch.
    """
    return _c_split is not None and os.environ.get(NATIVE_ENV, "1") != "0"


def one_request(max_request_size: int, max_bulk: int) -> OneRequest | None:
    """The C test of a read for exactly one request, with these limits (those of
    :class:`SplitCommandReader`), or None when :func:`available` is False."""
    if not available():
        return None
    assert _c_one is not None
    return functools.partial(_c_one, max_bulk, max_request_size, MAX_ARGUMENTS)


class SplitCommandReader(PrefixCommandReader):
    """:class:`~.resp.CommandReader`'s interface and results; canonical requests split in C."""

    __slots__ = ("_c_split",)

    def __init__(
        self, max_request_size: int = DEFAULT_MAX_REQUEST_SIZE, max_bulk: int | None = None
    ) -> None:
        if _c_split is None:
            raise RuntimeError("the C request splitter (protocol/_split.c) is not built")
        super().__init__(max_request_size, max_bulk)
        self._c_split = _c_split

    def _split(self, data: bytes) -> tuple[list[Parsed], int]:
        return self._c_split(data, self._max_bulk, self._max_request_size, MAX_ARGUMENTS)
