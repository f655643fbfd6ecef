"""Start a store, watch it, restart it, stop it: the one supervision loop.

Used by the gunicorn plugin (in the master) and by ``blinkstore run``. Process tree::

    gunicorn master / blinkstore run ── store (python -m blinkstore_gunicorn.supervision.child,
                                   │           own session)
                                   ├── its warm standby
                                   └── workers / CMD

This is the only restart loop. A thread of the supervising process watches the store through a
pidfd (it works whoever reaps the store: gunicorn's arbiter reaps every child with
``waitpid(-1)``), restarts it at once when it dies (backing off while it keeps dying young),
and copies its output into the supervisor's log (see :mod:`.output`). The store binds only
after checking the runtime directory again, and stops, removing the directory, when the
supervising process closes or loses the *lifeline* pipe (see :mod:`.child`). Each store process
also has a control channel (:mod:`.handover`): GO tells it to bind, and it hands back its
shared-memory region, which the thread revokes the moment it sees the store dead, before the
successor binds, so that the successor need not wait for the dead region's heartbeat. The
thread keeps the region's descriptor and hands it to the successor with GO: the successor
adopts the entries it can trust while it serves (``shm/adoption.py``).

Every descriptor that belongs to supervision is closed in any process forked from the
supervising one (gunicorn's workers included) by an ``os.register_at_fork`` handler; a fork
lock keeps a fork from happening in the middle of a store restart, when a pipe end is briefly
held in the supervising process.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

from blinkstore_gunicorn.config import env_name, without_setting_variables
from blinkstore_gunicorn.supervision.handover import HeldRegion, StoreChannel, channel_pair
from blinkstore_gunicorn.supervision.output import Logger, OutputPipe, StoreOutput
from blinkstore_gunicorn.supervision.runtime import (
    EXIT_REFUSED,
    EXIT_STORE_FAILED,
    SOCKET_NAME,
    ExitWatch,
    RuntimeDirError,
    check_reachable,
    create_runtime_dir,
    describe_status,
    ping,
    remove_runtime_dir,
    verify_runtime_dir,
)

__all__ = [
    "StoreStartError",
    "StoreSupervisor",
    "StoreUser",
    "close_inherited",
    "current",
]

_MAX_BACKOFF = 5.0
# A store that dies sooner than this after starting counts as crash-looping.
_HEALTHY_AFTER = 2.0
_SETTLE = 0.3
# The module a store process runs (``python -m``).
_STORE_MODULE = "blinkstore_gunicorn.supervision.child"


class StoreStartError(RuntimeError):
    """The store could not be started; the message says why.

    A ``RuntimeError`` on purpose: gunicorn prints those as ``Error: <message>`` and exits 1.
    """


@dataclass(frozen=True)
class StoreUser:
    """The user the store runs as when a root supervisor hands it to another user."""

    uid: int
    gid: int
    groups: tuple[int, ...] = ()


_fork_lock = threading.Lock()
_current: StoreSupervisor | None = None
_at_fork_registered = False


def current() -> StoreSupervisor | None:
    """The supervisor running in this process (the supervising one, not a fork of it), if any."""
    sup = _current
    return sup if sup is not None and sup.owner_pid == os.getpid() else None


def close_inherited() -> None:
    """In a process forked from the supervising one: close the supervision descriptors."""
    sup = _current
    if sup is not None:
        sup.close_inherited()


def _stop_at_exit() -> None:
    # gunicorn leaves with sys.exit() on some start-up failures (a busy address) without
    # calling on_exit; stop the store right away instead of leaving it to the lifeline. Forked
    # workers inherit this handler too: current() is None there.
    sup = current()
    if sup is not None:
        sup.stop()


def _before_fork() -> None:
    _fork_lock.acquire()


def _after_fork_parent() -> None:
    _fork_lock.release()


def _after_fork_child() -> None:
    global _fork_lock
    _fork_lock = threading.Lock()
    sup = _current
    if sup is not None:
        sup.close_inherited()


def _register_process_handlers() -> None:
    global _at_fork_registered
    if not _at_fork_registered:
        os.register_at_fork(
            before=_before_fork,
            after_in_parent=_after_fork_parent,
            after_in_child=_after_fork_child,
        )
        atexit.register(_stop_at_exit)
        _at_fork_registered = True


def _store_environment(password: str | None, upstream: str | None) -> dict[str, str]:
    # Settings are resolved already (a setting variable left could only disagree with the
    # flags; the others stay); the secrets (password, upstream URL) travel here, out of ps.
    env = without_setting_variables(os.environ)
    secrets = {"password": password, "upstream": upstream}
    env.update((env_name(name), value) for name, value in secrets.items() if value is not None)
    return env


class _StoreProcess:
    """One store process the supervisor started: its exit watch, output pipe and channel."""

    def __init__(
        self, process: subprocess.Popen[bytes], output: OutputPipe, channel: StoreChannel
    ) -> None:
        self.process = process
        self.watch = ExitWatch(process.pid)
        self.output = output
        #: GO makes it bind (closing it lets a standby go); its region comes back on it.
        self.channel = channel
        self.started_at = time.monotonic()

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def promote(self, revoked_pid: int, region: HeldRegion | None = None) -> bool:
        """Tell the store to bind now (``revoked_pid``: whose region is revoked already, and
        ``region`` that region to adopt); False when it is gone already."""
        if self.watch.exited() or not self.channel.go(revoked_pid, region):
            return False
        self.started_at = time.monotonic()
        return True

    def revoke(self) -> int:
        """The process exited: revoke the region it handed over; its pid if there was one.
        The channel holds the region on for :meth:`StoreChannel.take_region`."""
        with _fork_lock:  # a descriptor received may be open for a moment
            return self.pid if self.channel.revoke() else 0

    def close(self, *, in_child: bool = False) -> None:
        """Release the descriptors the supervisor holds for this process."""
        self.output.close()
        self.channel.close(in_child=in_child)
        self.watch.close()


class StoreSupervisor:
    """Start, watch, restart and stop one store on a private Unix socket (see the module doc).

    Next to the store it keeps a *standby*: a store process that has started its interpreter
    and imported everything, and binds only when the supervisor promotes it. A restart is then
    a byte on a pipe, not a cold interpreter start, which can take a second on a busy host.
    ``log`` receives the lifecycle events and the store's own output.
    """

    def __init__(
        self,
        log: Logger,
        serve_args: Sequence[str] = (),
        *,
        start_timeout: float = 10.0,
        runtime_parent: str | None = None,
        password: str | None = None,
        user: StoreUser | None = None,
        upstream: str | None = None,
    ) -> None:
        self.log = log
        self.serve_args = list(serve_args)
        self.store_env = _store_environment(password, upstream)
        self.password = password
        self.start_timeout = start_timeout
        self.runtime_parent = runtime_parent
        self.user = user
        self.owner_pid = os.getpid()
        self.runtime_dir = ""
        self.socket_path = ""
        self.store: _StoreProcess | None = None
        self.standby: _StoreProcess | None = None
        self._lifeline: tuple[int, int] | None = None
        self._stop_pipe: tuple[int, int] | None = None
        self._thread: threading.Thread | None = None
        self._held: HeldRegion | None = None
        self._stopping = False
        self._starting = False
        self._gave_up = False
        self._output = StoreOutput(log)

    @property
    def url(self) -> str:
        """Where clients connect: ``unix://<runtime dir>/store.sock[?password=...]``."""
        if self.password is None:
            return f"unix://{self.socket_path}"
        return f"unix://{self.socket_path}?password={urllib.parse.quote(self.password, safe='')}"

    @property
    def store_uid(self) -> int:
        """The uid the store runs as (and its directory belongs to)."""
        return self.user.uid if self.user is not None else os.geteuid()

    def start(self) -> str:
        """Start the store and wait until it answers PING; return its URL.

        Raises :class:`StoreStartError` (everything started is cleaned up) if the store does
        not answer within ``start_timeout`` seconds or exits first.
        """
        global _current
        _register_process_handlers()
        owner = (self.user.uid, self.user.gid) if self.user is not None else None
        try:
            self.runtime_dir = create_runtime_dir(self.runtime_parent, owner=owner)
            if self.user is not None:
                check_reachable(self.runtime_dir, self.user.uid, (self.user.gid, *self.user.groups))
        except OSError as exc:
            if self.runtime_dir:
                remove_runtime_dir(self.runtime_dir)
            raise StoreStartError(f"blinkstore: cannot create a runtime directory: {exc}") from exc
        self.socket_path = os.path.join(self.runtime_dir, SOCKET_NAME)
        self._lifeline = os.pipe()
        self._stop_pipe = os.pipe()
        _current = self
        self._starting = True
        try:
            self.store = self._spawn(standby=False)
            self._thread = threading.Thread(
                target=self._watch_loop, name="blinkstore-supervisor", daemon=True
            )
            self._thread.start()
            why = self._wait_ready(self.store)
            if not why:
                self.standby = self._spawn(standby=True)
        except BaseException:
            self.stop()
            raise
        finally:
            self._starting = False
        if why:
            # Stop first: it drains the store's last output into the tail the message shows.
            self.stop()
            raise StoreStartError(self._failure_message(why))
        return self.url

    def _wait_ready(self, store: _StoreProcess) -> str:
        """Wait for the first PONG; return why the store is not ready, or "" when it is."""
        deadline = time.monotonic() + self.start_timeout
        while True:
            if ping(self.socket_path, 0.2, self.password):
                # A store that answers and then rejects a setting (a busy TCP port) dies right
                # after its first PONG: only a store still up a moment later counts as started.
                time.sleep(_SETTLE)
                if not store.watch.exited():
                    return ""
            if store.watch.exited():
                status = store.watch.reap()
                if status in (EXIT_STORE_FAILED << 8, EXIT_REFUSED << 8):
                    return "the store exited before it answered PING"
                return f"the store exited with {describe_status(status)}"
            if time.monotonic() >= deadline:
                return (
                    f"the store did not answer PING on {self.socket_path} within "
                    f"{self.start_timeout:g} s"
                )
            time.sleep(0.05)

    def _failure_message(self, why: str) -> str:
        output = "\n".join(f"  {line}" for line in self._output.tail)
        message = f"blinkstore: could not start the store: {why}"
        return f"{message}\nstore output:\n{output}" if output else message

    def _spawn(
        self, *, standby: bool, revoked_pid: int = 0, region: HeldRegion | None = None
    ) -> _StoreProcess:
        assert self._lifeline is not None
        if not standby:
            # Checked here as well as in the store: a directory that fails is never used again.
            verify_runtime_dir(self.runtime_dir, self.store_uid)
        lifeline_r = self._lifeline[0]
        command = [
            sys.executable,
            "-m",
            _STORE_MODULE,
            "--lifeline-fd",
            str(lifeline_r),
            "--parent-pid",
            str(os.getpid()),
            "--runtime-dir",
            self.runtime_dir,
        ]
        if self.user is not None:
            # The store drops to this user itself, after it imported what it runs on.
            groups = ",".join(str(g) for g in self.user.groups)
            command += ["--uid", str(self.user.uid), "--gid", str(self.user.gid)]
            command += ["--groups", groups]
        with _fork_lock:
            log_r, log_w = os.pipe()
            ours, theirs = channel_pair()
            command += ["--control-fd", str(theirs.fileno())]
            try:
                # Its own session: a Ctrl-C meant for gunicorn or CMD must not reach the store;
                # the supervising process stops it once they are gone.
                process = subprocess.Popen(
                    [*command, *self.serve_args],
                    stdin=subprocess.DEVNULL,
                    stdout=log_w,
                    stderr=log_w,
                    pass_fds=[lifeline_r, theirs.fileno()],
                    start_new_session=True,
                    env=self.store_env,
                )
            except BaseException:
                os.close(log_r)
                ours.close()
                raise
            finally:
                os.close(log_w)
                theirs.close()
            spawned = _StoreProcess(process, OutputPipe(log_r, self._output), StoreChannel(ours))
        if not standby:
            spawned.promote(revoked_pid, region)
        return spawned

    def _watch_loop(self) -> None:
        # This thread must outlive every store it started: Linux delivers the store's
        # parent-death signal when the *thread* that forked it ends (the store checks its
        # parent pid before acting on it). So nothing may end it early, not even a failing
        # log handler.
        while not self._stopping:
            try:
                self._watch_until_stopped()
            except Exception as exc:
                with contextlib.suppress(Exception):
                    self.log.error("blinkstore: supervisor error (continuing): %r", exc)
                time.sleep(0.1)

    def _watch_until_stopped(self) -> None:
        backoff = 0.0
        while not self._stopping:
            stop_pipe = self._stop_pipe
            if stop_pipe is None:
                return
            processes = [p for p in (self.store, self.standby) if p is not None]
            fds = [stop_pipe[0]]
            for process in processes:
                if process.output.fd is not None:
                    fds.append(process.output.fd)
                channel_fd = process.channel.fileno()
                if channel_fd is not None:
                    fds.append(channel_fd)
                watch_fd = process.watch.fileno()
                if watch_fd is not None and not self._gave_up:
                    fds.append(watch_fd)
            try:
                readable, _, _ = select.select(fds, [], [], 1.0)
            except (OSError, ValueError):
                # A descriptor was closed under us: stop() is running.
                return
            for process in processes:
                if process.output.fd is not None and process.output.fd in readable:
                    process.output.read()
                if process.channel.fileno() in readable:
                    with _fork_lock:  # a received descriptor is open for a moment
                        process.channel.receive()
            if self._stopping or stop_pipe[0] in readable:
                return
            if self._gave_up or self._starting:
                # start() reports a failure itself; do not spin on a readable pidfd.
                time.sleep(0.05)
                continue
            standby = self.standby
            if standby is not None and standby.watch.exited():
                self._retire(standby, "standby store")
                # A standby that dies young would die again: the next restart starts cold.
                lived = time.monotonic() - standby.started_at
                self.standby = self._spawn(standby=True) if lived >= _HEALTHY_AFTER else None
            store = self.store
            if store is not None and store.watch.exited():
                backoff = self._restart(store, backoff, stop_pipe[0])

    def _retire(self, process: _StoreProcess, what: str) -> tuple[int | None, int]:
        """Revoke the region of a process that exited, collect its output and exit status, log
        how it ended; return the status and the pid whose region was revoked (or 0)."""
        # First: its readers stop trusting the region now, not when its heartbeat goes stale.
        revoked_pid = process.revoke()
        with _fork_lock:  # the descriptor moves from the channel to the supervisor
            self._let_go_of_held()
            self._held = process.channel.take_region()
        process.output.drain()
        status = process.watch.reap()
        process.process.returncode = -1 if status is None else status
        process.close()
        if status != EXIT_REFUSED << 8:
            self.log.error(
                "blinkstore: the %s (pid %s) exited with %s",
                what,
                process.pid,
                describe_status(status),
            )
        return status, revoked_pid

    def _restart(self, store: _StoreProcess, backoff: float, stop_fd: int) -> float:
        """Replace the store that exited, by the standby when there is one; return the backoff."""
        lived = time.monotonic() - store.started_at
        status, revoked_pid = self._retire(store, "store")
        self.store = None
        if status == EXIT_REFUSED << 8:
            self._give_up("the store refused its runtime directory (see above)")
            return backoff
        backoff = min(_MAX_BACKOFF, max(0.1, backoff * 2)) if lived < _HEALTHY_AFTER else 0.0
        if backoff:
            self.log.error("blinkstore: the store keeps exiting; restarting it in %.1f s", backoff)
            if self._sleep_unless_stopped(backoff, stop_fd):
                return backoff
        held = self._held
        try:
            verify_runtime_dir(self.runtime_dir, self.store_uid)
            standby, self.standby = self.standby, None
            if standby is not None and standby.promote(revoked_pid, held):
                self.store = standby
                self.log.warning(
                    "blinkstore: restarting the store: standby pid %s takes over", standby.pid
                )
            else:
                if standby is not None:
                    standby.close()
                self.store = self._spawn(standby=False, revoked_pid=revoked_pid, region=held)
                self.log.warning("blinkstore: restarting the store (pid %s)", self.store.pid)
            self.standby = self._spawn(standby=True)
        except RuntimeDirError as exc:
            self._give_up(str(exc))
        except OSError as exc:
            self.log.error("blinkstore: restarting the store failed: %s", exc)
        finally:
            # Offered to one successor only: one that dies adopting it does not get it again.
            with _fork_lock:
                self._let_go_of_held()
        return backoff

    def _let_go_of_held(self) -> None:
        """Close the dead store's region held for its successor (under the fork lock)."""
        held, self._held = self._held, None
        if held is not None:
            held.close()

    def _give_up(self, why: str) -> None:
        self._gave_up = True
        self.log.error(
            "blinkstore: %s; the store is not restarted, clients get cache misses until "
            "gunicorn or blinkstore run is restarted",
            why,
        )
        if self.standby is not None:
            # Closing its trigger lets the standby go; it never binds.
            self.standby.close()
            self.standby = None

    def note_exits(self) -> None:
        """Record how an exited store process ended, before another reaper (gunicorn's) does."""
        for process in (self.store, self.standby):
            if process is not None:
                process.watch.peek()

    @staticmethod
    def _sleep_unless_stopped(seconds: float, stop_fd: int) -> bool:
        """Sleep; return True at once if stop() wrote to the stop pipe meanwhile."""
        try:
            return bool(select.select([stop_fd], [], [], seconds)[0])
        except (OSError, ValueError):
            return True

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the store (it removes its socket), then remove the runtime directory.

        Closing the lifeline is the stop request (the standby leaves on it too); SIGKILL
        follows after ``timeout`` seconds.
        """
        global _current
        self._stopping = True
        if self._stop_pipe is not None:
            with contextlib.suppress(OSError):
                os.write(self._stop_pipe[1], b"x")
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)
        if self._lifeline is not None:
            with contextlib.suppress(OSError):
                os.close(self._lifeline[1])
            self._lifeline = (self._lifeline[0], -1)
        for process in (self.store, self.standby):
            if process is None:
                continue
            if not self._wait_exit(process.watch, timeout):
                self._kill(process.watch)
                self._wait_exit(process.watch, timeout)
            if process.watch.exited():
                # A store stopped cleanly closed its region; one killed here did not.
                process.revoke()
            process.watch.reap()
            if process.process.returncode is None:
                # Reaped above or by the arbiter: keep Popen from waiting for a reused pid.
                process.process.returncode = -1
            process.output.drain()
        self._close_fds()
        if self.runtime_dir:
            remove_runtime_dir(self.runtime_dir)
        if _current is self:
            _current = None

    @staticmethod
    def _wait_exit(watch: ExitWatch, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not watch.exited():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            fd = watch.fileno()
            if fd is None:
                time.sleep(min(remaining, 0.02))
            else:
                with contextlib.suppress(OSError, ValueError):
                    select.select([fd], [], [], remaining)
        return True

    @staticmethod
    def _kill(watch: ExitWatch) -> None:
        fd = watch.fileno()
        with contextlib.suppress(ProcessLookupError, OSError):
            if fd is not None:
                # Through the pidfd: never a process that reused the pid.
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            else:
                os.kill(watch.pid, signal.SIGKILL)

    def close_inherited(self) -> None:
        """Close supervision descriptors copied into a forked child (a worker); idempotent."""
        if os.getpid() == self.owner_pid:
            return
        self._stopping = True
        self._close_fds(in_child=True)

    def _close_fds(self, *, in_child: bool = False) -> None:
        fds: list[int] = []
        for pair in (self._lifeline, self._stop_pipe):
            if pair is not None:
                fds.extend(fd for fd in pair if fd >= 0)
        self._lifeline = self._stop_pipe = None
        self._let_go_of_held()
        for process in (self.store, self.standby):
            if process is not None:
                process.close(in_child=in_child)
        self.store = self.standby = None
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
