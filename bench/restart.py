"""Store restart time under gunicorn: the warm standby vs a cold start, kill -9 to first PONG.

One gunicorn master with the plugin (2 sync workers). Each round SIGKILLs the store and times
how long until its socket answers PING again. In a *warm* round the standby is there and takes
over; in a *cold* round the standby is killed first, so the master starts a fresh interpreter,
which is what a restart costs without it (the peer). Rounds alternate, so both see the same
machine load, and are spaced by more than the plugin's crash-loop window (2 s) so no backoff
applies.

``python -m bench.restart [--rounds N]``
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path

from blinkstore_gunicorn.supervision.runtime import ping
from harness.gunicorn import CONF, Gunicorn, get, gunicorn, wait_until

# Longer than the supervisor's crash-loop window: every kill is a first restart.
_SPACING = 2.5


def _one_restart(server: Gunicorn, path: str, cold: bool) -> float:
    """Kill the store (and, for a cold round, its standby first); return seconds to PONG."""
    wait_until(lambda: len(server.store_processes()) == 2, 30.0)
    time.sleep(_SPACING)
    store = server.store_pid()
    if cold:
        standby = next(p for p in server.store_processes() if p != store)
        os.kill(standby, signal.SIGKILL)
        wait_until(lambda: standby not in server.store_processes(), 10.0)
    os.kill(store, signal.SIGKILL)
    killed = time.perf_counter()
    while not ping(path, 0.2):
        time.sleep(0.001)  # leave the CPU to the store being restarted
    return time.perf_counter() - killed


def main(argv: list[str] | None = None) -> int:
    """Print warm and cold restart times (ms) and their ratio."""
    parser = argparse.ArgumentParser(prog="python -m bench.restart", description=__doc__)
    parser.add_argument("--rounds", type=int, default=10, help="kills of each kind")
    args = parser.parse_args(argv)
    warm: list[float] = []
    cold: list[float] = []
    with (
        tempfile.TemporaryDirectory() as cwd,
        gunicorn([*CONF, "-w", "2", "wsgi_app:app"], Path(cwd)) as server,
    ):
        path = get(server.url + "/env")["url"][len("unix://") :]
        for _ in range(args.rounds):
            warm.append(_one_restart(server, path, cold=False))
            cold.append(_one_restart(server, path, cold=True))
    for name, times in (("warm standby", warm), ("cold start", cold)):
        ms = sorted(t * 1000 for t in times)
        print(f"{name:13} p50 {statistics.median(ms):7.1f} ms   max {ms[-1]:7.1f} ms")
    print(f"cold / warm p50 ratio: {statistics.median(cold) / statistics.median(warm):.0f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
