"""Connection commands (Redis's "connection" group): PING, ECHO, QUIT, AUTH, HELLO (CLIENT is
``clients.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands.registry import command
from blinkstore_gunicorn.server.commands.replies import (
    ERR_SYNTAX,
    REDIS_COMPAT_VERSION,
    as_text,
    client_name_error,
    parse_int,
    wrong_args,
)

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher

__all__: list[str] = []

WRONGPASS = resp.error("WRONGPASS invalid username-password pair or user is disabled.")
ERR_NO_PASSWORD = resp.error(
    "ERR AUTH <password> called without any password configured for the default user. "
    "Are you sure your configuration is correct?"
)
NOPROTO = resp.error("NOPROTO unsupported protocol version")


@command("ping", -1, "fast")
def cmd_ping(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``PING [message]``."""
    if len(args) == 1:
        return resp.PONG
    if len(args) == 2:
        return resp.bulk(args[1])
    return wrong_args("ping")


@command("echo", 2, "fast")
def cmd_echo(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``ECHO message``."""
    return resp.bulk(args[1])


@command("quit", -1, "fast")
def cmd_quit(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``QUIT``: reply OK, then the connection closes."""
    c.close_after = True
    return resp.OK


@command("auth", -2, "fast no-auth")
def cmd_auth(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``AUTH password`` or ``AUTH default password``."""
    if len(args) > 3:
        return ERR_SYNTAX
    if not d.requires_auth:
        return ERR_NO_PASSWORD
    return _auth(d, c, args[1] if len(args) == 3 else None, args[-1])


def _auth(d: Dispatcher, c: Client, user: bytes | None, password: bytes) -> bytes:
    # The password is compared even for a wrong user name, so timing tells nothing.
    ok = d.check_password(password)
    if not ok or user not in (None, b"default"):
        return WRONGPASS
    d.authenticate(c)
    return resp.OK


@command("hello", -1, "fast no-auth")
def cmd_hello(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``HELLO [2|3 [AUTH user pass] [SETNAME name]]``: switches the reply protocol."""
    version = 2
    if len(args) >= 2:
        parsed = parse_int(args[1])
        if parsed is None:
            return resp.error("ERR Protocol version is not an integer or out of range")
        version = parsed
        if version not in (2, 3):
            return NOPROTO
    name: bytes | None = None
    i = 2
    while i < len(args):
        option = args[i].upper()
        if option == b"AUTH" and i + 2 < len(args):
            reply = _auth(d, c, args[i + 1], args[i + 2])
            if reply is not resp.OK:
                return reply
            i += 3
        elif option == b"SETNAME" and i + 1 < len(args):
            name = args[i + 1]
            i += 2
        else:
            return resp.error(f"ERR Syntax error in HELLO option '{as_text(args[i])}'")
    if not c.authenticated:
        return resp.error(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
            "HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and "
            "select the RESP protocol version at the same time"
        )
    if name is not None:
        error = client_name_error(name)
        if error is not None:
            return error
        c.name = name
    if len(args) >= 2:
        c.use_resp3(version == 3)
    return c.map(
        [
            (resp.bulk(b"server"), resp.bulk(b"redis")),
            (resp.bulk(b"version"), resp.bulk(REDIS_COMPAT_VERSION.encode())),
            (resp.bulk(b"proto"), resp.integer(3 if c.resp3 else 2)),
            (resp.bulk(b"id"), resp.integer(c.id)),
            (resp.bulk(b"mode"), resp.bulk(b"standalone")),
            (resp.bulk(b"role"), resp.bulk(b"master")),
            (resp.bulk(b"modules"), resp.EMPTY_ARRAY),
        ]
    )
