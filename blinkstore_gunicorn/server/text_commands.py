"""Blink Store text protocol dispatch: one parsed line in, one reply line out.

The replies are byte for byte those of Blink Store (see ``docs/protocol.md``). One extension:
when the store has a password, a connection first sends ``AUTH <password>`` (``OK`` or
``ERROR invalid password``); until then every other line gets ``ERROR authentication required``.
"""

from __future__ import annotations

from collections.abc import Callable

from blinkstore_gunicorn.engine import EngineError, KeyTooLarge, WrongType
from blinkstore_gunicorn.protocol import text
from blinkstore_gunicorn.protocol.errors import TooLarge
from blinkstore_gunicorn.server.dispatch import Client, Dispatcher
from blinkstore_gunicorn.server.upstream.text import TEXT_VERBS, execute_text_upstream

__all__ = ["execute_text"]

AUTH_REQUIRED = text.error_line("authentication required")
INVALID_PASSWORD = text.error_line("invalid password")
NO_PASSWORD = text.error_line("no password is configured")

TextHandler = Callable[[Dispatcher, Client, text.Request], bytes]


def _get(d: Dispatcher, c: Client, request: text.Request) -> bytes:
    try:
        value = d.engine.get(request.key)
    except WrongType as exc:  # a key a RESP client made a hash, list or set
        return text.error_line(str(exc))
    return text.NOT_FOUND_LINE if value is None else text.value_line(value)


def _set(d: Dispatcher, c: Client, request: text.Request) -> bytes:
    try:
        d.write(request.key, request.value)
    except KeyTooLarge as exc:
        return text.error_line(f"key too large: {exc}")
    except EngineError as exc:
        return text.error_line(f"value too large: {exc}")
    return text.OK_LINE


def _delete(d: Dispatcher, c: Client, request: text.Request) -> bytes:
    return text.OK_LINE if d.engine.delete(request.key) else text.NOT_FOUND_LINE


def _usage(d: Dispatcher, c: Client, request: text.Request) -> bytes:
    return text.usage_line(d.engine.used_bytes)


def _quit(d: Dispatcher, c: Client, request: text.Request) -> bytes:
    c.close_after = True
    return b""


def _auth(d: Dispatcher, c: Client, request: text.Request) -> bytes:
    if not d.requires_auth:
        return NO_PASSWORD
    if not d.check_password(request.value):
        return INVALID_PASSWORD
    d.authenticate(c)
    return text.OK_LINE


_HANDLERS: dict[str, TextHandler] = {
    "GET": _get,
    "SET": _set,
    "DELETE": _delete,
    "USAGE": _usage,
    "QUIT": _quit,
    "AUTH": _auth,
}
_PREAUTH = frozenset({"AUTH", "QUIT"})


def execute_text(d: Dispatcher, c: Client, item: text.Parsed) -> bytes:
    """The reply line for one parsed line (or for a line too long to keep)."""
    if isinstance(item, text.Request):
        verb = item.verb
        if not c.authenticated and verb not in _PREAUTH:
            return AUTH_REQUIRED
        if d.upstream is not None and verb in TEXT_VERBS:
            return execute_text_upstream(d.upstream, c, item)
        return _HANDLERS[verb](d, c, item)
    if isinstance(item, TooLarge):
        if c.authenticated:
            return text.error_line(d.too_large(item))
        c.close_after = True  # as the pre-auth size limit does (``connection.py``)
        return AUTH_REQUIRED
    return text.error_line(item.message)
