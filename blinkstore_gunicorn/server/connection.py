"""One asyncio protocol object per client connection.

The first byte picks the protocol (``*`` = RESP, anything else = Blink Store text, except a
first line that is a Redis inline command the text protocol lacks, see ``inline.py``; a RESP
connection takes inline requests too, as Redis's do). Each
``data_received`` batch is parsed by the sans-IO reader, every complete request is executed in
order, and the replies go out in one ``transport.write`` (a large one on its own: joining would
copy it). Backpressure: when the transport's write buffer passes its high-water mark
(``pause_writing``) the connection stops reading and parks the rest of the batch until the peer
has read (``resume_writing``), so a client that pipelines huge replies and never reads cannot
make the store buffer without bound.

Before AUTH on a password-protected store a connection may only send small requests, which
``preauth.py``'s gate checks (a request announced larger closes the connection before its
payload is buffered). After AUTH a request over the store's size limits is refused by the
readers instead (see ``Dispatcher.request_limit``): its error reply goes out in its turn, its
bytes are dropped unbuffered as they arrive, and the connection goes on.

All connections together are bounded by the server's :class:`~.budget.ClientBudget`: a
connection reports what it holds when that may be much (see ``budget.py``), never on the
one-command path.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any, Protocol, cast

from blinkstore_gunicorn.protocol import is_resp_start, text
from blinkstore_gunicorn.protocol.resp import LARGE_BULK, MAX_INLINE
from blinkstore_gunicorn.protocol.resp_hiredis import command_reader
from blinkstore_gunicorn.protocol.resp_split import OneRequest
from blinkstore_gunicorn.server.budget import CHARGE_MIN, ClientBudget
from blinkstore_gunicorn.server.commands.registry import DEFERRED
from blinkstore_gunicorn.server.commands.replies import NOAUTH
from blinkstore_gunicorn.server.dispatch import Client, Dispatcher
from blinkstore_gunicorn.server.fastpath import single_parser
from blinkstore_gunicorn.server.inline import is_inline_resp
from blinkstore_gunicorn.server.preauth import PreauthGate, log_preauth_close
from blinkstore_gunicorn.server.pubsub_outbox import Batch, Outbox
from blinkstore_gunicorn.server.text_commands import AUTH_REQUIRED, execute_text
from blinkstore_gunicorn.server.throttle import LogThrottle

__all__ = ["MAX_CLIENTS_REPLY", "ConnectionHost", "StoreConnection"]

log = logging.getLogger("blinkstore.server")

#: Sent (then the connection is closed) when max-connections is reached. It is read as an
#: error by both RESP clients and Blink text clients (a line that is not VALUE/OK/...).
MAX_CLIENTS_REPLY = b"-ERR max number of clients reached\r\n"
#: Replies are written early once a batch's replies reach this size.
FLUSH_BYTES = 1024 * 1024
#: Requests held behind a deferred reply before the connection stops reading.
MAX_HELD = 1024
#: Write-buffer high-water mark: above it the connection stops reading (and reports to the
#: client budget). Small enough that many connections below it hold little.
WRITE_HIGH_WATER = 1024 * 1024
#: A lingering close (see ``StoreConnection._close``) reads and drops at most this much input,
#: for at most this long, before the socket is closed.
LINGER_BYTES = 256 * 1024
LINGER_SECONDS = 1.0


class ConnectionHost(Protocol):
    """What a connection needs from the server that accepted it (``store.StoreServer``)."""

    @property
    def dispatcher(self) -> Dispatcher:
        """Runs the connection's commands."""

    @property
    def budget(self) -> ClientBudget:
        """The bound on what all connections together hold."""

    @property
    def preauth_closes(self) -> LogThrottle:
        """Rate of the warning about connections closed before AUTH."""

    def admit(self, connection: StoreConnection) -> bool:
        """Count a new connection in; False when max-connections is reached."""

    def release(self, connection: StoreConnection) -> None:
        """Count a closed connection out."""


class StoreConnection(asyncio.Protocol):
    """Parses, dispatches and answers the requests of one client connection."""

    __slots__ = (
        "_backlog",
        "_client",
        "_closed",
        "_deferred",
        "_direct",
        "_dispatcher",
        "_eof",
        "_execute",
        "_first_line",
        "_gate",
        "_held",
        "_linger",
        "_linger_left",
        "_open_line",
        "_outbox",
        "_pipelined",
        "_reader",
        "_resp",
        "_server",
        "_single",
        "_stats",
        "_transport",
        "_write_paused",
        "charged",
        "peer",
    )

    def __init__(self, server: ConnectionHost) -> None:
        self._server = server
        self._dispatcher = server.dispatcher
        self._stats = server.dispatcher.stats
        self._resp = False
        #: Whether the next read may take the one-command hot path: RESP, authenticated (the
        #: pre-auth gate reads every byte), nothing buffered, parked, deferred or closed, and
        #: the last read was not a pipeline (whose next read would only be split in vain).
        #: Cleared wherever that stops holding; set again only by :meth:`_refresh_direct`.
        self._direct = False
        self._pipelined = False
        self._transport: asyncio.Transport | None = None
        self._reader: Any = None
        self._execute: Callable[[Dispatcher, Client, Any], bytes] | None = None
        #: The hot path's parse of a read that is one whole request (``fastpath.py``).
        self._single: OneRequest | None = None
        self._client: Client | None = None
        self._backlog: list[Any] = []
        self._write_paused = False
        #: A command is waiting to answer (see ``DEFERRED``): later requests are held.
        self._deferred = False
        self._eof = False
        self._closed = False
        self._first_line = b""
        #: Text protocols: bytes received after the last newline (a partial line).
        self._open_line = 0
        #: Bytes last reported to the server's client budget.
        self.charged = 0
        #: Reading is frozen by the client budget (see ``budget.py``).
        self._held = False
        #: Before AUTH: the pre-auth size gate, fed the same bytes (None once authenticated
        #: or when no password is set).
        self._gate: PreauthGate | None = None
        #: While lingering: the timer that ends it, and the input it may still drop.
        self._linger: asyncio.TimerHandle | None = None
        self._linger_left = 0
        #: Pub/sub messages handed over in this event-loop iteration (see :meth:`push`).
        self._outbox: Outbox | None = None
        self.peer = ""

    # -- asyncio callbacks ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        server = self._server
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "unix"
        if not server.admit(self):
            self._closed = True
            transport.write(MAX_CLIENTS_REPLY)
            transport.close()
            return
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        client = server.dispatcher.new_client()
        client.deliver = self.deliver
        client.push = self.push
        # The pub/sub hub gave up on this subscriber: close it, discarding what is unsent.
        client.drop = functools.partial(self.shed, now=False)
        self._outbox = Outbox(transport, self._refresh_direct)
        client.transport = transport
        self._client = client
        if not client.authenticated:
            self._gate = PreauthGate()
        if server.budget.frozen:
            self.hold_reading(True)

    def data_received(self, data: bytes) -> None:
        if self._direct:
            # The request/response hot path: one whole command, one reply, one write.
            args = self._single(data)  # type: ignore[misc]
            if args is not None:
                client = self._client
                assert client is not None
                self._stats.commands_processed += 1
                try:
                    reply = self._execute(self._dispatcher, client, args)  # type: ignore[misc]
                    if reply is DEFERRED:
                        self._defer()
                        return
                    self._transport.write(reply)  # type: ignore[union-attr]
                    if client.close_after:
                        self._close()
                except Exception:
                    self._fail("error while serving")
                return
        if self._closed:
            self._linger_left -= len(data)
            if self._linger_left < 0 and self._transport is not None:
                self._transport.close()
            return
        try:
            self._received(data)
        except Exception:
            self._fail("error while serving")
        if self._gate is not None:
            self._after_unauthenticated()
        self._refresh_direct()

    def _refresh_direct(self) -> None:
        """Allow the hot path again once nothing is pending (called after the slow paths)."""
        reader = self._reader
        self._direct = (
            self._resp
            and self._gate is None
            and not self._closed
            and reader is not None
            and reader.idle
            and not self._backlog
            and not self._deferred
            and not self._outbox
            and not self._pipelined
        )

    def _received(self, data: bytes) -> None:
        """The general path: feed the reader, then run or park what it completes."""
        if self._gate is not None:
            self._gate.check(data)
        reader = self._reader
        if reader is None:
            reader = self._choose_protocol(data)
            if reader is None:
                self._open_line = len(self._first_line)
                return
            data, self._first_line = self._first_line, b""
            self._open_line = 0  # ``data`` now holds the bytes counted so far
        if not self._resp:
            # Only for EOF: whether a last line is open (its bytes may have been dropped).
            newline = data.rfind(b"\n")
            self._open_line = (
                len(data) - newline - 1 if newline >= 0 else self._open_line + len(data)
            )
        reader.feed(data)
        batch = reader.drain()
        self._pipelined = len(batch) > 1
        if self._backlog or self._deferred:
            # Requests parked earlier go first.
            self._backlog.extend(batch)
            if len(self._backlog) > MAX_HELD:
                self._transport.pause_reading()  # type: ignore[union-attr]
        elif batch:
            self._run(batch)
        if (
            self.charged
            or self._backlog
            or reader.buffered >= CHARGE_MIN
            or self._transport.get_write_buffer_size() >= CHARGE_MIN  # type: ignore[union-attr]
        ):
            self._charge()

    def _charge(self) -> None:
        if self._client is not None:
            self._server.budget.charge(self)

    @property
    def client_id(self) -> int:
        """This connection's client id (0 before it has one)."""
        return self._client.id if self._client is not None else 0

    def held(self) -> tuple[int, int]:
        """Bytes held for this client: (requests not answered yet, replies not sent yet)."""
        requests = int(self._reader.buffered) if self._reader is not None else len(self._first_line)
        for item in self._backlog:
            if item.__class__ is list:
                requests += sum(map(len, item))
            elif item.__class__ is text.Request:
                requests += len(item.key) + len(item.value)
        if self._client is not None:
            requests += self._dispatcher.pubsub.held(self._client)
        transport = self._transport
        replies = transport.get_write_buffer_size() if transport is not None else 0
        return requests, replies + (self._outbox.size if self._outbox is not None else 0)

    def shed(self, *, now: bool) -> None:
        """Drop this connection: the client budget is exceeded and it holds the most.

        ``now=False`` when the budget was told from inside this connection's own callback
        (a write): it stops reading at once and is aborted right after.
        """
        if now:
            self.abort()
            return
        self._closed = True
        self._direct = False
        self._backlog = []
        if self._transport is not None:
            self._transport.pause_reading()
            asyncio.get_running_loop().call_soon(self.abort)

    def _after_unauthenticated(self) -> None:
        """After a pre-auth read ran: drop the gate once authenticated, else close on failure."""
        client = self._client
        if client is not None and client.authenticated:
            self._gate = None
            return
        if self._gate is None or not self._gate.failed:
            return
        log_preauth_close(
            self._server.preauth_closes, client.id if client is not None else 0, self.peer
        )
        if not self._closed:  # else the reader's refusal of that request was the reply
            # The reason goes out before the close, as Redis does: a client still sending
            # reads it instead of a bare broken pipe.
            resp_reply = self._execute is self._dispatcher.execute_resp
            self._transport.write(NOAUTH if resp_reply else AUTH_REQUIRED)  # type: ignore[union-attr]
            self._close()

    def eof_received(self) -> bool | None:
        if not self._closed and not self._resp and self._open_line:
            # Like Blink Store, answer a last line that ends at EOF without its newline
            # (``printf 'GET k' | nc``).
            self.data_received(b"\n")
        if self._deferred:
            # Waiting for a deferred reply is the only way to see that such a client went
            # away (a dead worker's socket reads as EOF): close, which runs on_close.
            self._close()
            return None
        if self._backlog:
            # Keep the socket to answer what is parked; close once it is done.
            self._eof = True
            return True
        return None

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._transport is not None and not self._closed:
            self._transport.pause_reading()
        self._charge()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._charge()
        if self._closed or self._transport is None or self._deferred:
            return
        if not self._held:
            self._transport.resume_reading()
        self._run_backlog()

    def hold_reading(self, hold: bool) -> None:
        """The client budget freezes (or thaws) reading while shed memory is being freed."""
        self._held = hold
        transport = self._transport
        if self._closed or transport is None:
            return
        if hold:
            transport.pause_reading()
        elif not self._write_paused and not self._deferred:
            transport.resume_reading()

    def deliver(self, reply: bytes) -> None:
        """Send the reply of the command that returned ``DEFERRED``, then carry on."""
        if self._closed or not self._deferred or self._transport is None:
            return
        self._deferred = False
        if reply[:1] == b"-":  # a parked command's error (NOGROUP, UNBLOCKED...): INFO errorstats
            self._stats.count_error(reply)
        self._transport.write(reply)
        if self._write_paused:
            return  # resume_writing() continues
        if not self._held:
            self._transport.resume_reading()
        if self._backlog:
            # Not now: deliver() may be running inside another connection's command.
            asyncio.get_running_loop().call_soon(self._run_backlog)
        else:
            self._refresh_direct()

    def push(self, batch: Batch, resp3: bool, caught_up: bool) -> int:
        """Hand over a batch of pub/sub messages; return the bytes this connection holds unsent.

        The messages of one event-loop iteration go out in one write (see ``Outbox``), and a
        reply flushes them first (``_run``; the hot path is off meanwhile), so no reply
        overtakes a message published before its request. Past :data:`~.budget.CHARGE_MIN`
        unsent the client budget is told, as for replies.
        """
        outbox = self._outbox
        if self._closed or outbox is None:
            return 0
        self._direct = False
        pending = outbox.push(batch, resp3, caught_up)
        if pending >= CHARGE_MIN:
            self._charge()
        return pending

    def _run_backlog(self) -> None:
        if self._closed or self._deferred or self._write_paused or not self._backlog:
            return
        backlog, self._backlog = self._backlog, []
        try:
            self._run(backlog)
        except Exception:
            self._fail("error while serving")
        self._refresh_direct()

    def _defer(self) -> None:
        """A command answers later: hold everything after it until ``deliver``.

        Reading goes on (up to :data:`MAX_HELD` requests) so that EOF is noticed.
        """
        self._deferred = True
        self._direct = False

    def connection_lost(self, exc: Exception | None) -> None:
        client = self._client
        if client is not None:
            self._server.release(self)
            self._server.budget.release(self)
            self._client = None
            for callback in client.on_close:
                try:
                    callback()
                except Exception:
                    log.exception("client %d: close callback failed", client.id)
        self._closed = True
        self._direct = False
        self._reader = None
        self._backlog = []
        self._outbox = None
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None

    # -- internals -----------------------------------------------------------------------

    def _choose_protocol(self, data: bytes) -> Any:
        """Pick the reader from the first byte (and for non-RESP, the first line's verb).

        Returns None while the first line is incomplete; the bytes seen so far are kept in
        ``_first_line`` and fed to the reader once it is chosen.
        """
        dispatcher = self._dispatcher
        first = self._first_line + data
        self._first_line = first
        reader: Any
        resp = is_resp_start(first[0])
        if not resp:
            newline = first.find(b"\n", 0, MAX_INLINE + 1)
            if newline < 0 and len(first) <= MAX_INLINE:
                return None
            known = dispatcher.known_commands
            resp = newline >= 0 and is_inline_resp(first[:newline], known)
        if resp:
            # Its reader takes inline and ``*`` requests alike, as Redis's does.
            limits = (dispatcher.request_limit, dispatcher.bulk_limit)
            reader = command_reader(*limits)
            self._single = single_parser(*limits)
            self._execute = dispatcher.execute_resp
            self._resp = True
        else:
            reader = text.LineReader(max_line=dispatcher.line_limit)
            self._execute = execute_text
        self._reader = reader
        return reader

    def _run(self, batch: list[Any]) -> None:
        """Execute ``batch`` in order and write the replies (usually in one write)."""
        client = self._client
        transport = self._transport
        execute = self._execute
        assert client is not None and transport is not None and execute is not None
        dispatcher = self._dispatcher
        stats = self._stats
        if self._outbox:
            self._outbox.flush()
        if len(batch) == 1:
            # The common request/response case: no list, no join.
            stats.commands_processed += 1
            reply = execute(dispatcher, client, batch[0])
            if reply is DEFERRED:
                self._defer()
                return
            if reply:
                transport.write(reply)
            if client.close_after:
                self._close()
            return
        out: list[bytes] = []
        size = 0
        done = 0
        try:
            for item in batch:
                reply = execute(dispatcher, client, item)
                done += 1
                if reply is DEFERRED:
                    self._backlog = batch[done:]
                    self._defer()
                    break
                if len(reply) >= LARGE_BULK:
                    # On its own: joining would copy it, and it may be shared (``resp.bulk``).
                    if out:
                        transport.write(b"".join(out))
                        out = []
                        size = 0
                    transport.write(reply)
                else:
                    out.append(reply)
                    size += len(reply)
                    if size >= FLUSH_BYTES:
                        transport.write(b"".join(out))
                        out = []
                        size = 0
                if client.close_after:
                    break
                if self._write_paused:
                    self._backlog = batch[done:]
                    break
        finally:
            # Also when a command failed unexpectedly: the replies before it still go out.
            stats.commands_processed += done
            if out:
                transport.write(b"".join(out))
        if client.close_after or (self._eof and not self._backlog and not self._deferred):
            self._close()

    def _close(self) -> None:
        """Close after the buffered replies are flushed, lingering over unread input.

        Closing a socket that still has unread input makes the kernel reset the connection,
        which can destroy the last reply (often the error that explains the close) before
        the client reads it. So the write side is shut first (the client reads every reply,
        then EOF) and what still arrives is dropped unread, until the client closes, or for
        at most :data:`LINGER_SECONDS` and :data:`LINGER_BYTES`.
        """
        self._closed = True
        self._direct = False
        self._backlog = []
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._outbox:
            self._outbox.flush(last=True)  # messages published before the close go first
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        transport.resume_reading()
        self._linger_left = LINGER_BYTES
        self._linger = asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.close)

    def _fail(self, what: str) -> None:
        client_id = self._client.id if self._client is not None else 0
        log.exception("client %d (%s): %s; closing this connection", client_id, self.peer, what)
        self._close()

    def close_gracefully(self) -> None:
        """Server shutdown: stop reading, flush what was already answered, then close."""
        # No lingering: shutdown must not wait for idle clients to hang up.
        self._closed = True
        self._direct = False
        self._backlog = []
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        """Drop the connection now (shutdown grace period over)."""
        self._closed = True
        self._direct = False
        if self._transport is not None:
            self._transport.abort()
