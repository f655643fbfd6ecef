"""The RESP command table: one small function per command, working on the engine.

Every handler takes ``(dispatcher, client, args)`` (``args[0]`` is the command name as sent)
and returns the encoded reply. :meth:`Dispatcher.execute` looks the name up in a dict whose keys
are the lower- and upper-case spellings, checks the arity the way Redis does, and calls the
handler: no per-command object is built beyond the reply bytes. Error replies use Redis's
wording wherever Redis has one, because clients match on it.

A handler that cannot answer at once (a caller parked until another one fills a key) returns
:data:`DEFERRED` and later calls ``client.deliver(reply)``; the connection holds the requests
pipelined after it, so replies stay in order. ``client.on_close`` callbacks run when the
connection goes away.

Replies are RESP2, except for a connection that sent ``HELLO 3`` (redis-py >= 6 does so by
default and does not fall back to RESP2): it gets RESP3 nulls (``_``) and maps (``%``) where
Redis 7 sends them for these commands; every other reply is the same in both versions.
"""

from __future__ import annotations

import hmac
import math
import os
import platform
import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TypeAlias

from blinkstore_gunicorn._version import __version__
from blinkstore_gunicorn.engine import Engine, EngineError, KeyTooLarge, ValueTooLarge
from blinkstore_gunicorn.engine.pattern import compile_pattern
from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.protocol.errors import ProtocolError
from blinkstore_gunicorn.server.leases import LeaseTable

__all__ = [
    "COMMANDS",
    "DEFERRED",
    "REDIS_COMPAT_VERSION",
    "Client",
    "CommandSpec",
    "Dispatcher",
    "ServerStats",
    "parse_int",
]

#: The Redis version whose RESP2 behaviour we follow; reported as ``redis_version`` and by
#: ``HELLO`` because some clients gate features on it.
REDIS_COMPAT_VERSION = "7.0.0"

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)

ERR_SYNTAX = resp.error("ERR syntax error")
ERR_NOT_INT = resp.error("ERR value is not an integer or out of range")
ERR_NOT_FLOAT = resp.error("ERR value is not a valid float")
ERR_OVERFLOW = resp.error("ERR increment or decrement would overflow")
ERR_NAN = resp.error("ERR increment would produce NaN or Infinity")
ERR_DB_RANGE = resp.error("ERR DB index is out of range")
ERR_INVALID_CURSOR = resp.error("ERR invalid cursor")
#: Longest glob pattern accepted (KEYS, SCAN MATCH, CONFIG GET): compiling one costs about
#: 6 us per byte of the single-threaded store's time, and compiled patterns are cached.
MAX_PATTERN = 4096
ERR_PATTERN_TOO_LONG = resp.error(f"ERR pattern too long (max {MAX_PATTERN} bytes)")
NOAUTH = resp.error("NOAUTH Authentication required.")
WRONGPASS = resp.error("WRONGPASS invalid username-password pair or user is disabled.")
ERR_NO_PASSWORD = resp.error(
    "ERR AUTH <password> called without any password configured for the default user. "
    "Are you sure your configuration is correct?"
)
NOPROTO = resp.error("NOPROTO unsupported protocol version")
RESP3_NULL = b"_\r\n"
ZERO = resp.integer(0)
ONE = resp.integer(1)

_INT_RE = re.compile(rb"-?(?:0|[1-9][0-9]*)\Z")
_FLOAT_RE = re.compile(rb"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z|[+-]?inf\Z", re.I)


def parse_int(raw: bytes) -> int | None:
    """Strict signed 64-bit integer like Redis's ``string2ll``: no spaces, ``+`` or ``_``."""
    if len(raw) > 20 or _INT_RE.match(raw) is None:
        return None
    number = int(raw)
    if number > INT64_MAX or number < INT64_MIN:
        return None
    return number


def parse_float(raw: bytes) -> float | None:
    """A finite-or-infinite float without spaces or ``_`` (Python's ``float`` accepts both)."""
    if len(raw) > 5000 or _FLOAT_RE.match(raw) is None:
        return None
    return float(raw)


def format_float(number: float) -> bytes:
    """Shortest text that reads back as ``number``, never in exponent form (``5010.6``)."""
    text = repr(number)
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")
    if text.endswith(".0"):
        text = text[:-2]
    return text.encode("ascii")


def human_bytes(n: int) -> str:
    """Redis's ``used_memory_human`` style: ``0B``, ``1.50K``, ``64.00M``."""
    if n < 1024:
        return f"{n}B"
    for unit, size in (("T", 1024**4), ("G", 1024**3), ("M", 1024**2)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n / 1024:.2f}K"


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def wrong_args(name: str) -> bytes:
    """``-ERR wrong number of arguments for 'get' command``."""
    return resp.error(f"ERR wrong number of arguments for '{name.lower()}' command")


def limit_error(exc: EngineError) -> bytes:
    """``-ERR value too large: value of N bytes exceeds max value size M`` (or key...)."""
    what = "key" if isinstance(exc, KeyTooLarge) else "value"
    return resp.error(f"ERR {what} too large: {exc}")


def invalid_expire(name: str) -> bytes:
    """``-ERR invalid expire time in 'set' command``."""
    return resp.error(f"ERR invalid expire time in '{name}' command")


def unknown_command(args: list[bytes]) -> bytes:
    """Redis's wording, truncated the way Redis truncates it (about 128 characters of args)."""
    shown = ""
    for arg in args[1:]:
        if len(shown) >= 128:
            break
        shown += f"'{_text(arg)[: 128 - len(shown)]}' "
    return resp.error(
        f"ERR unknown command '{_text(args[0])[:128]}', with args beginning with: {shown}"
    )


def unknown_subcommand(args: list[bytes]) -> bytes:
    """``-ERR unknown subcommand 'x'. Try CLIENT HELP.``."""
    return resp.error(
        f"ERR unknown subcommand '{_text(args[1])[:128]}'. Try {_text(args[0]).upper()} HELP."
    )


# --- per-server and per-connection state ---------------------------------------------------


@dataclass(slots=True)
class ServerStats:
    """Counters the server keeps beside the engine's, shown by ``INFO`` and ``STATS``."""

    max_connections: int = 10000
    tcp_port: int = 0
    unix_path: str = ""
    event_loop: str = "asyncio"
    started_monotonic: float = field(default_factory=time.monotonic)
    run_id: str = field(default_factory=lambda: os.urandom(20).hex())
    connected: int = 0
    connections_received: int = 0
    rejected_connections: int = 0
    commands_processed: int = 0
    last_client_id: int = 0
    #: Bytes the connections last reported holding (see ``budget.py``).
    client_buffers: int = 0
    #: Connections closed because all client buffers together were over their limit.
    evicted_clients: int = 0

    @property
    def uptime_seconds(self) -> int:
        """Whole seconds since the server object was made."""
        return int(time.monotonic() - self.started_monotonic)


Handler: TypeAlias = "Callable[[Dispatcher, Client, list[bytes]], bytes]"
Entry: TypeAlias = "tuple[Handler, int]"


class Client:
    """What the server knows about one connection: identity, auth state, pending close."""

    __slots__ = (
        "authenticated",
        "close_after",
        "deliver",
        "id",
        "lib_name",
        "lib_ver",
        "name",
        "nil",
        "on_close",
        "resp3",
        "table",
    )

    def __init__(self, client_id: int, table: dict[bytes, Entry], authenticated: bool) -> None:
        self.id = client_id
        self.table = table
        self.authenticated = authenticated
        self.name = b""
        self.lib_name = b""
        self.lib_ver = b""
        #: Set by QUIT or a protocol error: close once the replies so far are written.
        self.close_after = False
        #: Whether HELLO 3 switched this connection to RESP3, and its null reply.
        self.resp3 = False
        self.nil = resp.NIL
        #: For a handler that returned :data:`DEFERRED`: send its reply later with
        #: ``client.deliver(reply)`` (set by the connection; replies stay in request order).
        self.deliver: Callable[[bytes], None] = _nowhere
        #: Called once when the connection closes (e.g. to drop what the client holds).
        self.on_close: list[Callable[[], None]] = []

    def use_resp3(self, enabled: bool) -> None:
        """Switch between RESP2 and RESP3 replies (``HELLO 2`` / ``HELLO 3``)."""
        self.resp3 = enabled
        self.nil = RESP3_NULL if enabled else resp.NIL

    def bulk_array(self, values: Iterable[bytes | None]) -> bytes:
        """An array of bulk strings whose ``None`` items are this protocol's null."""
        nil = self.nil
        return resp.array([nil if value is None else resp.bulk(value) for value in values])

    def map(self, pairs: list[tuple[bytes, bytes]]) -> bytes:
        """A map of already-encoded replies: ``%`` in RESP3, a flat array in RESP2."""
        body = b"".join(key + value for key, value in pairs)
        return b"%b%d\r\n%b" % (
            b"%" if self.resp3 else b"*",
            len(pairs) * (1 if self.resp3 else 2),
            body,
        )


def _nowhere(reply: bytes) -> None:
    """``Client.deliver`` of a client without a connection (unit tests): drop the reply."""


class _Deferred(bytes):
    """Type of :data:`DEFERRED`; a distinct object so that an identity test finds it."""


#: Returned by a handler that will answer later through ``client.deliver(reply)``. The
#: connection sends the replies before it, then holds later pipelined requests until then.
DEFERRED: bytes = _Deferred()


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """A command's handler plus what ``COMMAND`` reports about it (Redis's arity rules)."""

    name: str
    handler: Handler
    arity: int
    flags: tuple[str, ...]
    first_key: int = 0
    last_key: int = 0
    step: int = 0

    def info(self) -> bytes:
        """The ``COMMAND INFO`` entry (Redis 7 layout; the last four are empty)."""
        return resp.array(
            [
                resp.bulk(self.name.encode()),
                resp.integer(self.arity),
                resp.array(resp.simple(flag) for flag in self.flags),
                resp.integer(self.first_key),
                resp.integer(self.last_key),
                resp.integer(self.step),
                resp.EMPTY_ARRAY,
                resp.EMPTY_ARRAY,
                resp.EMPTY_ARRAY,
                resp.EMPTY_ARRAY,
            ]
        )


#: Every RESP command, by lower-case name.
COMMANDS: dict[str, CommandSpec] = {}


def command(
    name: str, arity: int, flags: str, keys: tuple[int, int, int] = (0, 0, 0)
) -> Callable[[Handler], Handler]:
    """Register a handler in :data:`COMMANDS`."""

    def register(handler: Handler) -> Handler:
        COMMANDS[name] = CommandSpec(name, handler, arity, tuple(flags.split()), *keys)
        return handler

    return register


def _lookup_table(names: Iterable[str]) -> dict[bytes, Entry]:
    table: dict[bytes, Entry] = {}
    for name in names:
        spec = COMMANDS[name]
        for spelling in (name.lower(), name.upper()):
            table[spelling.encode()] = (spec.handler, spec.arity)
    return table


# Commands a client may send before AUTH when a password is set.
_PREAUTH = ("auth", "hello", "quit")


class Dispatcher:
    """Runs RESP commands against one engine for the whole server."""

    __slots__ = (
        "_password",
        "clock_ms",
        "engine",
        "full_table",
        "known_commands",
        "leases",
        "max_key_size",
        "max_reply_size",
        "max_request_size",
        "max_value_size",
        "preauth_table",
        "stats",
    )

    def __init__(
        self,
        engine: Engine,
        *,
        clock_ms: Callable[[], int],
        stats: ServerStats | None = None,
        password: str | None = None,
        max_key_size: int = 64 * 1024,
        max_value_size: int = 16 * 1024 * 1024,
        max_request_size: int = 64 * 1024 * 1024,
        max_reply_size: int = 64 * 1024 * 1024,
    ) -> None:
        self.engine = engine
        self.clock_ms = clock_ms
        self.stats = stats if stats is not None else ServerStats()
        self._password = password.encode("utf-8") if password is not None else None
        self.max_key_size = max_key_size
        self.max_value_size = max_value_size
        self.max_request_size = max_request_size
        #: Largest reply a command that gathers many values may build (the client buffer limit:
        #: a reply larger than all clients may hold would only get its connection shed).
        self.max_reply_size = max_reply_size
        #: Single-flight leases and the callers parked on them (the BS.* commands).
        self.leases = LeaseTable()
        self.full_table = _lookup_table(COMMANDS)
        self.preauth_table = _lookup_table(_PREAUTH)
        #: Upper-case names of every RESP command (for protocol detection).
        self.known_commands = frozenset(name.upper().encode() for name in COMMANDS)

    @property
    def requires_auth(self) -> bool:
        """Whether connections must AUTH before anything else."""
        return self._password is not None

    def new_client(self) -> Client:
        """State for a new connection, with the next client id."""
        self.stats.last_client_id += 1
        if self._password is None:
            return Client(self.stats.last_client_id, self.full_table, True)
        return Client(self.stats.last_client_id, self.preauth_table, False)

    def check_password(self, candidate: bytes) -> bool:
        """Constant-time comparison with the configured password (False when none is set)."""
        if self._password is None:
            return False
        return hmac.compare_digest(candidate, self._password)

    def authenticate(self, client: Client) -> None:
        """Give ``client`` the full command table."""
        client.authenticated = True
        client.table = self.full_table

    def execute(self, client: Client, args: list[bytes] | ProtocolError) -> bytes:
        """Run one parsed request and return its reply; a ProtocolError marks the close."""
        if args.__class__ is not list:
            client.close_after = True
            return resp.error("ERR " + args.message)  # type: ignore[union-attr]
        entry = client.table.get(args[0])
        if entry is None:
            return self._execute_slow(client, args)
        handler, arity = entry
        count = len(args)
        if count != arity and (arity > 0 or count < -arity):
            return wrong_args(_text(args[0]))
        return handler(self, client, args)

    def _execute_slow(self, client: Client, args: list[bytes]) -> bytes:
        """Mixed-case names, unknown commands and commands sent before AUTH."""
        name = args[0].lower()
        spec = COMMANDS.get(_text(name))
        if spec is None:
            return unknown_command(args)
        if name not in client.table:
            return NOAUTH
        count = len(args)
        if count != spec.arity and (spec.arity > 0 or count < -spec.arity):
            return wrong_args(spec.name)
        return spec.handler(self, client, args)

    # -- helpers shared by handlers ------------------------------------------------------

    def store(
        self, key: bytes, value: bytes, expire_at_ms: int | None = None, keep_ttl: bool = False
    ) -> bytes | None:
        """Write through the engine; an error reply when a limit refuses it, else None."""
        try:
            self.write(key, value, expire_at_ms, keep_ttl)
        except EngineError as exc:
            return limit_error(exc)
        return None

    def write(
        self, key: bytes, value: bytes, expire_at_ms: int | None = None, keep_ttl: bool = False
    ) -> None:
        """The one write path of both protocols: store, then wake callers parked on the key
        (a value landing ends its single-flight lease). Raises :class:`EngineError`."""
        self.engine.set(key, value, expire_at_ms=expire_at_ms, keep_ttl=keep_ttl)
        leases = self.leases
        if leases and key in leases:
            leases.fill(key, value)

    def deadline(self, unit: bytes, raw: bytes, name: str) -> int | bytes:
        """Absolute ms for ``EX``/``PX``/``EXAT``/``PXAT`` ``raw``, or an error reply.

        Zero and negative times are refused, as SET/SETEX/GETEX do in Redis.
        """
        number = parse_int(raw)
        if number is None:
            return ERR_NOT_INT
        if number <= 0:
            return invalid_expire(name)
        if unit in (b"EX", b"EXAT"):
            if number > INT64_MAX // 1000:
                return invalid_expire(name)
            number *= 1000
        if unit in (b"EX", b"PX"):
            number += self.clock_ms()
            if number > INT64_MAX:
                return invalid_expire(name)
        return number

    def fits(self, key: bytes, value: bytes) -> bytes | None:
        """Check sizes before a multi-key write so it is all or nothing; error reply or None."""
        if len(key) > self.max_key_size:
            return limit_error(KeyTooLarge(len(key), self.max_key_size))
        if len(value) > self.max_value_size:
            return limit_error(ValueTooLarge(len(value), self.max_value_size))
        return None

    def config_values(self) -> dict[str, str]:
        """What ``CONFIG GET`` reports: enough for redis-benchmark and curious operators."""
        return {
            "save": "",
            "appendonly": "no",
            "maxmemory": str(self.engine.memory_limit),
            "maxmemory-policy": "allkeys-lru",
            "maxmemory-clients": str(self.max_reply_size),
            "maxclients": str(self.stats.max_connections),
            "databases": "1",
            "timeout": "0",
            "port": str(self.stats.tcp_port),
            "unixsocket": self.stats.unix_path,
            "unixsocketperm": "600" if self.stats.unix_path else "0",
            "proto-max-bulk-len": str(self.max_request_size),
        }

    def info(self, sections: Iterable[str] = ()) -> str:
        """The ``INFO`` text (Redis format) for the named sections, all five by default."""
        wanted = {section.lower() for section in sections}
        if not wanted or wanted & {"all", "everything", "default"}:
            wanted = set(_INFO_SECTIONS)
        blocks = []
        for section, build in _INFO_SECTIONS.items():
            if section in wanted:
                lines = [f"# {section.capitalize()}", *(f"{k}:{v}" for k, v in build(self))]
                blocks.append("\r\n".join(lines) + "\r\n")
        return "\r\n".join(blocks)


# --- INFO sections ---------------------------------------------------------------------------


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _info_server(d: Dispatcher) -> list[tuple[str, object]]:
    uptime = d.stats.uptime_seconds
    return [
        ("redis_version", REDIS_COMPAT_VERSION),
        ("blinkstore_version", __version__),
        ("redis_mode", "standalone"),
        ("os", f"{platform.system()} {platform.release()} {platform.machine()}"),
        ("arch_bits", 64 if sys.maxsize > 2**32 else 32),
        ("multiplexing_api", d.stats.event_loop),
        ("python_version", platform.python_version()),
        ("process_id", os.getpid()),
        ("run_id", d.stats.run_id),
        ("tcp_port", d.stats.tcp_port),
        ("uptime_in_seconds", uptime),
        ("uptime_in_days", uptime // 86400),
        ("executable", sys.executable),
        ("config_file", ""),
    ]


def _info_clients(d: Dispatcher) -> list[tuple[str, object]]:
    return [("connected_clients", d.stats.connected), ("maxclients", d.stats.max_connections)]


def _info_memory(d: Dispatcher) -> list[tuple[str, object]]:
    used = d.engine.used_bytes
    limit = d.engine.memory_limit
    rss = _rss_bytes()
    return [
        ("used_memory", used),
        ("used_memory_human", human_bytes(used)),
        ("used_memory_rss", rss),
        ("used_memory_rss_human", human_bytes(rss)),
        ("maxmemory", limit),
        ("maxmemory_human", human_bytes(limit)),
        ("maxmemory_policy", "allkeys-lru"),
        ("mem_clients_normal", d.stats.client_buffers),
        ("maxmemory_clients", d.max_reply_size),
        ("mem_allocator", "pymalloc"),
    ]


def _info_stats(d: Dispatcher) -> list[tuple[str, object]]:
    engine = d.engine.stats()
    return [
        ("total_connections_received", d.stats.connections_received),
        ("total_commands_processed", d.stats.commands_processed),
        ("rejected_connections", d.stats.rejected_connections),
        ("evicted_clients", d.stats.evicted_clients),
        ("expired_keys", engine.expirations),
        ("evicted_keys", engine.evictions),
        ("keyspace_hits", engine.hits),
        ("keyspace_misses", engine.misses),
    ]


def _info_keyspace(d: Dispatcher) -> list[tuple[str, object]]:
    engine = d.engine.stats()
    if not engine.keys:
        return []
    return [("db0", f"keys={engine.keys},expires={engine.expires},avg_ttl=0")]


_INFO_SECTIONS: dict[str, Callable[[Dispatcher], list[tuple[str, object]]]] = {
    "server": _info_server,
    "clients": _info_clients,
    "memory": _info_memory,
    "stats": _info_stats,
    "keyspace": _info_keyspace,
}


# --- connection commands -----------------------------------------------------------------


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
            return resp.error(f"ERR Syntax error in HELLO option '{_text(args[i])}'")
    if not c.authenticated:
        return resp.error(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
            "HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and "
            "select the RESP protocol version at the same time"
        )
    if name is not None:
        error = _client_name_error(name)
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


@command("select", 2, "fast")
def cmd_select(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``SELECT 0``: there is one database."""
    index = parse_int(args[1])
    if index is None:
        return ERR_NOT_INT
    return resp.OK if index == 0 else ERR_DB_RANGE


def _client_name_error(name: bytes) -> bytes | None:
    if any(byte < 0x21 or byte > 0x7E for byte in name):
        return resp.error("ERR Client names cannot contain spaces, newlines or special characters.")
    return None


@command("client", -2, "")
def cmd_client(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``CLIENT ID | GETNAME | SETNAME name | SETINFO LIB-NAME|LIB-VER value``."""
    sub = args[1].upper()
    if sub == b"ID" and len(args) == 2:
        return resp.integer(c.id)
    if sub == b"GETNAME" and len(args) == 2:
        return resp.bulk(c.name) if c.name else c.nil
    if sub == b"SETNAME":
        if len(args) != 3:
            return wrong_args("client|setname")
        error = _client_name_error(args[2])
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
            return resp.error(f"ERR Unrecognized option '{_text(args[2])}'")
        return resp.OK
    if sub in (b"ID", b"GETNAME"):
        return wrong_args(f"client|{_text(args[1]).lower()}")
    return unknown_subcommand(args)


# --- server commands ----------------------------------------------------------------------


@command("command", -1, "loading stale")
def cmd_command(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``COMMAND [COUNT | INFO name... | DOCS [name...] | LIST]``: enough for redis-cli."""
    if len(args) == 1:
        return resp.array(spec.info() for spec in COMMANDS.values())
    sub = args[1].upper()
    if sub == b"COUNT" and len(args) == 2:
        return resp.integer(len(COMMANDS))
    if sub == b"INFO":
        names = [_text(name).lower() for name in args[2:]] or list(COMMANDS)
        specs = (COMMANDS.get(name) for name in names)
        missing = RESP3_NULL if c.resp3 else resp.NIL_ARRAY
        return resp.array(missing if s is None else s.info() for s in specs)
    if sub == b"DOCS":
        # No documentation is served: an empty map tells redis-cli to skip its hints.
        return c.map([])
    if sub == b"LIST" and len(args) == 2:
        return resp.bulk_array(name.encode() for name in COMMANDS)
    return unknown_subcommand(args)


@command("config", -2, "admin")
def cmd_config(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``CONFIG GET pattern [pattern...]`` (read-only: settings come from the command line)."""
    if args[1].upper() != b"GET":
        return unknown_subcommand(args)
    if len(args) < 3:
        return wrong_args("config|get")
    if any(len(pattern) > MAX_PATTERN for pattern in args[2:]):
        return ERR_PATTERN_TOO_LONG
    values = d.config_values()
    found: dict[str, str] = {}
    for pattern in args[2:]:
        matches = compile_pattern(pattern.lower())
        for name, value in values.items():
            if matches(name.encode()):
                found[name] = value
    return c.map([(resp.bulk(k.encode()), resp.bulk(v.encode())) for k, v in found.items()])


@command("info", -1, "")
def cmd_info(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``INFO [section...]``: server, clients, memory, stats, keyspace."""
    return resp.bulk(d.info(_text(arg) for arg in args[1:]).encode())


@command("dbsize", 1, "readonly fast")
def cmd_dbsize(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``DBSIZE``."""
    return resp.integer(len(d.engine))


def _flush(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    if len(args) > 2 or (len(args) == 2 and args[1].upper() not in (b"ASYNC", b"SYNC")):
        return ERR_SYNTAX
    d.engine.flush()
    return resp.OK


command("flushdb", -1, "write")(_flush)
command("flushall", -1, "write")(_flush)


# --- keys ----------------------------------------------------------------------------------


@command("get", 2, "readonly fast", (1, 1, 1))
def cmd_get(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``GET key``."""
    value = d.engine.get(args[1])
    return c.nil if value is None else resp.bulk(value)


_EXPIRE_UNITS = (b"EX", b"PX", b"EXAT", b"PXAT")


@command("set", -3, "write", (1, 1, 1))
def cmd_set(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``SET key value [NX|XX] [GET] [EX s|PX ms|EXAT ts|PXAT ms-ts|KEEPTTL]``."""
    key, value = args[1], args[2]
    if len(args) == 3:
        return d.store(key, value) or resp.OK
    nx = xx = get = keep_ttl = False
    unit = raw = b""
    i = 3
    while i < len(args):
        option = args[i].upper()
        if option == b"NX" and not xx:
            nx = True
        elif option == b"XX" and not nx:
            xx = True
        elif option == b"GET":
            get = True
        elif option == b"KEEPTTL" and not unit:
            keep_ttl = True
        elif option in _EXPIRE_UNITS and not unit and not keep_ttl and i + 1 < len(args):
            unit, raw = option, args[i + 1]
            i += 1
        else:
            return ERR_SYNTAX
        i += 1
    expire_at: int | None = None
    if unit:
        when = d.deadline(unit, raw, "set")
        if isinstance(when, bytes):
            return when
        expire_at = when
    old: bytes | None = None
    if get:
        old = d.engine.get(key)
        exists = old is not None
    else:
        exists = (nx or xx) and d.engine.contains(key)
    if (nx and exists) or (xx and not exists):
        return c.nil if old is None else resp.bulk(old)
    error = d.store(key, value, expire_at, keep_ttl)
    if error is not None:
        return error
    if get:
        return c.nil if old is None else resp.bulk(old)
    return resp.OK


@command("setnx", 3, "write fast", (1, 1, 1))
def cmd_setnx(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``SETNX key value``: 1 when set, 0 when the key existed."""
    if d.engine.contains(args[1]):
        return ZERO
    return d.store(args[1], args[2]) or ONE


def _setex(d: Dispatcher, args: list[bytes], unit: bytes, name: str) -> bytes:
    when = d.deadline(unit, args[2], name)
    if isinstance(when, bytes):
        return when
    return d.store(args[1], args[3], when) or resp.OK


@command("setex", 4, "write", (1, 1, 1))
def cmd_setex(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``SETEX key seconds value``."""
    return _setex(d, args, b"EX", "setex")


@command("psetex", 4, "write", (1, 1, 1))
def cmd_psetex(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``PSETEX key milliseconds value``."""
    return _setex(d, args, b"PX", "psetex")


@command("getdel", 2, "write fast", (1, 1, 1))
def cmd_getdel(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``GETDEL key``."""
    value = d.engine.get(args[1])
    if value is None:
        return c.nil
    d.engine.delete(args[1])
    return resp.bulk(value)


@command("getex", -2, "write fast", (1, 1, 1))
def cmd_getex(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``GETEX key [EX s|PX ms|EXAT ts|PXAT ms-ts|PERSIST]``."""
    key = args[1]
    persist = False
    expire_at: int | None = None
    if len(args) == 3 and args[2].upper() == b"PERSIST":
        persist = True
    elif len(args) == 4 and args[2].upper() in _EXPIRE_UNITS:
        when = d.deadline(args[2].upper(), args[3], "getex")
        if isinstance(when, bytes):
            return when
        expire_at = when
    elif len(args) != 2:
        return ERR_SYNTAX
    value = d.engine.get(key)
    if value is None:
        return c.nil
    if persist or expire_at is not None:
        d.engine.set_expire_at(key, expire_at)
    return resp.bulk(value)


def _delete(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    delete = d.engine.delete
    return resp.integer(sum(1 for key in args[1:] if delete(key)))


command("del", -2, "write", (1, -1, 1))(_delete)
command("unlink", -2, "write fast", (1, -1, 1))(_delete)


@command("exists", -2, "readonly fast", (1, -1, 1))
def cmd_exists(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``EXISTS key [key...]``: repeated keys count each time, as in Redis."""
    contains = d.engine.contains
    return resp.integer(sum(1 for key in args[1:] if contains(key)))


def _expire(d: Dispatcher, args: list[bytes], name: str, scale: int, absolute: bool) -> bytes:
    amount = parse_int(args[2])
    if amount is None:
        return ERR_NOT_INT
    nx = xx = gt = lt = False
    for raw in args[3:]:
        option = raw.upper()
        if option == b"NX":
            nx = True
        elif option == b"XX":
            xx = True
        elif option == b"GT":
            gt = True
        elif option == b"LT":
            lt = True
        else:
            return resp.error(f"ERR Unsupported option {_text(raw)}")
    if nx and (xx or gt or lt):
        return resp.error("ERR NX and XX, GT or LT options at the same time are not compatible")
    if gt and lt:
        return resp.error("ERR GT and LT options at the same time are not compatible")
    if scale != 1 and not INT64_MIN // scale <= amount <= INT64_MAX // scale:
        return invalid_expire(name)
    when = amount * scale
    if not absolute:
        when += d.clock_ms()
        if when > INT64_MAX:
            return invalid_expire(name)
    engine = d.engine
    try:
        current = engine.expire_at(args[1])
    except KeyError:
        return ZERO
    # A key without TTL counts as an infinite TTL for GT and LT, as in Redis.
    if (
        (nx and current is not None)
        or (xx and current is None)
        or (gt and (current is None or when <= current))
        or (lt and current is not None and when >= current)
    ):
        return ZERO
    return ONE if engine.set_expire_at(args[1], when) else ZERO


@command("expire", -3, "write fast", (1, 1, 1))
def cmd_expire(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``EXPIRE key seconds [NX|XX|GT|LT]``."""
    return _expire(d, args, "expire", 1000, absolute=False)


@command("pexpire", -3, "write fast", (1, 1, 1))
def cmd_pexpire(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``PEXPIRE key milliseconds [NX|XX|GT|LT]``."""
    return _expire(d, args, "pexpire", 1, absolute=False)


@command("expireat", -3, "write fast", (1, 1, 1))
def cmd_expireat(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``EXPIREAT key unix-seconds [NX|XX|GT|LT]``."""
    return _expire(d, args, "expireat", 1000, absolute=True)


@command("pexpireat", -3, "write fast", (1, 1, 1))
def cmd_pexpireat(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``PEXPIREAT key unix-milliseconds [NX|XX|GT|LT]``."""
    return _expire(d, args, "pexpireat", 1, absolute=True)


@command("persist", 2, "write fast", (1, 1, 1))
def cmd_persist(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``PERSIST key``: 1 when a TTL was removed."""
    try:
        current = d.engine.expire_at(args[1])
    except KeyError:
        return ZERO
    if current is None:
        return ZERO
    d.engine.set_expire_at(args[1], None)
    return ONE


def _remaining_ms(d: Dispatcher, key: bytes) -> int:
    """Milliseconds left, -1 without TTL, -2 when the key is absent."""
    try:
        when = d.engine.expire_at(key)
    except KeyError:
        return -2
    if when is None:
        return -1
    return max(0, when - d.clock_ms())


@command("ttl", 2, "readonly fast", (1, 1, 1))
def cmd_ttl(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``TTL key`` in seconds, rounded to nearest like Redis."""
    left = _remaining_ms(d, args[1])
    return resp.integer(left if left < 0 else (left + 500) // 1000)


@command("pttl", 2, "readonly fast", (1, 1, 1))
def cmd_pttl(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``PTTL key`` in milliseconds."""
    return resp.integer(_remaining_ms(d, args[1]))


@command("type", 2, "readonly fast", (1, 1, 1))
def cmd_type(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``TYPE key``: every value is a string."""
    return b"+string\r\n" if d.engine.contains(args[1]) else b"+none\r\n"


@command("mget", -2, "readonly fast", (1, -1, 1))
def cmd_mget(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``MGET key [key...]``."""
    get = d.engine.get
    values = [get(key) for key in args[1:]]
    # The same large key named many times would build a reply of any size.
    size = sum(len(value) for value in values if value is not None)
    if size > d.max_reply_size:
        return resp.error(
            f"ERR reply too large: {size} bytes exceeds the client buffer limit {d.max_reply_size}"
        )
    return c.bulk_array(values)


def _pairs(d: Dispatcher, args: list[bytes], name: str) -> list[tuple[bytes, bytes]] | bytes:
    if len(args) % 2 == 0:
        return wrong_args(name)
    pairs = list(zip(args[1::2], args[2::2], strict=True))
    for key, value in pairs:
        error = d.fits(key, value)
        if error is not None:
            return error
    return pairs


def _store_all(d: Dispatcher, pairs: list[tuple[bytes, bytes]]) -> bytes | None:
    for key, value in pairs:
        error = d.store(key, value)
        if error is not None:
            return error
    return None


@command("mset", -3, "write", (1, -1, 2))
def cmd_mset(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``MSET key value [key value...]``."""
    pairs = _pairs(d, args, "mset")
    if isinstance(pairs, bytes):
        return pairs
    return _store_all(d, pairs) or resp.OK


@command("msetnx", -3, "write", (1, -1, 2))
def cmd_msetnx(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``MSETNX key value [key value...]``: 1 when all were set, 0 when any key existed."""
    pairs = _pairs(d, args, "msetnx")
    if isinstance(pairs, bytes):
        return pairs
    if any(d.engine.contains(key) for key, _ in pairs):
        return ZERO
    return _store_all(d, pairs) or ONE


def _incr(d: Dispatcher, key: bytes, delta: int) -> bytes:
    old = d.engine.peek(key)
    current = 0
    if old is not None:
        parsed = parse_int(old)
        if parsed is None:
            return ERR_NOT_INT
        current = parsed
    new = current + delta
    if new > INT64_MAX or new < INT64_MIN:
        return ERR_OVERFLOW
    return d.store(key, b"%d" % new, keep_ttl=True) or resp.integer(new)


@command("incr", 2, "write fast", (1, 1, 1))
def cmd_incr(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``INCR key``."""
    return _incr(d, args[1], 1)


@command("decr", 2, "write fast", (1, 1, 1))
def cmd_decr(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``DECR key``."""
    return _incr(d, args[1], -1)


@command("incrby", 3, "write fast", (1, 1, 1))
def cmd_incrby(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``INCRBY key increment``."""
    delta = parse_int(args[2])
    return ERR_NOT_INT if delta is None else _incr(d, args[1], delta)


@command("decrby", 3, "write fast", (1, 1, 1))
def cmd_decrby(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``DECRBY key decrement``."""
    delta = parse_int(args[2])
    if delta is None:
        return ERR_NOT_INT
    if delta == INT64_MIN:
        return resp.error("ERR decrement would overflow")
    return _incr(d, args[1], -delta)


@command("incrbyfloat", 3, "write fast", (1, 1, 1))
def cmd_incrbyfloat(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``INCRBYFLOAT key increment`` (double precision; Redis uses long double)."""
    delta = parse_float(args[2])
    if delta is None:
        return ERR_NOT_FLOAT
    old = d.engine.peek(args[1])
    current = 0.0
    if old is not None:
        parsed = parse_float(old)
        if parsed is None:
            return ERR_NOT_FLOAT
        current = parsed
    new = current + delta
    if math.isnan(new) or math.isinf(new):
        return ERR_NAN
    text = format_float(new)
    return d.store(args[1], text, keep_ttl=True) or resp.bulk(text)


@command("append", 3, "write fast", (1, 1, 1))
def cmd_append(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``APPEND key value``: the new length."""
    value = (d.engine.peek(args[1]) or b"") + args[2]
    return d.store(args[1], value, keep_ttl=True) or resp.integer(len(value))


@command("strlen", 2, "readonly fast", (1, 1, 1))
def cmd_strlen(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``STRLEN key``."""
    return resp.integer(len(d.engine.peek(args[1]) or b""))


@command("scan", -2, "readonly")
def cmd_scan(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``SCAN cursor [MATCH pattern] [COUNT n] [TYPE string]``."""
    cursor = parse_int(args[1])
    if cursor is None or cursor < 0:
        return ERR_INVALID_CURSOR
    match: bytes | None = None
    count = 10
    only_strings = True
    i = 2
    while i < len(args):
        option = args[i].upper()
        if i + 1 >= len(args):
            return ERR_SYNTAX
        if option == b"MATCH":
            match = args[i + 1]
            if len(match) > MAX_PATTERN:
                return ERR_PATTERN_TOO_LONG
        elif option == b"COUNT":
            number = parse_int(args[i + 1])
            if number is None:
                return ERR_NOT_INT
            if number < 1:
                return ERR_SYNTAX
            count = number
        elif option == b"TYPE":
            only_strings = args[i + 1].lower() == b"string"
        else:
            return ERR_SYNTAX
        i += 2
    try:
        next_cursor, keys = d.engine.scan(cursor, count, match)
    except EngineError:
        return ERR_INVALID_CURSOR
    if not only_strings:
        keys = []
    return resp.array([resp.bulk(b"%d" % next_cursor), resp.bulk_array(keys)])


@command("keys", 2, "readonly")
def cmd_keys(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``KEYS pattern``: one full scan step over the current keys."""
    if len(args[1]) > MAX_PATTERN:
        return ERR_PATTERN_TOO_LONG
    pattern = None if args[1] == b"*" else args[1]
    _, keys = d.engine.scan(0, len(d.engine) + 1, pattern)
    return resp.bulk_array(keys)


# The stampede commands register themselves in COMMANDS; importing them here guarantees every
# Dispatcher's lookup table includes them.
from blinkstore_gunicorn.server import stampede_commands  # noqa: E402, F401
