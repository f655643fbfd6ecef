"""The dispatcher and the state of the server and of each connection.

:meth:`Dispatcher.execute` looks a command's name up in a dict whose keys are the lower- and
upper-case spellings (built from the registry's :data:`~.commands.registry.COMMANDS`), checks
the arity the way Redis does, and calls the handler: no per-command object is built beyond the
reply bytes. ``client.on_close`` callbacks run when the connection goes away.

Replies are RESP2, except for a connection that sent ``HELLO 3`` (redis-py >= 6 does so by
default and does not fall back to RESP2): it gets RESP3 nulls (``_``), maps (``%``) and sets
(``~``) where Redis 7 sends them for these commands; every other reply is the same in both
versions.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import os
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

from blinkstore_gunicorn.config import DEFAULT_BUSY_REPLY_THRESHOLD, flag_name
from blinkstore_gunicorn.engine import (
    WRONGTYPE,
    Engine,
    EngineError,
    KeyTooLarge,
    ValueTooLarge,
    WrongType,
)
from blinkstore_gunicorn.engine.hyperloglog import SPARSE_MAX_BYTES
from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.protocol.errors import ProtocolError, TooLarge
from blinkstore_gunicorn.server.blocking import BlockedPops
from blinkstore_gunicorn.server.commands.registry import COMMANDS, Handler
from blinkstore_gunicorn.server.commands.replies import (
    ERR_NOT_INT,
    INT64_MAX,
    NOAUTH,
    RESP3_NULL,
    as_text,
    invalid_expire,
    limit_error,
    parse_int,
    unknown_command,
    wrong_args,
)
from blinkstore_gunicorn.server.fastpath import NATIVE_COMMANDS, Executor, resp_executor
from blinkstore_gunicorn.server.leases import LeaseTable, LockTable
from blinkstore_gunicorn.server.pubsub import DEFAULT_PENDING_LIMIT, PubSubHub

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.commands.transaction import Transaction
    from blinkstore_gunicorn.server.pubsub_outbox import Batch
    from blinkstore_gunicorn.server.scripting.scripts import Scripting
    from blinkstore_gunicorn.server.upstream import Upstream
    from blinkstore_gunicorn.storage.saving import Snapshots

__all__ = ["LINE_SLACK", "Client", "Dispatcher", "ServerStats"]

#: Room a text protocol line needs beside its key and value (verb, separators).
LINE_SLACK = 4096


#: Distinct error codes ``INFO errorstats`` counts (Redis's ``ERROR_STATS_NUMBER``).
MAX_ERROR_CODES = 128


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
    #: The most ``used_memory`` seen (sampled every 100 ms and at each INFO).
    used_memory_peak: int = 0
    #: Error replies (``total_error_replies``), and by their code (``INFO errorstats``).
    error_replies: int = 0
    error_codes: dict[bytes, int] = field(default_factory=dict)

    def count_error(self, reply: bytes) -> None:
        """Count an error reply as Redis's ``afterErrorReply`` does: under its first word when
        a space ends it within 32 bytes, else under ``ERR``; at most 128 codes are kept."""
        self.error_replies += 1
        space = reply.find(b" ", 0, min(len(reply) - 2, 32))
        code = reply[1:space] if space > 0 else b"ERR"
        codes = self.error_codes
        if code in codes:
            codes[code] += 1
        elif len(codes) < MAX_ERROR_CODES:
            codes[code] = 1

    @property
    def uptime_seconds(self) -> int:
        """Whole seconds since the server object was made."""
        return int(time.monotonic() - self.started_monotonic)


Entry: TypeAlias = "tuple[Handler, int]"

ERR_WRONGTYPE = resp.error(WRONGTYPE)


class Client:
    """What the server knows about one connection: identity, auth state, pending close."""

    __slots__ = (
        "authenticated",
        "close_after",
        "cmd",
        "deliver",
        "drop",
        "id",
        "in_exec",
        "in_script",
        "lib_name",
        "lib_ver",
        "name",
        "nil",
        "on_close",
        "push",
        "resp3",
        "seen",
        "started",
        "table",
        "transaction",
        "transport",
        "watching",
    )

    def __init__(self, client_id: int, table: dict[bytes, Entry], authenticated: bool) -> None:
        self.id = client_id
        #: When the connection came (``time.monotonic``), when it last sent a command (the
        #: dispatcher's coarse clock) and that command's name: ``CLIENT LIST``'s age, idle, cmd.
        self.started = self.seen = time.monotonic()
        self.cmd = b""
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
        #: For a handler that returned ``DEFERRED`` (``commands/registry.py``): send its reply
        #: later with ``client.deliver(reply)`` (set by the connection; replies stay in order).
        self.deliver: Callable[[bytes], None] = _nowhere
        #: Called once when the connection closes (e.g. to drop what the client holds).
        self.on_close: list[Callable[[], None]] = []
        #: Pub/sub (set by the connection): hand over a batch of messages (written by the end
        #: of this event-loop iteration), returning the bytes the connection holds unsent; and
        #: close a subscriber that leaves too much unread.
        self.push: Callable[[Batch, bool, bool], int] = _sent
        self.drop: Callable[[], None] = _no_close
        #: The commands queued since MULTI (``commands/transaction.py``), else None.
        self.transaction: Transaction | None = None
        #: Set while EXEC runs the queued commands: their replies must come at once.
        self.in_exec = False
        #: Whether this is the client scripts run their ``redis.call`` commands as.
        self.in_script = False
        #: The keys this connection WATCHes, each with the engine's change count at WATCH.
        self.watching: dict[bytes, int] | None = None
        #: The connection's transport (set by the connection), for a handler whose reply
        #: carries more than bytes (``BS.SHM`` attaches file descriptors).
        self.transport: asyncio.Transport | None = None

    def use_resp3(self, enabled: bool) -> None:
        """Switch between RESP2 and RESP3 replies (``HELLO 2`` / ``HELLO 3``)."""
        self.resp3 = enabled
        self.nil = RESP3_NULL if enabled else resp.NIL

    def bulk_array(self, values: Iterable[bytes | None]) -> bytes:
        """An array of bulk strings whose ``None`` items are this protocol's null."""
        nil = self.nil
        return resp.array([nil if value is None else resp.bulk(value) for value in values])

    def bulk_set(self, values: Collection[bytes]) -> bytes:
        """A set of bulk strings: ``~`` in RESP3, an array in RESP2 (SMEMBERS...)."""
        body = b"".join([resp.bulk(value) for value in values])
        return b"%b%d\r\n%b" % (b"~" if self.resp3 else b"*", len(values), body)

    def map(self, pairs: list[tuple[bytes, bytes]]) -> bytes:
        """A map of already-encoded replies: ``%`` in RESP3, a flat array in RESP2."""
        body = b"".join(key + value for key, value in pairs)
        return b"%b%d\r\n%b" % (
            b"%" if self.resp3 else b"*",
            len(pairs) * (1 if self.resp3 else 2),
            body,
        )


def _sent(batch: Batch, resp3: bool, caught_up: bool) -> int:
    """``Client.push`` without a connection (unit tests): nothing is held."""
    return 0


def _no_close() -> None:
    """``Client.drop`` without a connection."""


def _nowhere(reply: bytes) -> None:
    """``Client.deliver`` of a client without a connection (unit tests): drop the reply."""


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
        "blocked",
        "busy",
        "busy_threshold_ms",
        "clients",
        "clock_ms",
        "engine",
        "execute_resp",
        "full_table",
        "hll_sparse_max_bytes",
        "known_commands",
        "leases",
        "locks",
        "max_key_size",
        "max_reply_size",
        "max_request_size",
        "max_value_size",
        "now",
        "preauth_table",
        "pubsub",
        "scripting",
        "snapshots",
        "stats",
        "upstream",
        "watchers",
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
        pubsub_limit: int = DEFAULT_PENDING_LIMIT,
        busy_threshold_ms: int = DEFAULT_BUSY_REPLY_THRESHOLD,
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
        #: Host-wide locks and the callers parked on them (the BLINK.LOCK* commands).
        self.locks = LockTable()
        #: Callers parked by the blocking pops (BLPOP, BRPOP, BLMOVE, BZPOP*) and XREAD BLOCK.
        self.blocked = BlockedPops()

        #: Pub/sub channels, patterns and subscribers; ``pubsub_limit`` bounds each one's
        #: unread messages.
        self.pubsub = PubSubHub(pubsub_limit)
        #: Lua scripts (``server/scripting/``), made by the first scripting command.
        self.scripting: Scripting | None = None
        #: While a script is busy (past its time limit), every command goes here instead.
        self.busy: Handler | None = None
        #: The store's snapshot file (``INFO persistence``, SAVE, BGSAVE); none without a store.
        self.snapshots: Snapshots | None = None
        #: The Redis/Valkey this store is a near cache of (``server/upstream/``), if any.
        self.upstream: Upstream | None = None
        #: How long a script runs before it is busy (``CONFIG SET busy-reply-threshold``).
        self.busy_threshold_ms = busy_threshold_ms
        #: Past this size a sparse HyperLogLog turns dense (``CONFIG SET hll-sparse-max-bytes``).
        self.hll_sparse_max_bytes = SPARSE_MAX_BYTES
        #: How many connections WATCH each key (``commands/transaction.py``).
        self.watchers: dict[bytes, int] = {}
        self.full_table = _lookup_table(COMMANDS)
        self.preauth_table = _lookup_table(_PREAUTH)
        #: Upper-case names of every RESP command (for protocol detection).
        self.known_commands = frozenset(name.upper().encode() for name in COMMANDS)
        #: Every client whose connection is open, by id (``CLIENT LIST``, ``CLIENT KILL``).
        self.clients: dict[int, Client] = {}
        #: ``time.monotonic()``, refreshed by the store's 100 ms timer: when a client was
        #: last seen, at no clock read per command.
        self.now = time.monotonic()
        #: What connections run RESP requests with, called as ``execute_resp(self, client,
        #: args)``: :meth:`execute`, or its C stand-in for plain GET/MGET (``fastpath.py``).
        self.execute_resp: Executor = resp_executor(self, Dispatcher.execute)

    def native_executor(self, fallback: Executor) -> tuple[Executor, tuple[str, ...]]:
        """``fallback`` behind the C runner of ``fastpath.py`` (``fallback`` itself where it
        is not built), and the commands the runner answers: a script's ``redis.call`` path."""
        return resp_executor(self, fallback), NATIVE_COMMANDS

    @property
    def requires_auth(self) -> bool:
        """Whether connections must AUTH before anything else."""
        return self._password is not None

    def new_client(self) -> Client:
        """State for a new connection, with the next client id, listed in :attr:`clients`
        until its connection closes."""
        self.stats.last_client_id += 1
        client_id = self.stats.last_client_id
        if self._password is None:
            client = Client(client_id, self.full_table, True)
        else:
            client = Client(client_id, self.preauth_table, False)
        self.clients[client_id] = client
        client.on_close.append(functools.partial(self._forget_client, client_id))
        return client

    def _forget_client(self, client_id: int) -> None:
        self.clients.pop(client_id, None)

    def check_password(self, candidate: bytes) -> bool:
        """Constant-time comparison with the configured password (False when none is set)."""
        if self._password is None:
            return False
        return hmac.compare_digest(candidate, self._password)

    def authenticate(self, client: Client) -> None:
        """Give ``client`` the full command table."""
        client.authenticated = True
        client.table = self.full_table

    # -- size limits of requests ---------------------------------------------------------

    @property
    def bulk_limit(self) -> int:
        """Largest argument a request may carry: no key or value is longer."""
        return max(self.max_key_size, self.max_value_size)

    @property
    def request_limit(self) -> int:
        """Largest request received: the request size limit, or the client buffer limit when
        that is smaller (a request larger than all connections may hold would be shed)."""
        return min(self.max_request_size, self.max_reply_size)

    @property
    def line_limit(self) -> int:
        """Longest text protocol line received: a ``SET`` of the largest key and value."""
        return min(self.request_limit, self.max_key_size + self.max_value_size + LINE_SLACK)

    def too_large(self, refused: TooLarge) -> str:
        """The message of the error reply to a request refused for its size (no error code)."""
        if refused.part == "value":
            return f"value too large: {ValueTooLarge(refused.size, self.max_value_size)}"
        if refused.limit < self.request_limit:
            return (
                f"value too large: line of {refused.size} bytes exceeds {refused.limit} bytes"
                f" (max value size {self.max_value_size} + max key size {self.max_key_size})"
            )
        setting = (
            "max_request_size"
            if self.max_request_size <= self.max_reply_size
            else "client_buffer_limit"
        )
        return (
            f"request too large: {refused.part} of at least {refused.size} bytes exceeds"
            f" {setting.replace('_', ' ')} {refused.limit} ({flag_name(setting)})"
        )

    # -- running requests -----------------------------------------------------------------

    def execute(self, client: Client, args: list[bytes] | TooLarge | ProtocolError) -> bytes:
        """Run one parsed request and return its reply; a ProtocolError marks the close."""
        if args.__class__ is not list:
            reply = self._not_a_command(client, args)  # type: ignore[arg-type]
        else:
            client.cmd = name = args[0]
            client.seen = self.now
            entry = client.table.get(name)
            if self.busy is not None:
                reply = self.busy(self, client, args)
            elif entry is None:
                reply = self._execute_slow(client, args)
            else:
                handler, arity = entry
                count = len(args)
                if count != arity and (arity > 0 or count < -arity):
                    reply = wrong_args(as_text(name))
                else:
                    try:
                        reply = handler(self, client, args)
                    except WrongType:
                        # Raised by the engine before any change: GET on a hash, HSET on a
                        # string...
                        reply = ERR_WRONGTYPE
        # Every reply of the Python path passes here (the C path's only error is made by
        # ``fastpath._region_full``, a later one by ``Client.deliver``): INFO errorstats.
        if reply[:1] == b"-":
            self.stats.count_error(reply)
        return reply

    def _not_a_command(self, client: Client, item: TooLarge | ProtocolError) -> bytes:
        """The error reply to what the reader yields instead of a command."""
        if isinstance(item, ProtocolError):
            client.close_after = True
            return resp.error("ERR " + item.message)
        if not client.authenticated:
            client.close_after = True  # as the pre-auth size limit does (``connection.py``)
            return NOAUTH
        if client.transaction is not None:
            client.transaction.failed = True  # EXEC answers EXECABORT, as for any refusal
        return resp.error("ERR " + self.too_large(item))

    def _execute_slow(self, client: Client, args: list[bytes]) -> bytes:
        """Mixed-case names, unknown commands and commands sent before AUTH."""
        name = args[0].lower()
        spec = COMMANDS.get(as_text(name))
        if spec is None:
            if self.upstream is not None and client.authenticated:
                return self.upstream.forward(client, args)  # Redis may know it
            return unknown_command(args)
        if name not in client.table:
            return NOAUTH
        count = len(args)
        if count != spec.arity and (spec.arity > 0 or count < -spec.arity):
            return wrong_args(spec.name)
        # The client's table, not the spec: it may restrict the command (subscribed mode).
        try:
            return client.table[name][0](self, client, args)
        except WrongType:
            return ERR_WRONGTYPE

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
        if key in self.leases.held:
            self.leases.fill(key, value)

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
