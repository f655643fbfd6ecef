"""Make a worker leave when its master dies, whatever its worker class.

gunicorn's own workers notice a changed parent pid only between requests, and some worker
classes (``UvicornWorker``) not at all; a master killed with SIGKILL could then leave workers
serving, holding the listening port, for ever. A thread started in ``post_fork`` waits on the
master's pidfd (or polls the parent pid where there is none), then asks the worker to stop the
way the master would (SIGTERM), and ends the process if it is still there after the graceful
timeout.

Not ``PR_SET_PDEATHSIG``: Linux sends it when the *thread* that forked the worker ends, which
is not the death of the master. The functions below are bound at import, in the master, so
that a worker class that monkey-patches ``select`` and ``time`` (gevent) cannot turn this
thread's waits into cooperative ones it never runs.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import time
from collections.abc import Callable

__all__ = ["leave_with_master"]

_select = select.select
_sleep = time.sleep
_monotonic = time.monotonic
# How often the parent pid is polled where pidfds are missing.
_POLL_INTERVAL = 1.0


def _wait_for_death(master_pid: int) -> None:
    fd = None
    with contextlib.suppress(OSError, AttributeError):
        fd = os.pidfd_open(master_pid)
    try:
        while os.getppid() == master_pid:
            if fd is None:
                _sleep(_POLL_INTERVAL)
            elif _select([fd], [], [], None)[0]:
                return
    finally:
        if fd is not None:
            os.close(fd)


def _watch(master_pid: int, grace: float, log: Callable[[str], None]) -> None:
    _wait_for_death(master_pid)
    with contextlib.suppress(Exception):
        log(f"blinkstore: the gunicorn master (pid {master_pid}) is gone; worker stopping")
    os.kill(os.getpid(), signal.SIGTERM)
    deadline = _monotonic() + grace
    while _monotonic() < deadline:
        _sleep(min(0.1, max(0.0, deadline - _monotonic())))
    # Still here after the graceful timeout: nobody else will ever stop this process.
    os._exit(1)


def leave_with_master(master_pid: int, grace: float, log: Callable[[str], None]) -> None:
    """In a worker: stop it (SIGTERM, then exit after ``grace`` seconds) once the master dies."""
    thread = threading.Thread(
        target=_watch,
        args=(master_pid, grace, log),
        name="blinkstore-master-watch",
        daemon=True,
    )
    thread.start()
