"""Keep one store process running on a Unix socket: start it, restart it when it dies, stop it.

The keeper is the store's parent and only reaper, so it always learns how the store died and
restarts it at once. ``blinkstore run`` drives it, single-threaded, with
:meth:`StoreKeeper.wait`. (Under gunicorn the master supervises the store itself: see
:mod:`.supervisor`.)
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence

from blinkstore_gunicorn.gunicorn.runtime import (
    ExitWatch,
    describe_status,
    ping,
    set_parent_death_signal,
    socket_is_live,
)

__all__ = ["StoreFailedToStart", "StoreKeeper", "store_command"]

# Probe the socket this often while a freshly started store is not ready yet.
_READY_PROBE_INTERVAL = 0.02
# A store that dies sooner than this after starting counts as crash-looping; restarts then back
# off (doubling up to _MAX_BACKOFF) so a broken store does not spin a CPU.
_HEALTHY_AFTER = 2.0
_MAX_BACKOFF = 5.0
# `blinkstore serve` exits with 2 when a setting is wrong (see blinkstore_gunicorn.cli).
_USAGE_ERROR = 2


class StoreFailedToStart(RuntimeError):
    """The store exited before it ever answered PING (bad options, unusable socket path...)."""


def store_command(socket_path: str, serve_args: Sequence[str] = ()) -> list[str]:
    """The command line that runs a store on ``socket_path`` with this interpreter."""
    return [
        sys.executable,
        "-m",
        "blinkstore_gunicorn",
        "serve",
        "--unix",
        socket_path,
        *serve_args,
    ]


def _store_preexec() -> None:
    # Runs in the forked store before exec; the keeper is single-threaded, so this is safe.
    # SIGKILL rather than SIGTERM: a store outliving its keeper for even a moment could unlink
    # a socket that a fresh store already bound.
    set_parent_death_signal(signal.SIGKILL)
    os.umask(0o077)
    # Its own process group: a Ctrl-C meant for the command must not stop the store first.
    os.setpgrp()


class StoreKeeper:
    """Run ``command`` (a store serving ``socket_path``), restarting it whenever it exits.

    ``log`` receives one line per lifecycle event. ``stdout``/``stderr`` (file descriptors or
    ``None`` to inherit) receive the store's own output.
    """

    def __init__(
        self,
        command: Sequence[str],
        socket_path: str,
        *,
        log: Callable[[str], None],
        env: Mapping[str, str] | None = None,
        stderr: int | None = None,
        password: str | None = None,
    ) -> None:
        self.command = list(command)
        self.socket_path = socket_path
        self.log = log
        self.env = dict(env) if env is not None else None
        self.stderr = stderr
        self.password = password
        self.process: subprocess.Popen[bytes] | None = None
        self.ready = False
        self.ever_ready = False
        self.restarts = 0
        self._watch: ExitWatch | None = None
        self._started_at = 0.0
        self._backoff = 0.0
        self._restart_at: float | None = None
        self._stopping = False

    @property
    def pid(self) -> int | None:
        """The running store's pid, if any."""
        return self.process.pid if self.process is not None else None

    def start(self) -> None:
        """Start the store (returns at once; :meth:`wait` notices readiness)."""
        self._clear_stale_socket()
        self.process = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stderr=self.stderr,
            env=self.env,
            preexec_fn=_store_preexec,  # noqa: PLW1509 - keepers are single-threaded
        )
        self._watch = ExitWatch(self.process.pid)
        self._started_at = time.monotonic()
        self.ready = False
        self._restart_at = None

    def wait(self, timeout: float, fds: Sequence[int] = ()) -> list[int]:
        """Supervise for up to ``timeout`` seconds; return the ``fds`` that became readable.

        Returns early when one of ``fds`` is readable. In between it notices the store's
        readiness, reaps and restarts it when it exits (raising :class:`StoreFailedToStart` if
        it exits before it was ever ready), and probes a not-yet-ready store.
        """
        deadline = time.monotonic() + timeout
        while True:
            watched = list(fds)
            if self._watch is not None and (fd := self._watch.fileno()) is not None:
                watched.append(fd)
            now = time.monotonic()
            wake = deadline
            if self._restart_at is not None:
                wake = min(wake, self._restart_at)
            if not self.ready or (self._watch is not None and self._watch.fileno() is None):
                wake = min(wake, now + _READY_PROBE_INTERVAL)
            try:
                readable, _, _ = select.select(watched, [], [], max(0.0, wake - now))
            except InterruptedError:
                readable = []
            self._check_store()
            ready_fds = [fd for fd in readable if fd in fds]
            if ready_fds or time.monotonic() >= deadline:
                return ready_fds

    def _check_store(self) -> None:
        if self._stopping:
            return
        if self._restart_at is not None:
            if time.monotonic() >= self._restart_at:
                self.start()
            return
        if self._watch is None or self.process is None:
            return
        if self._watch.exited():
            self._on_exit()
        elif not self.ready and ping(self.socket_path, 0.2, self.password):
            self.ready = True
            self.ever_ready = True
            what = "restarted" if self.restarts else "started"
            self.log(f"store {what} (pid {self.process.pid}) on {self.socket_path}")

    def _on_exit(self) -> None:
        assert self.process is not None and self._watch is not None
        status = self._watch.reap()
        self._watch.close()
        pid = self.process.pid
        self.process.returncode = -1 if status is None else status
        self._watch = None
        self.ready = False
        lived = time.monotonic() - self._started_at
        if not self.ever_ready:
            raise StoreFailedToStart(
                f"the store (pid {pid}) exited with {describe_status(status)} before it "
                f"answered PING on {self.socket_path}"
            )
        if self.restarts == 0 and lived < _HEALTHY_AFTER and status == _USAGE_ERROR << 8:
            # It answered on the socket, then rejected its settings (a busy TCP port): a
            # restart would fail the same way.
            raise StoreFailedToStart(
                f"the store (pid {pid}) stopped at start-up with {describe_status(status)}"
            )
        if lived < _HEALTHY_AFTER:
            self._backoff = min(_MAX_BACKOFF, max(0.1, self._backoff * 2))
        else:
            self._backoff = 0.0
        self.restarts += 1
        delay = f" in {self._backoff:.1f} s" if self._backoff else ""
        self.log(f"store (pid {pid}) exited with {describe_status(status)}; restarting{delay}")
        self._restart_at = time.monotonic() + self._backoff

    def _clear_stale_socket(self) -> None:
        # Never two stores on one socket: wait briefly for a live one to go, and only then
        # remove a file that nobody answers on any more.
        deadline = time.monotonic() + 2.0
        while os.path.exists(self.socket_path) and socket_is_live(self.socket_path):
            if time.monotonic() >= deadline:
                raise StoreFailedToStart(
                    f"another process is already serving {self.socket_path}; not starting a "
                    "second store on it"
                )
            time.sleep(0.05)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)

    def stop(self, timeout: float = 1.0) -> None:
        """Stop the store: SIGTERM, then SIGKILL after ``timeout`` seconds; remove its socket."""
        self._stopping = True
        process, self.process = self.process, None
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait()
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
