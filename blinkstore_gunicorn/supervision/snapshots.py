"""How long the supervisor waits for a store that loads or writes a snapshot file.

A store with ``--snapshot`` loads the file before its first PONG and writes it after its last
client: both take time that grows with the file (``bench.snapshot``: 1 GiB of 1 KiB values is
loaded in 43-83 s and written in 25-34 s on a loaded 2-core host; small values cost more per
byte: 30 MiB of 100-byte values took 41 s to load into a full store on such a host). The
supervisor's usual bounds (the start timeout, 5 s to stop) are for a store that has nothing to
read or write.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

__all__ = ["LOAD_SECONDS_PER_MIB", "STOP_TIMEOUT", "start_allowance", "stop_timeout"]

#: Extra wait for the first PONG per MiB of the snapshot: what loading the smallest records
#: (~90,000 a MiB) would take on a loaded 2-core host, so that only a store that hangs runs
#: into it (one that exits is seen at once).
LOAD_SECONDS_PER_MIB = 15.0
#: How long a store that writes its snapshot on the way out gets before SIGKILL (a killed
#: one leaves the previous snapshot in place); without a snapshot, 5 s.
STOP_TIMEOUT = 120.0


def _path(serve_args: Sequence[str]) -> str | None:
    """The ``--snapshot`` value of ``blinkstore serve`` flags (None: off)."""
    args = list(serve_args)
    if "--snapshot" not in args[:-1]:
        return None
    return args[args.index("--snapshot") + 1] or None


def start_allowance(serve_args: Sequence[str]) -> float:
    """Seconds to add to the start timeout for loading the snapshot the file holds now."""
    path = _path(serve_args)
    if path is None:
        return 0.0
    try:
        size = os.stat(path).st_size
    except OSError:
        return 0.0
    return size / 2**20 * LOAD_SECONDS_PER_MIB


def stop_timeout(serve_args: Sequence[str]) -> float:
    """Seconds a stopping store gets before SIGKILL."""
    return STOP_TIMEOUT if _path(serve_args) is not None else 5.0
