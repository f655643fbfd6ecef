"""Chaos under load: an app under gunicorn keeps serving while its processes are killed.

The e2e WSGI app runs under gunicorn with the plugin (2 workers). Reader threads GET a cached
key (``/get``) as fast as they can for ``--seconds`` while the store is SIGKILLed every 5 s,
a worker every 7 s, and the master gets SIGHUP (reload) every 11 s. Reported: responses by
status (a read must never be a 5xx: a store outage is a cache miss), connections refused or
reset (a worker killed mid-request drops them; that is gunicorn's business, not the cache's),
how long each store restart took until the store answered PING again (p50/p99), and processes
left alive once the master is stopped (target: none).

``python -m bench.chaos [--seconds 60] [--worker-class sync] [--readers 4]``

``wrk`` is not assumed to be installed: the readers are httpx clients with keep-alive.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import httpx

from bench.abuse.common import percentile
from harness.gunicorn import (
    Gunicorn,
    alive,
    listening_unix_sockets,
    wait_until,
)

#: (period in seconds, action) of the chaos schedule.
SCHEDULE = ((5.0, "kill store"), (7.0, "kill worker"), (11.0, "HUP master"))
WORKERS = 2


def _pings(path: str) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            sock.connect(path)
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(16) == b"+PONG\r\n"
    except OSError:
        return False


def _reader(base: str, stop: threading.Event, counts: Counter[str]) -> None:
    with httpx.Client(base_url=base, timeout=5) as client:
        while not stop.is_set():
            try:
                status = client.get("/get?key=chaos").status_code
                counts[f"{status // 100}xx"] += 1
            except httpx.HTTPError:
                counts["connection errors"] += 1


class Chaos:
    """Runs the schedule against one gunicorn and records the store restarts."""

    def __init__(self, server: Gunicorn, socket_path: str) -> None:
        self.server = server
        self.socket_path = socket_path
        self.actions: Counter[str] = Counter()
        self.restarts: list[float] = []

    def run(self, seconds: float) -> None:
        started = time.monotonic()
        due = {action: started + period for period, action in SCHEDULE}
        periods = {action: period for period, action in SCHEDULE}
        steps = {
            "kill store": self.kill_store,
            "kill worker": self.kill_worker,
            "HUP master": self.hup_master,
        }
        while time.monotonic() < started + seconds:
            action, when = min(due.items(), key=lambda item: item[1])
            if when > started + seconds:
                break
            pause = when - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # the schedule itself, not a wait for a condition
            steps[action]()
            self.actions[action] += 1
            due[action] = when + periods[action]

    def kill_store(self) -> None:
        old = self.server.store_pid()
        killed = time.monotonic()
        os.kill(old, signal.SIGKILL)

        def back() -> bool:
            successors = [p for p in self.server.store_processes() if p != old]
            return any(listening_unix_sockets(p) for p in successors) and _pings(self.socket_path)

        if wait_until(back, 10.0, interval=0.005):
            self.restarts.append((time.monotonic() - killed) * 1000)
        self.server.remember()

    def kill_worker(self) -> None:
        workers = self.server.worker_pids()
        if workers:
            os.kill(workers[0], signal.SIGKILL)

    def hup_master(self) -> None:
        self.server.signal(signal.SIGHUP)


def run(seconds: float, worker_class: str, readers: int) -> int:
    """Run the chaos scenario, print the figures; 0 when no read was a 5xx and nothing leaked."""
    with tempfile.TemporaryDirectory() as cwd:
        config = ["-c", "python:blinkstore_gunicorn.conf", "--workers", str(WORKERS)]
        server = Gunicorn([*config, "--worker-class", worker_class, "wsgi_app:app"], Path(cwd))
        counts: Counter[str] = Counter()
        try:
            server.start()
            url = httpx.get(server.url + "/env", timeout=5).json()["url"]
            httpx.get(server.url + "/set?key=chaos&value=v", timeout=5)
            chaos = Chaos(server, urlparse(url).path)
            stop = threading.Event()
            threads = [
                threading.Thread(target=_reader, args=(server.url, stop, counts))
                for _ in range(readers)
            ]
            for thread in threads:
                thread.start()
            try:
                chaos.run(seconds)
            finally:
                stop.set()
                for thread in threads:
                    thread.join(30)
        finally:
            server.remember()
            try:
                _stop_master(server)
                orphans = [pid for pid in server.known if alive(pid)]
            finally:
                server.close()  # also when the master did not stop: nothing is left running
    restarts = chaos.restarts
    print(
        f"chaos: {seconds:.0f}s under load, gunicorn {worker_class}, {WORKERS} workers,"
        f" {readers} readers"
    )
    print(f"  actions: {dict(chaos.actions)}")
    print(f"  GET /get responses: {dict(counts)}")
    print(
        f"  store restarts: {len(restarts)}, back (answering PING) after p50"
        f" {percentile(restarts, 0.5):.0f} ms, p99 {percentile(restarts, 0.99):.0f} ms"
    )
    print(f"  processes left after stopping the master: {len(orphans)} {orphans}")
    return 0 if not counts["5xx"] and not orphans else 1


def _stop_master(server: Gunicorn) -> None:
    """SIGTERM the master alone and wait for it; what it started must then go by itself."""
    if server.process is None or server.process.poll() is not None:
        return
    # A worker that replaces a killed one loses a SIGTERM that comes before its signal
    # handlers: the master would then wait out its 30 s graceful timeout for it.
    server.wait_workers_booted(WORKERS)
    server.signal(signal.SIGTERM)
    server.wait_exit(30)  # fails showing gunicorn's log
    wait_until(lambda: not any(alive(pid) for pid in server.known), 10.0)


def main(argv: list[str] | None = None) -> int:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--worker-class", default="sync")
    parser.add_argument("--readers", type=int, default=4)
    args = parser.parse_args(argv)
    return run(args.seconds, args.worker_class, args.readers)


if __name__ == "__main__":
    sys.exit(main())
