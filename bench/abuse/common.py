"""What the abuse scenarios share: starting the store, reading its memory, percentiles."""

from __future__ import annotations

import contextlib
import resource
import socket
import time
from collections.abc import Iterator

from blinkstore_gunicorn.protocol import resp
from harness.processes import StoreProcess, blinkstore_process

MiB = 1024 * 1024
PASSWORD = "abuse-password"


def memory_kib(pid: int, field: str = "VmRSS") -> int:
    """``VmRSS`` (or ``VmHWM``, the peak) of process ``pid`` in KiB; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def percentile(samples: list[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank) of ``samples``; 0 when there are none."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def raise_open_files(wanted: int) -> int:
    """Raise this process's soft open-files limit towards ``wanted``; return the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


@contextlib.contextmanager
def store(*flags: str, password: str | None = None) -> Iterator[StoreProcess]:
    """A ``blinkstore serve`` on a Unix socket for the ``with`` block (stopped after)."""
    env = {"BLINKSTORE_PASSWORD": password} if password else None
    with blinkstore_process(*flags, env=env) as process:
        yield process


class Client:
    """A blocking RESP connection: what a well-behaved application does."""

    def __init__(self, path: str, password: str | None = None, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.reader = resp.ReplyReader()
        if password is not None:
            self.call("AUTH", password)

    def call(self, *args: resp.Arg) -> resp.Reply:
        """Send one command, return its reply (raises on an error reply or a closed socket)."""
        self.sock.sendall(resp.encode_command(*args))
        return self.read()

    def read(self) -> resp.Reply:
        """The next reply."""
        while True:
            reply = self.reader.next_reply()
            if reply is not resp.NEED_MORE:
                if isinstance(reply, resp.ErrorReply | Exception):
                    raise RuntimeError(f"store replied {reply!r}")
                return reply  # type: ignore[return-value]
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError("the store closed the connection")
            self.reader.feed(data)

    def info(self) -> dict[str, str]:
        """``INFO`` as a dict."""
        text = self.call("INFO")
        assert isinstance(text, bytes)
        lines = text.decode().split("\r\n")
        return dict(line.split(":", 1) for line in lines if ":" in line)

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


def timed_gets(path: str, password: str | None, key: str, seconds: float, out: object) -> None:
    """Child process: GET ``key`` once per millisecond for ``seconds``; send the latencies
    (ms) and the count of failures through the pipe end ``out``."""
    latencies: list[float] = []
    failures = 0
    deadline = time.monotonic() + seconds
    client = Client(path, password)
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            client.call("GET", key)
        except (OSError, RuntimeError):
            failures += 1
            client.close()
            client = Client(path, password)
            continue
        elapsed = time.perf_counter() - started
        latencies.append(elapsed * 1000)
        pause = 0.001 - elapsed
        if pause > 0:
            time.sleep(pause)  # pacing, not waiting for a condition
    client.close()
    out.send((latencies, failures))  # type: ignore[attr-defined]
