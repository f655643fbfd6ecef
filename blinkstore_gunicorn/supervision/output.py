"""The store's output, copied line by line into the supervisor's log.

A store process writes its log to a pipe the supervisor reads (:class:`OutputPipe`); each line
goes to the supervisor's logger at the level the line names, and the last lines are kept to
explain a failed start (:class:`StoreOutput`).
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import select
from typing import Protocol

__all__ = ["Logger", "OutputPipe", "StoreOutput"]

# Lines of store output kept to explain a failed start.
_TAIL_LINES = 20
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[.,]\d+)?(?: ?[+-]\d\d:?\d\d|Z)? ")


class Logger(Protocol):
    """What the supervisor logs to: gunicorn's ``arbiter.log``, or a :class:`logging.Logger`."""

    def debug(self, msg: str, *args: object) -> None:
        """Log at DEBUG."""

    def info(self, msg: str, *args: object) -> None:
        """Log at INFO."""

    def warning(self, msg: str, *args: object) -> None:
        """Log at WARNING."""

    def error(self, msg: str, *args: object) -> None:
        """Log at ERROR."""


class StoreOutput:
    """Store output lines into ``log``, at the level each line names; keeps the last lines."""

    def __init__(self, log: Logger) -> None:
        self.log = log
        self.tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)

    def emit(self, line: str) -> None:
        """Log one line of store output."""
        # The supervisor's log adds its own timestamp; the store's would only repeat it.
        line = _TIMESTAMP.sub("", line, count=1)
        if not line:
            return
        self.tail.append(line)
        head = line[:60].upper()
        if "CRITICAL" in head or "ERROR" in head or line.startswith("Traceback"):
            self.log.error("[blinkstore] %s", line)
        elif "WARN" in head or "refusing" in line:
            self.log.warning("[blinkstore] %s", line)
        else:
            self.log.info("[blinkstore] %s", line)


class OutputPipe:
    """The read end of one store process's stdout/stderr pipe."""

    def __init__(self, fd: int, sink: StoreOutput) -> None:
        self.fd: int | None = fd
        self.sink = sink
        self._buffer = b""

    def read(self) -> None:
        """Read what is there (call when the pipe is readable) and emit the complete lines."""
        fd = self.fd
        if fd is None:
            return
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""
        if not data:
            # Every writer is gone; the exit watch will notice the process's death.
            self.close()
            return
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for raw in lines:
            self.sink.emit(raw.decode("utf-8", "replace").rstrip())

    def drain(self) -> None:
        """Emit everything still in the pipe, the last unfinished line included."""
        while self.fd is not None and select.select([self.fd], [], [], 0.05)[0]:
            self.read()
        if self._buffer:
            self.sink.emit(self._buffer.decode("utf-8", "replace").rstrip())
            self._buffer = b""

    def close(self) -> None:
        """Close the read end; idempotent."""
        fd, self.fd = self.fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
