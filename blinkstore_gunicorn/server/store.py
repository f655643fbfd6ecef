"""``StoreServer``: listeners, connection limit, active expiry, stats and graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import stat
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

from blinkstore_gunicorn import registry
from blinkstore_gunicorn._version import __version__
from blinkstore_gunicorn.config import ConfigError, StoreSettings, format_size
from blinkstore_gunicorn.engine import Engine, MemoryEngine, tune_allocator
from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.adoption import start_adoption
from blinkstore_gunicorn.server.budget import ClientBudget
from blinkstore_gunicorn.server.commands.scriptlayer import library_codes, load_libraries
from blinkstore_gunicorn.server.connection import StoreConnection
from blinkstore_gunicorn.server.dispatch import Dispatcher, ServerStats
from blinkstore_gunicorn.server.eviction_log import EvictionLog
from blinkstore_gunicorn.server.throttle import LogThrottle
from blinkstore_gunicorn.server.ticker import Ticker
from blinkstore_gunicorn.server.upstream import Upstream
from blinkstore_gunicorn.shm import handout
from blinkstore_gunicorn.shm.adoption import Inheritance
from blinkstore_gunicorn.shm.fds import make_undumpable
from blinkstore_gunicorn.shm.generation import Generation, generation_path
from blinkstore_gunicorn.shm.writer import RegionWriter
from blinkstore_gunicorn.storage.saving import Snapshots

__all__ = ["EXPIRY_INTERVAL", "StoreServer", "serve", "wall_clock_ms"]

log = logging.getLogger("blinkstore.server")

#: Seconds between active-expiry passes.
EXPIRY_INTERVAL = 0.1
#: Seconds between two measurements of every connection's buffers (see ``budget.py``), which
#: is also when the shared large reply is let go (see ``resp.bulk``).
BUDGET_AUDIT_INTERVAL = 1.0
#: Seconds between two "refused connections" log lines.
REFUSAL_LOG_INTERVAL = 10.0
#: Seconds between two heartbeats of the shared region (readers stop trusting it after
#: ``shm.layout.STALE_NS`` without one).
HEARTBEAT_INTERVAL = 0.05
#: Pending connections the kernel queues (capped by net.core.somaxconn); a burst of clients
#: connecting at once beyond it would see EAGAIN on Unix sockets.
LISTEN_BACKLOG = 4096
#: Seconds a stopping server waits for connections to flush their replies.
STOP_GRACE = 2.0


def wall_clock_ms() -> int:
    """Wall-clock milliseconds (TTL deadlines are wall-clock, as in Redis)."""
    return time.time_ns() // 1_000_000


def _socket_is_live(path: str) -> bool:
    """Whether something accepts connections on the Unix socket ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


class StoreServer:
    """The store: one engine, any number of connections, Unix and/or TCP listeners.

    ``await start()`` binds (raising :class:`ConfigError` for unusable addresses),
    ``await wait_stopped()`` returns after :meth:`request_stop`, ``await stop()`` closes
    listeners, flushes replies, closes connections and removes the socket file.
    """

    def __init__(
        self,
        settings: StoreSettings,
        *,
        engine: Engine | None = None,
        clock_ms: Callable[[], int] = wall_clock_ms,
        revoked_pid: int = 0,
        hand_over: Callable[[int], bool] | None = None,
        inheritance: Inheritance | None = None,
    ) -> None:
        self.settings = settings
        # Under a supervisor: the store whose region it revoked already (no wait for that
        # one's heartbeat), how this store hands it its own region's writable descriptor, and
        # that dead store's region, whose entries this one adopts while it serves.
        self._revoked_pid = revoked_pid
        self._hand_over = hand_over
        self._inheritance = inheritance
        # Not ``engine or ...``: an empty engine is falsy (it has a length).
        self.engine: Engine = (
            engine
            if engine is not None
            else MemoryEngine(
                memory_limit=settings.memory_limit,
                max_key_size=settings.max_key_size,
                max_value_size=settings.max_value_size,
                clock_ms=clock_ms,
            )
        )
        self.stats = ServerStats(max_connections=settings.max_connections)
        self.dispatcher = Dispatcher(
            self.engine,
            clock_ms=clock_ms,
            stats=self.stats,
            password=settings.password,
            max_key_size=settings.max_key_size,
            max_value_size=settings.max_value_size,
            max_request_size=settings.request_size_limit,
            max_reply_size=settings.client_buffer_budget,
            pubsub_limit=settings.pubsub_buffer_limit,
            busy_threshold_ms=settings.busy_reply_threshold,
        )
        #: The snapshot file (``snapshot`` setting): loaded before serving, saved on stop.
        self.snapshots = self.dispatcher.snapshots = Snapshots(settings.snapshot, self.engine)
        self.snapshots.libraries = partial(library_codes, self.dispatcher)
        self.snapshots.load_libraries = partial(load_libraries, self.dispatcher)
        self._snapshot_ticker: Ticker | None = None
        #: The Redis/Valkey this store is a near cache of (``upstream`` setting).
        self.upstream = Upstream(settings.upstream, self.dispatcher) if settings.upstream else None
        if self.upstream is not None:
            self.upstream.install()
        self.connections: set[StoreConnection] = set()
        self._eviction_log = EvictionLog(self.engine)
        #: The one bound on what all connections hold together.
        self.budget = ClientBudget(settings.client_buffer_budget, self.connections, self.stats)
        #: Where the store listens, as client URLs (``unix:///...``, ``tcp://host:port``).
        self.urls: list[str] = []
        self._listeners: list[asyncio.AbstractServer] = []
        self._unix_identity: tuple[int, int] | None = None
        #: The shared-memory region clients read (``BS.SHM``), once the Unix socket is bound.
        self.region: RegionWriter | None = None
        self._generation: Generation | None = None
        self._heartbeat: Ticker | None = None
        self._expiry: Ticker | None = None
        self._audit: Ticker | None = None
        self._stop_requested: asyncio.Event | None = None
        self._stopped = False
        self._refusals = LogThrottle(REFUSAL_LOG_INTERVAL)
        #: Connections closed for sending too much before AUTH (logged at most every 10 s).
        self.preauth_closes = LogThrottle(REFUSAL_LOG_INTERVAL)

    # -- connection bookkeeping (called by StoreConnection) -------------------------------

    def admit(self, connection: StoreConnection) -> bool:
        """Register a new connection, or refuse it when max-connections is reached."""
        stats = self.stats
        stats.connections_received += 1
        if self._stopped:
            return False
        if len(self.connections) >= self.settings.max_connections:
            stats.rejected_connections += 1
            refused = self._refusals.event()
            if refused:
                log.warning(
                    "refused %d connection(s): max connections (%d) reached",
                    refused,
                    self.settings.max_connections,
                )
            return False
        self.connections.add(connection)
        stats.connected = len(self.connections)
        return True

    def release(self, connection: StoreConnection) -> None:
        """Forget a closed connection."""
        self.connections.discard(connection)
        self.stats.connected = len(self.connections)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind every listener, start active expiry and log where the store listens."""
        loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        self.stats.event_loop = type(loop).__module__.split(".")[0]
        unusable = self.snapshots.unusable()
        if unusable is None and self.upstream is not None and self.snapshots.path is not None:
            unusable = "a near cache (--upstream) keeps no snapshot: its data is the upstream's"
        if unusable is not None:
            raise ConfigError("snapshot", unusable)
        try:
            if self.settings.unix is not None:
                await self._listen_unix(loop, self.settings.unix)
            tcp = self.settings.tcp_address
            if tcp is not None:
                await self._listen_tcp(loop, tcp.host, tcp.port)
        except BaseException:
            await self._close_listeners()
            self._close_region()
            self._remove_socket_file()
            raise
        if self.region is not None:
            self._heartbeat = Ticker(loop, HEARTBEAT_INTERVAL, self._beat)
        # Bound but not serving yet: connections queue until the snapshot is in.
        self.snapshots.load(self.dispatcher.clock_ms())
        for listener in self._listeners:
            await listener.start_serving()
        if self.snapshots.path is not None and self.settings.snapshot_interval > 0:
            self._snapshot_ticker = Ticker(
                loop, self.settings.snapshot_interval, self.snapshots.periodic
            )
        if self.upstream is not None:
            self.upstream.start()
            log.info("near cache of upstream %s", self.upstream.display)
        self._expiry = Ticker(loop, EXPIRY_INTERVAL, self._expire_due)
        self._audit = Ticker(loop, BUDGET_AUDIT_INTERVAL, self._audit_buffers)
        limit = self.settings.memory_limit
        log.info(
            "blinkstore %s listening on %s (memory limit %s, client buffers %s, max connections"
            " %d, pid %d, %s)",
            __version__,
            ", ".join(self.urls),
            format_size(limit) if limit else "unlimited",
            format_size(self.budget.limit),
            self.settings.max_connections,
            os.getpid(),
            self.stats.event_loop,
        )

    async def _listen_unix(self, loop: asyncio.AbstractEventLoop, path: str) -> None:
        path = os.path.abspath(path)
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            try:
                os.makedirs(directory, mode=0o700)
                os.chmod(directory, 0o700)
            except OSError as exc:
                raise ConfigError("unix", f"cannot create directory {directory}: {exc}") from None
        self._clear_stale_socket(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # The umask makes the socket 0600 from birth, so there is no window where others
        # could connect; chmod below is the belt to those braces.
        old_umask = os.umask(0o177)
        try:
            sock.bind(path)
        except OSError as exc:
            sock.close()
            raise ConfigError("unix", f"cannot bind {path}: {exc.strerror}") from None
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        st = os.stat(path)
        self._unix_identity = (st.st_dev, st.st_ino)
        # Listening already: clients that connect while this store waits are queued, not
        # refused; they are served once it is its turn.
        sock.listen(LISTEN_BACKLOG)
        # Before the first connection, whatever this store's own region: readers of a dead
        # store's region stop (its heartbeat goes stale) before this one acknowledges anything.
        generation = Generation(generation_path(path))
        wait = generation.wait_for_previous(self._revoked_pid)
        if wait:
            log.info("waiting %.2f s for the previous store's shared-memory readers", wait)
            await asyncio.sleep(wait)
        self._publish_region(generation)
        self._adopt()
        sock.setblocking(False)
        server = await loop.create_unix_server(
            lambda: StoreConnection(self), sock=sock, backlog=LISTEN_BACKLOG, start_serving=False
        )
        self._listeners.append(server)
        self.stats.unix_path = path
        self.urls.append(f"unix://{path}")

    def _publish_region(self, generation: Generation) -> None:
        """Create the shared-memory region the engine publishes into (``shm`` setting)."""
        settings = self.settings
        engine = self.engine
        if settings.shm == "off" or not handout.supported() or not isinstance(engine, MemoryEngine):
            generation.discard()
            return
        try:
            region = RegionWriter(
                engine.memory_limit,
                max_value=settings.shm_max_value,
                checksum=True if settings.shm == "checksum" else None,
                partial=settings.upstream is not None,
            )
        except OSError as exc:
            log.warning("shared-memory reads are off: %s", exc)
            generation.discard()
            return
        if self._hand_over is not None:
            # Before the claim: a supervisor that holds the region can revoke it when this
            # store dies, and its successor need not wait for the heartbeat to go stale.
            try:
                if not self._hand_over(region.owner_fd):
                    log.warning("the supervisor did not confirm it can revoke this region")
            except OSError as exc:
                log.warning("the supervisor cannot revoke this region: %s", exc)
        # After the supervisor mapped its page: from now on nobody else can write the region,
        # not even a worker that opens its read-only descriptor again through /proc.
        try:
            region.seal()
        except OSError as exc:
            log.warning("the shared-memory region cannot be sealed against writes: %s", exc)
        try:
            generation.claim(time.monotonic_ns())
        except OSError as exc:
            log.warning("shared-memory reads are off: %s", exc)
            region.close()
            return
        # A process of this user without the password must not open the region through
        # /proc/<pid>/fd (nor ptrace the store for it).
        if not make_undumpable():
            log.warning("cannot make the store undumpable: same-user processes can open its region")
        engine.attach_region(region)
        self.region = region
        self._generation = generation

    def _adopt(self) -> None:
        """Take over the dead predecessor's entries, first of all data loaded at start: what
        its region held is newer than any snapshot (which only fills in what it cannot hold).
        Only its header is checked here; its entries are adopted on demand and in the
        background while the store serves (``server/adoption.py``)."""
        inheritance, self._inheritance = self._inheritance, None
        if inheritance is None:
            return
        if self.upstream is not None:
            # A near cache may only hold what its own tracking connection read: the dead
            # store's copies were tracked on a connection that is gone.
            os.close(inheritance.fd)
            log.info(
                "the previous store's shared-memory region is not adopted: a near cache"
                " fetches again what the upstream may have changed since"
            )
            return
        adoption = start_adoption(self.engine, inheritance)
        if adoption is not None:
            adoption.run(asyncio.get_running_loop())

    def _beat(self) -> None:
        """The heartbeat readers check: the generation file first, so it is never older."""
        now = time.monotonic_ns()
        if self._generation is not None:
            self._generation.beat(now)
        if self.region is not None:
            self.region.beat(now)

    def _close_region(self) -> None:
        """Tell readers the region is gone; remove the generation file if it is still ours."""
        region, self.region = self.region, None
        generation, self._generation = self._generation, None
        if region is not None:
            region.close()
        if generation is not None:
            generation.release()

    @staticmethod
    def _clear_stale_socket(path: str) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise ConfigError("unix", f"{path} exists and is not a socket; refusing to replace it")
        if _socket_is_live(path):
            raise ConfigError(
                "unix", f"{path} is already served by a running store; stop it or pick another path"
            )
        log.info("removing stale socket file %s", path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    async def _listen_tcp(self, loop: asyncio.AbstractEventLoop, host: str, port: int) -> None:
        try:
            server = await loop.create_server(
                lambda: StoreConnection(self),
                host,
                port,
                reuse_address=True,
                backlog=LISTEN_BACKLOG,
                start_serving=False,
            )
        except OSError as exc:
            reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise ConfigError("tcp", f"cannot listen on {host}:{port}: {reason}") from None
        self._listeners.append(server)
        for sock in server.sockets:
            bound = sock.getsockname()
            self.stats.tcp_port = bound[1]
            shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
            self.urls.append(f"tcp://{shown}:{bound[1]}")

    def _expire_due(self) -> None:
        try:
            self.engine.expire_due()
            stats = self.stats
            stats.used_memory_peak = max(stats.used_memory_peak, self.engine.used_bytes)
            self._eviction_log.check()
            dispatcher = self.dispatcher
            dispatcher.now = time.monotonic()
            for table in (dispatcher.leases, dispatcher.locks, dispatcher.blocked):
                if table:
                    table.expire(self.dispatcher.clock_ms())
        except Exception:
            log.exception("active expiry failed")

    def _audit_buffers(self) -> None:
        self.budget.audit()
        # Its value may have been deleted since: do not keep it alive for long.
        resp.forget_large_bulk()

    def request_stop(self) -> None:
        """Ask :meth:`wait_stopped` to return (safe from signal handlers)."""
        if self._stop_requested is not None:
            self._stop_requested.set()

    async def wait_stopped(self) -> None:
        """Return once :meth:`request_stop` was called."""
        assert self._stop_requested is not None, "start() first"
        await self._stop_requested.wait()

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop accepting, let connections flush their replies, close them, clean up."""
        if self._stopped:
            return
        self._stopped = True
        for ticker in (self._heartbeat, self._expiry, self._audit, self._snapshot_ticker):
            if ticker is not None:
                ticker.close()
        await self._close_listeners()
        if self.upstream is not None:
            self.upstream.close()
        self._remove_socket_file()
        for connection in list(self.connections):
            connection.close_gracefully()
        deadline = time.monotonic() + grace
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for connection in list(self.connections):
            connection.abort()
        # Give aborted transports a loop iteration to call connection_lost.
        await asyncio.sleep(0)
        # Nothing writes any more; the region still holds its strings.
        self.snapshots.stop()
        self._close_region()
        log.info(
            "blinkstore stopped (pid %d, uptime %ds, %d commands)",
            os.getpid(),
            self.stats.uptime_seconds,
            self.stats.commands_processed,
        )

    async def _close_listeners(self) -> None:
        # Only close() here: since Python 3.12 wait_closed() also waits for every open
        # connection, which is the job of stop()'s grace period.
        for server in self._listeners:
            server.close()
        self._listeners = []

    def _remove_socket_file(self) -> None:
        """Remove our socket file, only if it is still the one we bound."""
        path = self.stats.unix_path
        if not path or self._unix_identity is None:
            return
        try:
            st = os.lstat(path)
            if (st.st_dev, st.st_ino) == self._unix_identity:
                os.unlink(path)
        except FileNotFoundError:
            pass
        self._unix_identity = None


def _raise_fd_limit(wanted: int) -> None:
    """Raise the soft open-files limit towards ``wanted`` (as Redis does for maxclients)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft != resource.RLIM_INFINITY and soft < wanted:
        log.warning(
            "open-files limit is %d: fewer than max connections (%d) can be served", soft, wanted
        )


def configure_logging(level: int) -> None:
    """One line per event on stderr, unless the embedding program set logging up already."""
    logger = logging.getLogger("blinkstore")
    logger.setLevel(level)
    if not logging.getLogger().handlers and not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s",
                "%Y-%m-%d %H:%M:%S %z",
            )
        )
        logger.addHandler(handler)
        logger.propagate = False


@contextlib.contextmanager
def listed(server: StoreServer) -> Iterator[None]:
    """List the started ``server`` for ``blinkstore ls``/``stats`` while the block runs.

    Every process that serves a store (``blinkstore serve``, the gunicorn plugin's store) wraps
    its serving in this; failing to write the entry only costs that listing.
    """
    try:
        entry: Path | None = registry.register(server.urls, server.settings.password)
    except OSError as exc:
        log.warning("not listed for `blinkstore ls` (pass --url to the CLI instead): %s", exc)
        entry = None
    try:
        yield
    finally:
        if entry is not None:
            registry.unregister(entry)


async def _serve_async(settings: StoreSettings) -> None:
    server = StoreServer(settings)
    await server.start()
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, server.request_stop)
            handled.append(signum)
        except (NotImplementedError, RuntimeError, ValueError):  # pragma: no cover
            # Not the main thread (an embedding program): it handles signals itself.
            continue
    try:
        with listed(server):
            await server.wait_stopped()
            log.info("stop requested; finishing in-flight replies")
    finally:
        # The handlers stay during stop(): a second SIGTERM must not kill the process
        # while it flushes replies and removes its socket file.
        await server.stop()
        for signum in handled:
            loop.remove_signal_handler(signum)


def serve(settings: StoreSettings) -> int:
    """Run a store until SIGTERM/SIGINT; return the exit status (0).

    Raises :class:`ConfigError` when a listener cannot be set up (address in use, live socket).
    Uses uvloop when it is installed.
    """
    configure_logging(settings.log_level_number)
    _raise_fd_limit(settings.max_connections + 64)
    # This process exists to hold the data: let its RSS follow the engine's accounting.
    tune_allocator()
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve_async(settings))
    else:
        uvloop.run(_serve_async(settings))
    return 0
