"""Real server processes for tests and benchmarks: ``blinkstore serve`` and ``redis-server``.

Every helper waits for readiness with a bound and always stops the process (SIGTERM, then
SIGKILL) when its ``with`` block ends, also on failure. Unix sockets live in a short temp dir
under ``/tmp`` (socket paths are limited to 107 bytes; pytest's ``tmp_path`` can be longer).

    with blinkstore_process(unix=True, tcp=True) as store:
        store.unix_path, store.tcp_address, store.url, store.connect("tcp")
    with redis_server_process() as redis:
        redis.unix_path, redis.url
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blinkstore_gunicorn.shm.native import ENV as NATIVE_ENV

__all__ = [
    "REDIS_SERVER",
    "REPO",
    "RedisProcess",
    "StoreProcess",
    "blinkstore_process",
    "redis_server_process",
    "resp_command",
    "short_tempdir",
    "start_blinkstore",
    "stop_process",
    "wait_exit",
]

#: The source checkout: the store runs from it, so the code under test is this tree's.
REPO = Path(__file__).resolve().parents[1]
REDIS_SERVER = shutil.which("redis-server")
#: Bound on how long a server may take to become ready (the CI machine is small and shared).
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

_LISTENING = re.compile(r"listening on (?P<urls>[^(]+) \(")
_TCP_URL = re.compile(r"tcp://(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:,\s]+)):(?P<port>\d+)")


@contextlib.contextmanager
def short_tempdir(prefix: str = "bs-") -> Iterator[Path]:
    """A fresh private directory under /tmp (short enough for socket paths), removed after."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def stop_process(
    proc: subprocess.Popen[bytes],
    sig: int = signal.SIGTERM,
    log: Callable[[], str] = lambda: "(not kept)",
) -> int:
    """Send ``sig``, wait up to :data:`STOP_TIMEOUT`, then SIGKILL; return the exit status
    (``log()`` is shown if even SIGKILL does not end it)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            wait_exit(proc, STOP_TIMEOUT, log)
    return proc.returncode


def wait_exit(proc: subprocess.Popen[Any], timeout: float, log: Callable[[], str]) -> int:
    """Wait up to ``timeout`` seconds for ``proc`` to exit; return its exit status.

    When it does not exit, fail with an AssertionError that shows ``log()`` (what the process
    wrote): a bare ``TimeoutExpired`` says nothing about why it hangs. The process is left
    running; whoever started it stops it.
    """
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"pid {proc.pid} ({proc.args!r}) did not exit within {timeout} s; its log:\n{log()}"
        ) from None


def resp_command(*args: str | bytes) -> bytes:
    """Encode one RESP request (tests' own tiny encoder, independent of the code under test)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        raw = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(parts)


@dataclass
class StoreProcess:
    """A running ``blinkstore serve`` and where it listens."""

    proc: subprocess.Popen[bytes]
    directory: Path
    log_path: Path
    unix_path: str | None = None
    tcp_address: tuple[str, int] | None = None
    urls: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        """The store's process id."""
        return self.proc.pid

    @property
    def url(self) -> str:
        """``unix:///...`` when it listens on a Unix socket, else ``tcp://host:port``."""
        if self.unix_path is not None:
            return f"unix://{self.unix_path}"
        assert self.tcp_address is not None
        return f"tcp://{self.tcp_address[0]}:{self.tcp_address[1]}"

    @property
    def tcp_url(self) -> str:
        """``tcp://host:port`` (only when it listens on TCP)."""
        assert self.tcp_address is not None, "this store does not listen on TCP"
        return f"tcp://{self.tcp_address[0]}:{self.tcp_address[1]}"

    def connect(self, kind: str | None = None, timeout: float = 10.0) -> socket.socket:
        """A connected blocking socket: ``kind`` is ``"unix"``, ``"tcp"`` or None (either)."""
        if kind is None:
            kind = "unix" if self.unix_path is not None else "tcp"
        if kind == "unix":
            assert self.unix_path is not None, "this store does not listen on a Unix socket"
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(self.unix_path)
            return sock
        assert self.tcp_address is not None, "this store does not listen on TCP"
        return socket.create_connection(self.tcp_address, timeout=timeout)

    def log_text(self) -> str:
        """Everything the store wrote to stderr/stdout so far."""
        return self.log_path.read_text(errors="replace")

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int:
        """Wait for the store to exit by itself; return its status (fail showing its log)."""
        return wait_exit(self.proc, timeout, self.log_text)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stop the store (SIGTERM by default, SIGKILL after a bound); return its exit status."""
        return stop_process(self.proc, sig, self.log_text)


def start_blinkstore(
    *extra_args: str,
    directory: Path,
    unix: bool = True,
    tcp: bool = False,
    env: Mapping[str, str] | None = None,
    timeout: float = START_TIMEOUT,
) -> StoreProcess:
    """Start ``python -m blinkstore_gunicorn serve`` and wait until it logs where it listens.

    ``unix``/``tcp`` add ``--unix DIR/store.sock`` and ``--tcp 127.0.0.1:0`` (the OS picks the
    port; it is read back from the start line, so do not pass ``--log-level warning`` or
    higher). Settings not passed as flags or ``env`` are defaults: inherited ``BLINKSTORE_*``
    variables are dropped, except ``BLINKSTORE_NATIVE`` (which path of the region's code runs
    is the test's choice, ``tests/conftest.py``'s ``shm_path``). The caller must ``stop()`` it.
    """
    args = [sys.executable, "-m", "blinkstore_gunicorn", "serve"]
    unix_path = None
    if unix:
        unix_path = str(directory / "store.sock")
        args += ["--unix", unix_path]
    if tcp:
        args += ["--tcp", "127.0.0.1:0"]
    args += list(extra_args)
    child_env = {
        k: v for k, v in os.environ.items() if not k.startswith("BLINKSTORE_") or k == NATIVE_ENV
    }
    child_env.update(env or {})
    log_path = directory / f"store-{time.monotonic_ns()}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=REPO, env=child_env
        )
    store = StoreProcess(proc, directory, log_path, unix_path=unix_path)
    try:
        _wait_listening(store, timeout)
    except BaseException:
        stop_process(proc, signal.SIGKILL)
        raise
    return store


def _wait_listening(store: StoreProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = _LISTENING.search(store.log_text())
        if match is not None:
            store.urls = [url.strip() for url in match.group("urls").split(",")]
            tcp = _TCP_URL.search(match.group("urls"))
            if tcp is not None:
                store.tcp_address = (tcp.group("v6") or tcp.group("host"), int(tcp.group("port")))
            return
        if store.proc.poll() is not None:
            raise RuntimeError(
                f"blinkstore serve exited with {store.proc.returncode}:\n{store.log_text()}"
            )
        time.sleep(0.02)
    raise RuntimeError(f"blinkstore serve not listening after {timeout}s:\n{store.log_text()}")


@contextlib.contextmanager
def blinkstore_process(
    *extra_args: str,
    unix: bool = True,
    tcp: bool = False,
    env: Mapping[str, str] | None = None,
    timeout: float = START_TIMEOUT,
) -> Iterator[StoreProcess]:
    """A ``blinkstore serve`` process in a private temp dir for the ``with`` block."""
    with short_tempdir() as directory:
        store = start_blinkstore(
            *extra_args, directory=directory, unix=unix, tcp=tcp, env=env, timeout=timeout
        )
        try:
            yield store
        finally:
            store.stop()


@dataclass
class RedisProcess:
    """A running ``redis-server`` on a Unix socket (no TCP, no persistence)."""

    proc: subprocess.Popen[bytes]
    directory: Path
    unix_path: str

    @property
    def url(self) -> str:
        """``unix:///...`` (RESP on a Unix socket)."""
        return f"unix://{self.unix_path}"

    @property
    def redis_url(self) -> str:
        """``redis+unix:///...``: the URL that picks the redis-py backend."""
        return f"redis+unix://{self.unix_path}"

    def connect(self, timeout: float = 10.0) -> socket.socket:
        """A connected blocking Unix socket."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(self.unix_path)
        return sock

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stop the server; return its exit status."""
        return stop_process(self.proc, sig)


@contextlib.contextmanager
def redis_server_process(
    *extra_args: str, timeout: float = START_TIMEOUT
) -> Iterator[RedisProcess]:
    """A ``redis-server --port 0 --save "" --appendonly no`` on a Unix socket in a temp dir."""
    if REDIS_SERVER is None:
        raise RuntimeError("redis-server is not installed (make system-deps installs it)")
    with short_tempdir("rs-") as directory:
        path = str(directory / "redis.sock")
        args = [
            REDIS_SERVER,
            "--port", "0",
            "--unixsocket", path,
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(directory),
            *extra_args,
        ]  # fmt: skip
        with open(directory / "redis.log", "wb") as log:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        redis = RedisProcess(proc, directory, path)
        try:
            _wait_redis(redis, timeout)
            yield redis
        finally:
            redis.stop()


def _wait_redis(redis: RedisProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if redis.proc.poll() is not None:
            log = (redis.directory / "redis.log").read_text(errors="replace")
            raise RuntimeError(f"redis-server exited with {redis.proc.returncode}:\n{log}")
        with contextlib.suppress(OSError), redis.connect(timeout=1.0) as sock:
            sock.sendall(resp_command("PING"))
            if sock.recv(64).startswith((b"+PONG", b"-NOAUTH")):
                return
        time.sleep(0.02)
    raise RuntimeError(f"redis-server did not answer PING within {timeout}s")
