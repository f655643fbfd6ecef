"""Helpers of the hostile tests of the shared region (``test_shm_attacks_*``): clients in
child processes with deadlines, and redis-py clients of a store."""

from __future__ import annotations

import contextlib
import mmap
import multiprocessing
import os
import socket
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import redis

from bench.shm_torture import running_children
from blinkstore_gunicorn.shm import handout
from harness.processes import StoreProcess, resp_command
from tests.support.sockets import recv_line

__all__ = [
    "CHILD",
    "NO_CAPABILITIES",
    "child_answer",
    "drop_capabilities",
    "redis_client",
    "started_child",
    "startup_hook",
]

#: Children are forked: they inherit the test's imports and need no pickling of arguments.
CHILD = multiprocessing.get_context("fork")


#: Python source that drops every capability of the process (the uid stays): a root test then
#: sees what a same-uid process that is not root can do.
NO_CAPABILITIES = """\
import ctypes
_header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
if ctypes.CDLL(None, use_errno=True).capset(_header, (ctypes.c_uint32 * 6)()) != 0:
    raise OSError(ctypes.get_errno(), "capset")
"""


def drop_capabilities() -> None:
    """Drop every capability of this process (see :data:`NO_CAPABILITIES`)."""
    exec(NO_CAPABILITIES, {})


def startup_hook(directory: Path, source: str) -> dict[str, str]:
    """The environment that makes a Python process (a store) run ``source`` as it starts: a
    ``sitecustomize`` module in ``directory`` on PYTHONPATH."""
    (directory / "sitecustomize.py").write_text(source)
    return {"PYTHONPATH": str(directory)}


def received_fds(path: str, password: str | None = None) -> list[int]:
    """The descriptors the store sends a client for its region (as ``handout.attach`` asks)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(path)
        if password is not None:
            sock.sendall(resp_command("AUTH", password))
            assert recv_line(sock) == b"+OK\r\n"
        sock.sendall(handout.REQUEST)
        _data, fds, _flags, _addr = socket.recv_fds(sock, 4096, 16)
    return fds


def writable(fd: int) -> mmap.mmap | str:
    """``fd`` mapped shared and writable, or why not."""
    try:
        size = os.fstat(fd).st_size
        return mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    except (OSError, ValueError) as exc:
        return f"refused: {exc!r}"


def redis_client(store: StoreProcess, password: str | None = None) -> redis.Redis:
    """A redis-py client of ``store``'s Unix socket (bounded waits)."""
    assert store.unix_path is not None
    return redis.Redis(unix_socket_path=store.unix_path, password=password, socket_timeout=10)


def _run(target: Callable[..., Any], args: tuple[Any, ...], pipe: Connection) -> None:
    try:
        pipe.send(("ok", target(*args)))
    except BaseException as exc:
        pipe.send(("raised", repr(exc)))


@contextlib.contextmanager
def started_child(target: Callable[..., Any], *args: Any) -> Iterator[Connection]:
    """Run ``target(*args)`` in a child process for the ``with`` block; yields the pipe its
    outcome comes back on (``("ok", result)`` or ``("raised", repr)``). The child is killed
    when the block ends, wherever it is."""
    with running_children() as procs:
        mine, theirs = CHILD.Pipe()
        proc = CHILD.Process(target=_run, args=(target, args, theirs), daemon=True)
        proc.start()
        procs.append(proc)
        theirs.close()
        yield mine


def child_answer(target: Callable[..., Any], *args: Any, timeout: float) -> Any:
    """``target(*args)`` run in a child process: its result, or AssertionError when it raised,
    died or did not return within ``timeout`` seconds (then it is killed)."""
    with started_child(target, *args) as pipe:
        if not pipe.poll(timeout):
            raise AssertionError(f"{target.__name__} did not return within {timeout}s")
        try:
            outcome, result = pipe.recv()
        except EOFError:
            raise AssertionError(f"{target.__name__} died") from None
    if outcome != "ok":
        raise AssertionError(f"{target.__name__} raised {result}")
    return result
