"""The time limit of a running script: BUSY for everyone else, and SCRIPT KILL.

A script runs to completion inside the handler of ``EVAL`` as long as it is quick, so
nothing else runs in the store meanwhile (the store is one thread). Scripts run in a greenlet
of their own (one :class:`Worker`, kept from script to script: making a greenlet costs
more than a short script), and the sandbox's instruction hook (:func:`Run.hook`, every
``HOOK_EVERY`` instructions) looks at the clock. Once the script has run longer than the
busy threshold (Redis's ``busy-reply-threshold``, 5 s), the hook switches back to the
handler, which answers ``DEFERRED`` and returns to the event loop: the script is now
*busy*. From then on the script goes on in slices, one per loop iteration
(``loop.call_soon``), and between two slices the loop reads every socket and the dispatcher
answers ``-BUSY`` to any command but ``SCRIPT KILL``, ``AUTH``, ``HELLO`` and ``QUIT``.
The script cannot be seen half done: a slice ends only at a hook, which never fires inside a
command the script called. ``SCRIPT KILL`` marks a script that has not written; its next hook
raises the error Redis raises.

Without a running event loop (a script run from a unit test, or inside ``EXEC`` whose reply
must be whole) the script cannot be suspended. Redis would then hang for good on an endless
loop; here such a script is stopped with an error once it passes the threshold, so no client
can hang the store (what it wrote before stays written).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Final, TypeAlias

from greenlet import getcurrent, greenlet

from blinkstore_gunicorn.config import DEFAULT_BUSY_REPLY_THRESHOLD

__all__ = ["CANNOT_PAUSE", "DEFAULT_BUSY_THRESHOLD", "KILLED", "Job", "Run", "Worker"]

#: Redis's default ``busy-reply-threshold`` (``lua-time-limit``), in seconds (the store's
#: ``--busy-reply-threshold`` and ``CONFIG SET`` change it).
DEFAULT_BUSY_THRESHOLD: Final = DEFAULT_BUSY_REPLY_THRESHOLD / 1000

#: The error of a script stopped by SCRIPT KILL (Redis's words).
KILLED: Final = "ERR Script killed by user with SCRIPT KILL..."
#: The error of a script that passed the threshold where it cannot pause (inside EXEC).
CANNOT_PAUSE: Final = (
    "ERR Script stopped: it ran past the busy threshold inside MULTI/EXEC, where it cannot"
    " pause for other clients"
)


class _Suspended:
    """Returned by the script's greenlet to its handler when the script goes busy."""


_SUSPENDED: Final = _Suspended()


#: What a :class:`Worker` runs: a function and its arguments (a tuple, not a closure: making
#: one costs a Python call more per script).
Job: TypeAlias = "tuple[Callable[..., bytes], tuple[Any, ...]]"


class Worker:
    """The greenlet scripts run in, made once: it runs one job after the other."""

    __slots__ = ("_greenlet",)

    def __init__(self) -> None:
        self._greenlet = greenlet(self._serve)

    @staticmethod
    def _serve(job: Job) -> None:
        while True:
            parent = getcurrent().parent
            assert parent is not None
            body, args = job
            job = parent.switch(body(*args))

    def current(self) -> greenlet:
        """The greenlet (a new one if a body failed with an exception and ended it)."""
        if self._greenlet.dead:
            self._greenlet = greenlet(self._serve)
        return self._greenlet


class Run:
    """One script execution: its clock, and whether it wrote, went busy or was killed."""

    __slots__ = (
        "_greenlet",
        "_job",
        "_loop",
        "_may_suspend",
        "busy",
        "killed",
        "started",
        "threshold",
        "wrote",
    )

    def __init__(self, worker: Worker, job: Job, threshold: float, may_suspend: bool) -> None:
        self._greenlet = worker.current()
        self._job: Job | None = job
        # The event loop is looked up only when the script goes busy: asyncio's lookup
        # costs a getpid() system call, once per script otherwise.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._may_suspend = may_suspend
        self.threshold = threshold
        self.started = time.monotonic()
        #: Whether the script called a write command (then SCRIPT KILL refuses).
        self.wrote = False
        self.killed = False
        #: Whether the script has gone past the threshold and runs in slices.
        self.busy = False

    def step(self) -> bytes | None:
        """Run the script (the first call) or its next slice (after it went busy): its reply,
        or None while it is busy (then :meth:`resume_later`)."""
        # The first switch hands the worker the job; later ones resume it inside its hook.
        job, self._job = self._job, None
        result = self._greenlet.switch(job) if job is not None else self._greenlet.switch()
        if result is _SUSPENDED:
            return None
        assert isinstance(result, bytes)
        return result

    def resume_later(self, done: Callable[[bytes], None]) -> None:
        """Go on with the busy script at the next loop iteration; ``done(reply)`` at its end."""
        loop = self._loop
        assert loop is not None

        def resume() -> None:
            reply = self.step()
            if reply is None:
                loop.call_soon(resume)
            else:
                done(reply)

        loop.call_soon(resume)

    def hook(self) -> str | None:
        """Called by the sandbox every ``HOOK_EVERY`` instructions: the error that stops the
        script, or None to go on."""
        if self.killed:
            return KILLED
        if not self.busy and time.monotonic() - self.started < self.threshold:
            return None
        if not self._may_suspend or getcurrent() is not self._greenlet:
            return CANNOT_PAUSE
        if self._loop is None:
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:
                return CANNOT_PAUSE
        self.busy = True
        parent = self._greenlet.parent
        assert parent is not None
        parent.switch(_SUSPENDED)
        return KILLED if self.killed else None
