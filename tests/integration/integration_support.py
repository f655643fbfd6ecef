"""Helpers for the framework integration tests: bounded subprocesses, readiness, servers."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

import httpx

from harness import processes
from harness.gunicorn import free_port
from harness.processes import REPO

__all__ = [
    "dead_unix_url",
    "free_port",
    "gunicorn_workers",
    "process_output",
    "running_process",
    "server_url",
    "wait_http",
]

_logs: dict[int, IO[bytes]] = {}


def dead_unix_url(directory: Path) -> str:
    """A ``unix://`` URL where no store listens: every operation fails to connect."""
    return f"unix://{directory / 'nobody-home.sock'}"


@contextlib.contextmanager
def running_process(
    python_args: Sequence[str], *, env: Mapping[str, str] | None = None, stop_timeout: float = 10
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``python <python_args>`` from the repo root in its own process group; always stop it.

    SIGTERM first (servers shut down gracefully, workers included), SIGKILL to the whole group
    if that takes longer than ``stop_timeout``.
    """
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), full_env.get("PYTHONPATH")]))
    # A file, not a pipe: a chatty server must never block on a full pipe nobody reads.
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen(
        [sys.executable, *python_args],
        cwd=REPO,
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    _logs[proc.pid] = log
    try:
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(stop_timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        # Workers may outlive a master killed hard; the group kill above reaches them too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        del _logs[proc.pid]
        log.close()


def process_output(proc: subprocess.Popen[bytes]) -> str:
    """What a process started by :func:`running_process` has printed so far."""
    log = _logs[proc.pid]
    log.seek(0)
    return log.read().decode(errors="replace")


def wait_http(
    url: str, *, proc: subprocess.Popen[bytes] | None = None, timeout: float = 30
) -> httpx.Response:
    """Poll ``url`` until it answers; fail with the server's stderr if it died or never answered."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            output = process_output(proc)[-4000:]
            raise AssertionError(f"server exited with {proc.returncode}:\n{output}")
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError as exc:
            last_error = exc
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout}s: {last_error!r}")


@contextlib.contextmanager
def server_url(kind: str) -> Iterator[str]:
    """The URL of a real server started for the ``with`` block (``harness/processes.py``).

    ``"store"``: a ``blinkstore serve`` on a Unix socket; ``"redis"``: a ``redis-server``,
    reached through the redis-py backend (``redis+unix://``).
    """
    if kind == "store":
        with processes.blinkstore_process() as store:
            yield store.url
    elif kind == "redis":
        with processes.redis_server_process() as redis:
            yield redis.redis_url
    else:
        raise ValueError(f"unknown server kind {kind!r}")


@contextlib.contextmanager
def gunicorn_workers(
    app: str, ready_path: str, env: Mapping[str, str]
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """gunicorn with 2 sync workers serving ``app`` on a free loopback port; yields the base
    URL (once ``ready_path`` answers) and the process, stopped when the block ends."""
    port = free_port()
    argv = ["-m", "gunicorn", "--workers", "2", "--bind", f"127.0.0.1:{port}", app]
    with running_process(argv, env=env) as proc:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + ready_path, proc=proc)
        yield base, proc
