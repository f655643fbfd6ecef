"""The store process a supervisor runs: ``python -m blinkstore_gunicorn.supervision.child``.

One process, the store itself, bound to the life of the process that supervises it (a gunicorn
master, or ``blinkstore run``):

* it binds only in the runtime directory the supervisor created, after checking again that the
  directory is still that one (owner, mode 0700, not a symlink); a directory that fails the
  check is refused, never recreated;
* it stops, removing its socket and the directory, when the supervisor is gone or asks it to
  stop: the supervisor holds the only write end of the *lifeline* pipe, so its death (SIGKILL
  included) and its stop request both show here as end-of-file;
* SIGTERM, SIGINT and SIGHUP from anyone else are logged and ignored. A stop that signals every
  process at once (systemd's ``KillMode=control-group``) reaches the supervisor too, and it
  stops the store after gunicorn's workers or CMD, which may use the cache until they are done.

The supervisor restarts it when it dies (see :mod:`.supervisor`); there is no restart logic
here. It imports everything it runs on, then waits for the supervisor's GO on its control
channel (``--control-fd``, see :mod:`.handover`) before it checks the directory and binds: a
*warm standby* gets it only when it takes over, so that a restart does not wait for an
interpreter to start. GO names the predecessor whose region the supervisor revoked (and brings
that region, whose entries the store adopts while it serves), and the store hands its own
region to the supervisor on the same channel before it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from blinkstore_gunicorn.config import ConfigError, StoreSettings
from blinkstore_gunicorn.config_args import add_store_arguments, settings_from_args
from blinkstore_gunicorn.shm.adoption import Inheritance
from blinkstore_gunicorn.supervision.handover import hand_over_region, wait_for_go
from blinkstore_gunicorn.supervision.runtime import (
    EXIT_REFUSED,
    EXIT_STORE_FAILED,
    SOCKET_NAME,
    RuntimeDirError,
    remove_runtime_dir,
    set_parent_death_signal,
    verify_runtime_dir,
)

__all__ = ["IGNORED_SIGNALS", "main"]

#: Stop signals the store ignores: only its supervisor decides when it stops.
IGNORED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# Linux sends this when the thread that forked us ends; only a changed parent pid counts.
_PARENT_DEATH_SIGNAL = signal.SIGUSR1


def _log(line: str) -> None:
    # The supervisor reads this stream line by line into its log; once the supervisor is gone
    # nobody reads it, and a broken pipe must not stop the store from stopping.
    with contextlib.suppress(OSError):
        print(f"blinkstore store: {line}", file=sys.stderr, flush=True)


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m blinkstore_gunicorn.supervision.child")
    parser.add_argument("--lifeline-fd", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--runtime-dir", required=True)
    parser.add_argument("--uid", type=int, help="run as this user (a root master's workers')")
    parser.add_argument("--gid", type=int)
    parser.add_argument("--groups", default="", help="supplementary groups, comma-separated")
    parser.add_argument(
        "--control-fd", type=int, required=True, help="the supervisor's channel: bind on its GO"
    )
    add_store_arguments(parser)
    return parser.parse_args(argv)


class _SupervisorWatch:
    """Stop the server when the supervisor closes the lifeline or is gone."""

    def __init__(self, lifeline_fd: int, parent_pid: int) -> None:
        self.lifeline_fd = lifeline_fd
        self.parent_pid = parent_pid
        #: Set once the supervisor stopped the store or died: the runtime directory goes too.
        self.released = False

    def install(self, loop: asyncio.AbstractEventLoop, stop: Callable[[], None]) -> None:
        """Watch the lifeline and the parent-death signal; ignore outside stop signals."""

        def lifeline_readable() -> None:
            # Nothing is ever written: readable means end-of-file. The supervisor closed its
            # end to stop the store, or died (its parent pid may not have changed yet).
            loop.remove_reader(self.lifeline_fd)
            self.released = True
            stop()
            _log("the supervising process stopped the store or is gone; stopping")

        def parent_death_signal() -> None:
            if os.getppid() != self.parent_pid:
                self.released = True
                stop()
                _log("the supervising process is gone; stopping")

        def ignored(signum: int) -> None:
            _log(
                f"{signal.Signals(signum).name} ignored: the store stops with the process that "
                f"supervises it (pid {self.parent_pid}), after its workers"
            )

        loop.add_reader(self.lifeline_fd, lifeline_readable)
        loop.add_signal_handler(_PARENT_DEATH_SIGNAL, parent_death_signal)
        for signum in IGNORED_SIGNALS:
            loop.add_signal_handler(signum, ignored, signum)


async def _serve(
    settings: StoreSettings,
    watch: _SupervisorWatch,
    control: socket.socket,
    go: tuple[int, Inheritance | None],
) -> None:
    # Imported here: the argument check above should not pay for the server's imports.
    from blinkstore_gunicorn.server import StoreServer
    from blinkstore_gunicorn.server.store import listed

    revoked_pid, inheritance = go
    server = StoreServer(
        settings,
        revoked_pid=revoked_pid,
        hand_over=lambda fd: hand_over_region(control, fd),
        inheritance=inheritance,
    )
    await server.start()
    watch.install(asyncio.get_running_loop(), server.request_stop)
    # The supervisor may have died while the server started; its pipe end is closed already, so
    # the reader fires at once. The parent pid covers a death before prctl() took effect.
    if os.getppid() != watch.parent_pid:
        watch.released = True
        server.request_stop()
    try:
        with listed(server):
            await server.wait_stopped()
    finally:
        await server.stop()


def _load_server() -> Callable[[Coroutine[Any, Any, None]], None]:
    """Import everything the store runs on; return the event loop runner to use.

    Done before dropping privileges: the interpreter's own files may be out of the workers'
    user's reach (a Python under /root), as they are for the workers themselves.
    """
    import blinkstore_gunicorn.engine
    import blinkstore_gunicorn.server  # noqa: F401

    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


def _drop_privileges(uid: int, gid: int, groups: str) -> None:
    os.setgroups([int(g) for g in groups.split(",") if g])
    os.setgid(gid)
    os.setuid(uid)


def _run(
    settings: StoreSettings,
    watch: _SupervisorWatch,
    runner: Callable[[Coroutine[Any, Any, None]], None],
    control: socket.socket,
    go: tuple[int, Inheritance | None],
) -> None:
    from blinkstore_gunicorn.engine import tune_allocator
    from blinkstore_gunicorn.server.store import configure_logging

    configure_logging(settings.log_level_number)
    tune_allocator()
    runner(_serve(settings, watch, control, go))


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until the supervisor closes the lifeline or dies; return the exit status."""
    # Until the event loop handles them, these signals must neither stop nor kill the store.
    for signum in (*IGNORED_SIGNALS, _PARENT_DEATH_SIGNAL):
        signal.signal(signum, signal.SIG_IGN)
    args = _parse(sys.argv[1:] if argv is None else argv)
    runner = _load_server()
    if args.uid is not None and args.gid is not None:
        _drop_privileges(args.uid, args.gid, args.groups)
    # After the user change, which clears it.
    set_parent_death_signal(_PARENT_DEATH_SIGNAL)
    if os.getppid() != args.parent_pid:
        # The supervisor died before we started: nobody would ever stop us.
        remove_runtime_dir(args.runtime_dir)
        return 0
    control = socket.socket(fileno=args.control_fd)
    go = wait_for_go(control, args.lifeline_fd)
    if go is None:
        return 0
    try:
        verify_runtime_dir(args.runtime_dir, os.geteuid())
    except RuntimeDirError as exc:
        _log(f"refusing to start: {exc}")
        return EXIT_REFUSED
    watch = _SupervisorWatch(args.lifeline_fd, args.parent_pid)
    try:
        settings = settings_from_args(args).replace(
            unix=os.path.join(args.runtime_dir, SOCKET_NAME)
        )
        _run(settings, watch, runner, control, go)
    except ConfigError as exc:
        _log(f"cannot start: {exc}")
        return EXIT_STORE_FAILED
    finally:
        if watch.released:
            remove_runtime_dir(args.runtime_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
