"""``blinkstore run [store options] -- CMD ...``: a store for the lifetime of one command.

For servers other than gunicorn (``uvicorn --workers 4``, granian, hypercorn, celery...): start a
store on a private Unix socket, run CMD with ``BLINKSTORE_URL`` pointing at it, forward signals
to CMD, and when CMD exits stop the store, remove the socket and return CMD's exit status
(128 + N when a signal N ended it, as shells report it). The store is supervised exactly as
under gunicorn (:class:`~blinkstore_gunicorn.supervision.supervisor.StoreSupervisor`): restarted
at once by a warm standby when it dies, and stopped by its lifeline when this process is killed.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import select
import signal
import subprocess
import sys

from blinkstore_gunicorn.cli.serve import warn_unknown_variables
from blinkstore_gunicorn.config import ConfigError, env_name
from blinkstore_gunicorn.config_args import add_store_arguments, settings_from_args
from blinkstore_gunicorn.supervision.runtime import ExitWatch, set_parent_death_signal
from blinkstore_gunicorn.supervision.supervisor import StoreStartError, StoreSupervisor

__all__ = ["FORWARDED_SIGNALS", "register", "run_command"]

#: Signals passed on to CMD (gunicorn and uvicorn give most of them a meaning).
FORWARDED_SIGNALS = tuple(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH")
    if hasattr(signal, name)
)


def _log(line: str) -> None:
    print(f"blinkstore run: {line}", file=sys.stderr, flush=True)


def _supervisor_log() -> logging.Logger:
    """The supervisor's log: its events and the store's own lines, on stderr as they come."""
    log = logging.getLogger("blinkstore_gunicorn.cli.run")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return log


def _command_preexec() -> None:
    # CMD gets its own process group (a Ctrl-C reaches this process once, and is forwarded
    # once) and is told to stop if this process is killed, so it never outlives its store
    # unnoticed. Only system calls run here (no import, no logging), so a lock the
    # supervisor's thread held at the fork cannot block this child.
    os.setpgrp()
    set_parent_death_signal(signal.SIGTERM)


def _exit_status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def run_command(args: argparse.Namespace) -> int:
    """Handler of ``blinkstore run``."""
    command: list[str] = list(args.cmd)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise ConfigError(
            "command", "nothing to run: give it after --, e.g. blinkstore run -- uvicorn app:app"
        )
    if args.start_timeout <= 0:
        raise ConfigError("start_timeout", "must be a positive number of seconds")
    warn_unknown_variables("run")
    # Validate every store option here, so a typo fails before anything starts; env's
    # BLINKSTORE_UNIX is replaced by the private socket. The store gets these resolved
    # settings as flags and inherits no BLINKSTORE_* setting, so a flag always wins.
    settings = settings_from_args(args).replace(unix=None)
    supervisor = StoreSupervisor(
        _supervisor_log(),
        settings.to_argv(),
        start_timeout=args.start_timeout,
        runtime_parent=args.runtime_dir,
        password=settings.password,
        upstream=settings.upstream,
    )

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    previous_wakeup = signal.set_wakeup_fd(wake_w)
    previous_handlers = {sig: signal.signal(sig, lambda *_: None) for sig in FORWARDED_SIGNALS}
    try:
        url = supervisor.start()
        if _received_signals(wake_r):
            # A signal before CMD started: there is nobody to forward it to, so just stop.
            _log("interrupted while the store was starting")
            return 1
        child = subprocess.Popen(
            command,
            env={**os.environ, "BLINKSTORE_URL": url},
            preexec_fn=_command_preexec,  # noqa: PLW1509 - see _command_preexec
        )
        return _exit_status(_wait_forwarding_signals(child, wake_r))
    except StoreStartError as exc:
        print(exc, file=sys.stderr, flush=True)
        return 1
    except FileNotFoundError as exc:
        _log(f"cannot run {command[0]!r}: {exc.strerror}")
        return 127
    finally:
        supervisor.stop()
        signal.set_wakeup_fd(previous_wakeup)
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
        os.close(wake_r)
        os.close(wake_w)


def _received_signals(wake_r: int) -> bytes:
    """The signal numbers that arrived since the last call (the wakeup pipe's bytes)."""
    received = b""
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(wake_r, 64):
            received += chunk
    return received


def _wait_forwarding_signals(child: subprocess.Popen[bytes], wake_r: int) -> int:
    """Pass the signals this process receives on to CMD until it exits; return its status."""
    watch = ExitWatch(child.pid)
    try:
        while not watch.exited():
            fds = [wake_r]
            if (fd := watch.fileno()) is not None:
                fds.append(fd)
            # Without a pidfd the watch is polled, so wake up often enough to notice.
            with contextlib.suppress(InterruptedError):
                select.select(fds, [], [], None if watch.fileno() is not None else 0.05)
            for signum in _received_signals(wake_r):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signum)
        return child.wait()
    finally:
        watch.close()


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``run`` to the ``blinkstore`` command."""
    parser = subparsers.add_parser(
        "run",
        help="run a command with a private store (BLINKSTORE_URL set)",
        description="Start a store on a private Unix socket, run CMD with BLINKSTORE_URL set, "
        "forward signals to it, stop the store when CMD exits and exit with CMD's status. "
        "Example: blinkstore run --memory-limit 256MB -- uvicorn app:app --workers 4",
    )
    # The store's socket is private to the command: no --unix.
    add_store_arguments(parser, exclude=("unix",))
    parser.add_argument(
        "--start-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for the store to answer PING (default 10)",
    )
    parser.add_argument(
        "--runtime-dir",
        default=os.environ.get(env_name("runtime_dir")) or None,
        metavar="DIR",
        help="where to create the private socket directory (default $XDG_RUNTIME_DIR or the "
        f"temporary directory) [{env_name('runtime_dir')}]",
    )
    parser.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ...")
    parser.set_defaults(handler=run_command)
