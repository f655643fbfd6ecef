"""``blinkstore run [store options] -- CMD ...``: a store for the lifetime of one command.

For servers other than gunicorn (``uvicorn --workers 4``, granian, hypercorn, celery...): start a
store on a private Unix socket, run CMD with ``BLINKSTORE_URL`` pointing at it, restart the store
if it dies, forward signals to CMD, and when CMD exits stop the store, remove the socket and
return CMD's exit status (128 + N when a signal N ended it, as shells report it).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.parse

from blinkstore_gunicorn.cli.serve import (
    add_store_arguments,
    settings_from_args,
    warn_unknown_variables,
)
from blinkstore_gunicorn.config import ConfigError, env_name, without_setting_variables
from blinkstore_gunicorn.gunicorn.keeper import StoreFailedToStart, StoreKeeper, store_command
from blinkstore_gunicorn.gunicorn.runtime import (
    SOCKET_NAME,
    ExitWatch,
    create_runtime_dir,
    remove_runtime_dir,
    set_parent_death_signal,
)

__all__ = ["FORWARDED_SIGNALS", "register", "run_command"]

#: Signals passed on to CMD (gunicorn and uvicorn give most of them a meaning).
FORWARDED_SIGNALS = tuple(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH")
    if hasattr(signal, name)
)


def _log(line: str) -> None:
    print(f"blinkstore run: {line}", file=sys.stderr, flush=True)


def _command_preexec() -> None:
    # This process is single-threaded, so a preexec function is safe here. CMD gets its own
    # process group (a Ctrl-C reaches this process once, and is forwarded once) and is told to
    # stop if this process is killed, so it never outlives its store unnoticed.
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
    # BLINKSTORE_UNIX is replaced by the private socket.
    settings = settings_from_args(args).replace(unix=None)
    serve_args = settings.to_argv()
    # The flags just resolved are the store's only settings: an inherited BLINKSTORE_* variable
    # would otherwise override a flag whose value is the default (and so left out of argv).
    store_env = without_setting_variables(os.environ)
    if settings.password is not None:
        store_env[env_name("password")] = settings.password

    runtime_dir = create_runtime_dir(args.runtime_dir)
    socket_path = os.path.join(runtime_dir, SOCKET_NAME)
    url = f"unix://{socket_path}"
    if settings.password is not None:
        url += "?password=" + urllib.parse.quote(settings.password, safe="")

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    previous_wakeup = signal.set_wakeup_fd(wake_w)
    previous_handlers = {sig: signal.signal(sig, lambda *_: None) for sig in FORWARDED_SIGNALS}
    keeper = StoreKeeper(
        store_command(socket_path, serve_args),
        socket_path,
        log=_log,
        env=store_env,
        password=settings.password,
    )
    try:
        keeper.start()
        problem = _wait_ready(keeper, args.start_timeout, wake_r)
        if problem:
            _log(problem)
            return 1
        child = subprocess.Popen(
            command,
            env={**os.environ, "BLINKSTORE_URL": url},
            preexec_fn=_command_preexec,  # noqa: PLW1509 - this process has no threads
        )
        return _exit_status(_supervise(keeper, child, wake_r))
    except StoreFailedToStart as exc:
        _log(str(exc))
        return 1
    except FileNotFoundError as exc:
        _log(f"cannot run {command[0]!r}: {exc.strerror}")
        return 127
    finally:
        keeper.stop()
        remove_runtime_dir(runtime_dir)
        signal.set_wakeup_fd(previous_wakeup)
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
        os.close(wake_r)
        os.close(wake_w)


def _wait_ready(keeper: StoreKeeper, timeout: float, wake_r: int) -> str:
    """Wait for the store's first PONG; return why it failed, or "" once it is ready."""
    deadline = time.monotonic() + timeout
    while not keeper.ready:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return f"the store did not answer PING on {keeper.socket_path} within {timeout:g} s"
        if keeper.wait(min(remaining, 0.05), [wake_r]):
            # A signal before CMD started: there is nobody to forward it to, so just stop.
            return "interrupted while the store was starting"
    return ""


def _supervise(keeper: StoreKeeper, child: subprocess.Popen[bytes], wake_r: int) -> int:
    watch = ExitWatch(child.pid)
    try:
        while True:
            fds = [wake_r]
            if (fd := watch.fileno()) is not None:
                fds.append(fd)
            # Without a pidfd the watch is polled, so wake up often enough to notice.
            ready = keeper.wait(3600.0 if watch.fileno() is not None else 0.05, fds)
            if wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    for signum in os.read(wake_r, 64):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(child.pid, signum)
            if watch.exited():
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
