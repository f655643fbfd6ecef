"""``CLIENT`` (Redis's networking.c): ID, INFO, LIST, GETNAME, SETNAME, SETINFO, KILL and
UNBLOCK.

``CLIENT LIST`` and ``CLIENT INFO`` write Redis 7.0's line, field for field, plus Redis 7.2's
``lib-name``/``lib-ver`` (what ``CLIENT SETINFO`` sets): RQ finds its worker's address there by
name, and tools parse the ``key=value`` pairs. What the store does not have (per-client buffer
sizes, users, databases) is reported as a Redis with defaults would show it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands.registry import command
from blinkstore_gunicorn.server.commands.replies import (
    ERR_NOT_INT,
    ERR_SYNTAX,
    as_text,
    client_name_error,
    help_reply,
    parse_int,
    subcommand_syntax,
    unknown_subcommand,
    wrong_args,
)

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher

__all__: list[str] = []

ERR_NO_SUCH_CLIENT: Final = resp.error("ERR No such client")
ERR_INVALID_ID: Final = resp.error("ERR Invalid client ID")
ERR_ID_RANGE: Final = resp.error("ERR client-id should be greater than 0")
_ERR_UNBLOCK_REASON: Final = resp.error("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")
_UNBLOCKED: Final = resp.error("UNBLOCKED client unblocked via CLIENT UNBLOCK")
#: The ``TYPE`` names Redis accepts (the store has only normal and pub/sub clients).
_TYPES: Final = frozenset({b"normal", b"master", b"slave", b"replica", b"pubsub"})


def _address(c: Client, key: str) -> str:
    """``peername`` (addr) or ``sockname`` (laddr) as Redis writes it: ``ip:port``,
    ``[ipv6]:port``, or ``path:0`` for a Unix socket (whose peer has no name)."""
    transport = c.transport
    if transport is None:
        return ""
    where = transport.get_extra_info(key)
    if isinstance(where, tuple):
        host = f"[{where[0]}]" if ":" in where[0] else where[0]
        return f"{host}:{where[1]}"
    if not where:
        where = transport.get_extra_info("sockname")
    return f"{as_text(where) if isinstance(where, bytes) else where}:0"


def _fd(c: Client) -> int:
    """The connection's file descriptor (-1 without one, as Redis shows its fake clients);
    asyncio and uvloop hand out socket-like wrappers, not ``socket.socket``."""
    sock = None if c.transport is None else c.transport.get_extra_info("socket")
    fileno = getattr(sock, "fileno", None)
    return int(fileno()) if callable(fileno) else -1


def _flags(d: Dispatcher, c: Client, subscriptions: int, unix: bool) -> str:
    flags = "P" if subscriptions else ""
    if c.transaction is not None:
        flags += "x"
    if c.id in d.blocked:
        flags += "b"
    if c.close_after:
        flags += "c"
    if unix:
        flags += "U"
    return flags or "N"


def _line(d: Dispatcher, c: Client, cmd: str) -> str:
    """One client's ``CLIENT LIST`` line (``cmd``: its last command as Redis names it)."""
    channels, patterns = d.pubsub.counts(c)
    addr, laddr = _address(c, "peername"), _address(c, "sockname")
    unix = c.transport is not None and not isinstance(c.transport.get_extra_info("sockname"), tuple)
    queued = -1 if c.transaction is None else len(c.transaction.commands)
    fields: list[tuple[str, object]] = [
        ("id", c.id),
        ("addr", addr),
        ("laddr", laddr),
        ("fd", _fd(c)),
        ("name", as_text(c.name)),
        ("age", int(time.monotonic() - c.started)),
        ("idle", max(0, int(d.now - c.seen))),
        ("flags", _flags(d, c, channels + patterns, unix)),
        ("db", 0),
        ("sub", channels),
        ("psub", patterns),
        ("ssub", 0),
        ("multi", queued),
        ("qbuf", 0),
        ("qbuf-free", 0),
        ("argv-mem", 0),
        ("multi-mem", 0),
        ("rbs", 0),
        ("rbp", 0),
        ("obl", 0),
        ("oll", 0),
        ("omem", 0),
        ("tot-mem", 0),
        ("events", "r"),
        ("cmd", cmd),
        ("user", "default"),
        ("redir", -1),
        ("resp", 3 if c.resp3 else 2),
        ("lib-name", as_text(c.lib_name)),
        ("lib-ver", as_text(c.lib_ver)),
    ]
    return " ".join(f"{name}={value}" for name, value in fields) + "\n"


def _cmd(c: Client) -> str:
    return as_text(c.cmd).lower() if c.cmd else "NULL"


def _listed(d: Dispatcher) -> list[Client]:
    """The connections' clients (not the one scripts run their commands as)."""
    return [c for c in d.clients.values() if not c.in_script]


def _is_type(d: Dispatcher, c: Client, kind: bytes) -> bool:
    subscribed = sum(d.pubsub.counts(c)) > 0
    return subscribed if kind == b"pubsub" else kind == b"normal" and not subscribed


def _list(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``CLIENT LIST [TYPE normal|master|replica|pubsub] [ID id...]``."""
    chosen = _listed(d)
    if len(args) > 2:
        option = args[2].upper()
        if option == b"TYPE" and len(args) == 4:
            kind = args[3].lower()
            if kind not in _TYPES:
                return resp.error(f"ERR Unknown client type '{as_text(args[3])}'")
            chosen = [other for other in chosen if _is_type(d, other, kind)]
        elif option == b"ID" and len(args) > 3:
            ids = [parse_int(raw) for raw in args[3:]]
            if any(number is None or number < 1 for number in ids):
                return ERR_INVALID_ID
            chosen = [other for other in chosen if other.id in ids]
        else:
            return ERR_SYNTAX
    lines = [_line(d, other, "client|list" if other is c else _cmd(other)) for other in chosen]
    return resp.bulk("".join(lines).encode())


def _kill(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``CLIENT KILL addr:port`` (OK or an error) or ``CLIENT KILL <filter value>...`` with
    ``ID``, ``TYPE``, ``USER``, ``ADDR``, ``LADDR``, ``SKIPME`` (how many were killed)."""
    if len(args) == 3:
        wanted = as_text(args[2])
        found = [other for other in _listed(d) if _address(other, "peername") == wanted]
        if not found:
            return ERR_NO_SUCH_CLIENT
        _close(c, found[:1])
        return resp.OK
    if len(args) % 2:
        return ERR_SYNTAX
    wanted_id: int | None = None
    kind: bytes | None = None
    addresses: dict[str, str] = {}
    skip_me = True
    for raw_option, raw in zip(args[2::2], args[3::2], strict=True):
        option = raw_option.upper()
        if option == b"ID":
            wanted_id = parse_int(raw)
            if wanted_id is None or wanted_id < 1:
                return ERR_ID_RANGE
        elif option == b"TYPE":
            kind = raw.lower()
            if kind not in _TYPES:
                return resp.error(f"ERR Unknown client type '{as_text(raw)}'")
        elif option == b"USER":
            if raw != b"default":
                return resp.error(f"ERR No such user '{as_text(raw)}'")
        elif option in (b"ADDR", b"LADDR"):
            addresses["peername" if option == b"ADDR" else "sockname"] = as_text(raw)
        elif option == b"SKIPME":
            if raw.lower() not in (b"yes", b"no"):
                return ERR_SYNTAX
            skip_me = raw.lower() == b"yes"
        else:
            return ERR_SYNTAX

    def matches(other: Client) -> bool:
        return (
            (wanted_id is None or other.id == wanted_id)
            and (kind is None or _is_type(d, other, kind))
            and all(_address(other, key) == text for key, text in addresses.items())
            and not (skip_me and other is c)
        )

    found = [other for other in _listed(d) if matches(other)]
    _close(c, found)
    return resp.integer(len(found))


def _close(c: Client, found: list[Client]) -> None:
    """Close the connections of ``found``; the caller's own after this reply."""
    for other in found:
        if other is c:
            c.close_after = True
        else:
            other.drop()


def _unblock(d: Dispatcher, args: list[bytes]) -> bytes:
    """``CLIENT UNBLOCK id [TIMEOUT|ERROR]``: 1 when the client was parked in a blocking
    command, now answered as if it timed out (or with an ``-UNBLOCKED`` error)."""
    reply: bytes | None = None  # its timeout reply
    if len(args) == 4:
        reason = args[3].upper()
        if reason == b"ERROR":
            reply = _UNBLOCKED
        elif reason != b"TIMEOUT":
            return _ERR_UNBLOCK_REASON
    owner = parse_int(args[2])
    if owner is None:
        return ERR_NOT_INT
    return resp.integer(d.blocked.unblock(owner, reply))


#: Redis 7.0's ``CLIENT HELP``, the subcommands the store has.
_CLIENT_HELP: Final = (
    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "KILL <ip:port>",
    "    Kill connection made from <ip:port>.",
    "KILL <option> <value> [<option> <value> [...]]",
    "    Kill connections. Options are:",
    "    * ADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made from the specified address",
    "    * LADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made to specified local address",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Kill connections by type.",
    "    * USER <username>",
    "      Kill connections authenticated by <username>.",
    "    * SKIPME (YES|NO)",
    "      Skip killing current connection (default: yes).",
    "LIST [options ...]",
    "    Return information about client connections. Options:",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Return clients of specified type.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "UNBLOCK <clientid> [TIMEOUT|ERROR]",
    "    Unblock the specified blocked client.",
    "HELP",
    "    Prints this help.",
)


@command("client", -2, "")
def cmd_client(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``CLIENT ID | INFO | LIST | GETNAME | SETNAME name | SETINFO LIB-NAME|LIB-VER value |
    KILL ... | UNBLOCK id [TIMEOUT|ERROR] | HELP``."""
    sub = args[1].upper()
    if sub in (b"ID", b"GETNAME", b"INFO", b"HELP") and len(args) != 2:
        return wrong_args(f"client|{as_text(args[1]).lower()}")
    if sub == b"HELP":
        return help_reply(_CLIENT_HELP)
    if sub == b"ID":
        return resp.integer(c.id)
    if sub == b"GETNAME":
        return resp.bulk(c.name) if c.name else c.nil
    if sub == b"INFO":
        return resp.bulk(_line(d, c, "client|info").encode())
    if sub == b"LIST":
        return _list(d, c, args)
    if sub == b"UNBLOCK":
        if len(args) == 2:
            return wrong_args("client|unblock")
        return _unblock(d, args) if len(args) <= 4 else subcommand_syntax(args)
    if sub == b"KILL":
        return wrong_args("client|kill") if len(args) < 3 else _kill(d, c, args)
    if sub == b"SETNAME":
        if len(args) != 3:
            return wrong_args("client|setname")
        error = client_name_error(args[2])
        if error is not None:
            return error
        c.name = args[2]
        return resp.OK
    if sub == b"SETINFO":
        if len(args) != 4:
            return wrong_args("client|setinfo")
        attribute = args[2].upper()
        if attribute == b"LIB-NAME":
            c.lib_name = args[3]
        elif attribute == b"LIB-VER":
            c.lib_ver = args[3]
        else:
            return resp.error(f"ERR Unrecognized option '{as_text(args[2])}'")
        return resp.OK
    return unknown_subcommand(args)
