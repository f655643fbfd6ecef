"""A periodic callback that leaves the event loop's poll without a timeout.

An event loop with a timer pending sleeps in ``epoll_wait`` with a timeout, and the kernel arms
and cancels a high-resolution timer around every such sleep. The store sleeps once per request
of a request/response client, and on a virtual machine that timer costs about as much as all
of the store's Python work for a GET (measured with ``bench/store.py``: ~0.8 us of a ~28 us
round trip). So on Linux the store's housekeeping tick comes from a kernel ``timerfd`` that the
loop watches like a socket: the timer is armed once per period, not once per sleep, and with no
asyncio timer pending the loop sleeps without a timeout. Elsewhere it falls back to
``loop.call_later``.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import sys
import time
from collections.abc import Callable

__all__ = ["Ticker"]

_TFD_FLAGS = getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _open_timerfd(interval: float) -> int | None:
    """A non-blocking timerfd firing every ``interval`` seconds, or None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        create, settime = libc.timerfd_create, libc.timerfd_settime
    except (OSError, AttributeError):
        return None
    create.argtypes = [ctypes.c_int, ctypes.c_int]
    create.restype = ctypes.c_int
    settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    settime.restype = ctypes.c_int
    fd: int = create(time.CLOCK_MONOTONIC, _TFD_FLAGS)
    if fd < 0:
        return None
    seconds = int(interval)
    period = _Timespec(seconds, int((interval - seconds) * 1e9))
    if settime(fd, 0, ctypes.byref(_Itimerspec(period, period)), None) != 0:
        os.close(fd)
        return None
    return fd


class Ticker:
    """Calls ``callback()`` every ``interval`` seconds on ``loop`` until :meth:`close`.

    ``kernel_timer=False`` forces the portable ``call_later`` chain (used where timerfd is
    missing). An exception from ``callback`` propagates to the loop's exception handler and
    does not stop the ticking.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        interval: float,
        callback: Callable[[], object],
        *,
        kernel_timer: bool = True,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self._loop = loop
        self._interval = interval
        self._callback = callback
        self._closed = False
        self._handle: asyncio.TimerHandle | None = None
        self._fd = _open_timerfd(interval) if kernel_timer else None
        if self._fd is not None:
            loop.add_reader(self._fd, self._on_timerfd)
        else:
            self._schedule()

    @property
    def uses_kernel_timer(self) -> bool:
        """Whether the ticks come from a timerfd (the loop then has no timer pending)."""
        return self._fd is not None

    def close(self) -> None:
        """Stop ticking (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _on_timerfd(self) -> None:
        assert self._fd is not None
        try:
            os.read(self._fd, 8)  # the expiration count; reading re-arms readiness
        except BlockingIOError:
            return
        self._callback()

    def _schedule(self) -> None:
        self._handle = self._loop.call_later(self._interval, self._on_timer)

    def _on_timer(self) -> None:
        if self._closed:
            return
        # Rescheduled first, so a failing callback does not end the ticking.
        self._schedule()
        self._callback()
