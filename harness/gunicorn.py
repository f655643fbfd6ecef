"""Start real gunicorn masters for the end-to-end tests and the benchmarks, and always stop them.

gunicorn runs in its own session; ``close()`` signals the whole process group and then kills
any descendant still alive (the store lives in its own session and must stop by itself when
the master is gone, which the tests check; this is the safety net).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from harness.processes import REPO, wait_exit

#: The small apps gunicorn serves here (``--pythonpath``): ``wsgi_app:app``, ``asgi_app:app``...
APPS = REPO / "tests" / "e2e" / "apps"
#: On the command line of the store processes the plugin starts.
STORE_MARKER = "blinkstore_gunicorn.supervision.child"

#: The plugin's config module, as the tests pass it to gunicorn.
CONF = ["-c", "python:blinkstore_gunicorn.conf"]


def get(url: str) -> dict[str, Any]:
    """GET ``url`` on a new connection; assert a 200 and return the JSON body."""
    reply = httpx.get(url, timeout=10.0)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def parent_of(pid: int) -> int | None:
    """The parent pid of ``pid`` from /proc, or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def children(pid: int) -> list[int]:
    """Direct children of ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and parent_of(int(entry)) == pid:
            found.append(int(entry))
    return found


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``."""
    result: list[int] = []
    todo = [pid]
    while todo:
        for child in children(todo.pop()):
            result.append(child)
            todo.append(child)
    return result


def cmdline(pid: int) -> str:
    """The command line of ``pid`` (empty when it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def listening_unix_sockets(pid: int) -> set[str]:
    """Paths of the listening Unix sockets ``pid`` holds open."""
    listening: dict[str, str] = {}
    with open("/proc/net/unix") as table:
        next(table)
        for line in table:
            fields = line.split()
            # Flags 00010000 is __SO_ACCEPTCON: a listening socket.
            if len(fields) >= 8 and fields[3] == "00010000":
                listening[fields[6]] = fields[7]
    paths: set[str] = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:[") and target[8:-1] in listening:
                    paths.add(listening[target[8:-1]])
    return paths


def catches(pid: int, sig: int) -> bool:
    """Whether ``pid`` has a handler installed for ``sig`` (``SigCgt`` in /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    return False


def workers_of(master: int) -> list[int]:
    """The workers of the gunicorn master ``master`` (every child but the store processes)."""
    return [p for p in children(master) if STORE_MARKER not in cmdline(p)]


def booting(master: int) -> list[int]:
    """The workers of ``master`` that still run with the master's signal handlers.

    A forked worker keeps them until its ``init_signals``: a SIGTERM that reaches it before then
    is lost, and the master waits out its whole graceful timeout (30 s by default) before it
    kills it. Every worker class resets the master's SIGHUP handler there, so a worker that
    still catches SIGHUP has not got that far.
    """
    return [p for p in workers_of(master) if catches(p, signal.SIGHUP)]


def workers_booted(master: int, count: int) -> bool:
    """Whether ``master`` has ``count`` workers and none of them is :func:`booting`."""
    return len(workers_of(master)) == count and not booting(master)


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def kill_all(pids: Sequence[int]) -> None:
    """SIGKILL every pid still alive."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class Gunicorn:
    """One gunicorn master started with ``args`` in ``cwd``; use it as a context manager."""

    def __init__(
        self,
        args: Sequence[str],
        cwd: Path,
        *,
        env: dict[str, str] | None = None,
        ready_path: str = "/env",
    ) -> None:
        self.port = free_port()
        self.cwd = cwd
        self.log_path = cwd / f"gunicorn-{self.port}.log"
        self.args = [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--pythonpath",
            str(APPS),
            "--no-control-socket",
            *args,
        ]
        self.env = {**os.environ, **(env or {})}
        self.env.pop("BLINKSTORE_URL", None)
        self.ready_path = ready_path
        self.process: subprocess.Popen[bytes] | None = None
        self.known: set[int] = set()

    @property
    def url(self) -> str:
        """The base URL of the server."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The master's pid."""
        assert self.process is not None
        return self.process.pid

    def log(self) -> str:
        """Everything gunicorn (and the store, through it) wrote so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def start(self, wait: bool = True, timeout: float = 30.0) -> Gunicorn:
        """Start the master; with ``wait``, return once it answers HTTP."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.args,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        if wait:
            self.wait_http(timeout)
        return self

    def wait_http(self, timeout: float = 30.0) -> None:
        """Wait until a request to ``ready_path`` succeeds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"gunicorn exited ({self.process.returncode}):\n{self.log()}")
            # A slow first answer (a worker still importing the app on a loaded machine) is
            # waited for up to the deadline: abandoned at a fixed 2 s, it was asked again and
            # again of workers each as slow, and never seen.
            left = max(0.1, deadline - time.monotonic())
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + self.ready_path, timeout=left).status_code == 200:
                    self.remember()
                    return
            time.sleep(0.1)
        raise AssertionError(f"gunicorn did not answer within {timeout} s:\n{self.log()}")

    def remember(self) -> None:
        """Note every current descendant so close() can kill it even after re-parenting."""
        if self.process is not None:
            self.known.update(descendants(self.process.pid))

    def store_processes(self) -> list[int]:
        """The master's store processes: the store and its warm standby."""
        return [p for p in children(self.pid) if STORE_MARKER in cmdline(p) and alive(p)]

    def store_pid(self, timeout: float = 20.0) -> int:
        """The store: the store process that has a listening Unix socket open."""
        found: list[int] = []

        def store_running() -> bool:
            found[:] = [p for p in self.store_processes() if listening_unix_sockets(p)]
            return len(found) == 1

        wait_until(store_running, timeout)
        assert len(found) == 1, (found, self.log())
        self.known.update(self.store_processes())
        return found[0]

    def wait_workers_booted(self, count: int, timeout: float = 30.0) -> None:
        """Wait until the master has ``count`` workers, each with its own signal handlers
        (see :func:`workers_booted`); signal the master (TERM, HUP) only after this."""
        booted = wait_until(lambda: workers_booted(self.pid, count), timeout)
        assert booted, (f"workers {self.worker_pids()}, booting {booting(self.pid)}", self.log())

    def worker_pids(self) -> list[int]:
        """The master's workers (every child but the store processes)."""
        return workers_of(self.pid)

    def wait_exit(self, timeout: float = 20.0) -> int:
        """Wait for the master to exit (after a signal); return its status, or fail showing
        its log."""
        assert self.process is not None
        return wait_exit(self.process, timeout, self.log)

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the master."""
        os.kill(self.pid, sig)

    def close(self) -> None:
        """Stop the master and everything it started, whatever state it is in."""
        if self.process is None:
            return
        self.remember()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.wait_exit(5)
        finally:
            # Give the store its chance to clean up, then make sure nothing is left.
            wait_until(lambda: not any(alive(p) for p in self.known), 5.0)
            kill_all(list(self.known))

    def __enter__(self) -> Gunicorn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def gunicorn(args: Sequence[str], cwd: Path, **kwargs: Any) -> Iterator[Gunicorn]:
    """Start gunicorn, wait for HTTP, yield it, and always stop it."""
    server = Gunicorn(args, cwd, **kwargs)
    try:
        server.start()
        yield server
    finally:
        server.close()


def two_workers(
    client: httpx.Client, path: str, timeout: float = 60.0
) -> tuple[dict[str, Any], dict[str, Any]]:
    """GET ``path`` until replies from two different worker pids were seen; return one of each.

    Each GET is on a new connection (a kept-alive one stays with one worker), and the bound is
    time, not a number of requests: the second worker may still be booting on a loaded machine.
    """
    seen: dict[int, dict[str, Any]] = {}

    def two_answered() -> bool:
        reply = client.get(path, headers={"Connection": "close"})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        seen.setdefault(body["pid"], body)
        return len(seen) >= 2

    assert wait_until(two_answered, timeout, interval=0.0), (
        f"only saw workers {sorted(seen)} within {timeout} s"
    )
    first, second = list(seen.values())[:2]
    return first, second
