"""The store keeper a gunicorn master starts: ``python -m blinkstore_gunicorn.gunicorn.child``.

It runs the store as its own child (see :class:`~blinkstore_gunicorn.gunicorn.keeper.StoreKeeper`)
and ends, removing the socket and the runtime directory, when the master is gone: the master
holds the only write end of the *lifeline* pipe, so its death, SIGKILL included, shows here as
end-of-file. Linux's parent-death signal (SIGTERM) is a second line of defence. SIGTERM, SIGINT
and SIGHUP stop it the same way; that is how the master stops it on a clean exit.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from blinkstore_gunicorn.config import env_name
from blinkstore_gunicorn.gunicorn.keeper import StoreFailedToStart, StoreKeeper
from blinkstore_gunicorn.gunicorn.runtime import remove_runtime_dir, set_parent_death_signal

__all__ = ["EXIT_STORE_FAILED", "main"]

#: Exit code when the store exited before it ever became ready.
EXIT_STORE_FAILED = 3


def _log(line: str) -> None:
    # The master reads this stream line by line into gunicorn's error log.
    print(f"blinkstore keeper: {line}", file=sys.stderr, flush=True)


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m blinkstore_gunicorn.gunicorn.child")
    parser.add_argument("--lifeline-fd", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--socket", required=True)
    parser.add_argument("--runtime-dir", required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command and args.command[0] == "--":
        args.command = args.command[1:]
    if not args.command:
        parser.error("missing the store command after --")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Keep the store running until the parent dies or a stop signal arrives."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    set_parent_death_signal(signal.SIGTERM)
    if os.getppid() != args.parent_pid:
        # The master died between fork and prctl: nobody would ever stop us.
        remove_runtime_dir(args.runtime_dir)
        return 0

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # Only the wakeup fd matters; the handler must exist so the signal does not kill us.
        pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)

    # The master passes the store's password (if any) in the environment, never in argv.
    password = os.environ.get(env_name("password"))
    keeper = StoreKeeper(args.command, args.socket, log=_log, password=password)
    try:
        keeper.start()
        while True:
            readable = keeper.wait(3600.0, [args.lifeline_fd, wake_r])
            if args.lifeline_fd in readable:
                with contextlib.suppress(OSError):
                    if os.read(args.lifeline_fd, 1) == b"":
                        _log("gunicorn master is gone; stopping the store")
                break
            if wake_r in readable:
                signums = os.read(wake_r, 64)
                names = ", ".join(signal.Signals(n).name for n in signums)
                _log(f"{names} received; stopping the store")
                break
    except StoreFailedToStart as exc:
        _log(str(exc))
        keeper.stop()
        remove_runtime_dir(args.runtime_dir)
        return EXIT_STORE_FAILED
    keeper.stop()
    remove_runtime_dir(args.runtime_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
