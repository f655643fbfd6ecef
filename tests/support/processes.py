"""Process helpers that only make sense inside pytest (the rest live in :mod:`harness.processes`,
which the benchmarks share)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from harness.processes import (
    REDIS_SERVER,
    RedisProcess,
    StoreProcess,
    blinkstore_process,
    redis_server_process,
)

__all__ = ["memory_kib", "resp_server_process"]


@contextlib.contextmanager
def resp_server_process(kind: str) -> Iterator[StoreProcess | RedisProcess]:
    """A ``blinkstore serve`` (``kind="store"``) or ``redis-server`` (``"redis"``; the test is
    skipped where it is not installed) for the ``with`` block: both speak RESP."""
    if kind == "redis":
        if REDIS_SERVER is None:
            pytest.skip("redis-server is not installed")
        with redis_server_process() as redis:
            yield redis
    else:
        with blinkstore_process() as store:
            yield store


def memory_kib(store: StoreProcess, field: str) -> int:
    """``VmRSS`` / ``VmHWM`` (peak) of the store process, in KiB."""
    with open(f"/proc/{store.pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{store.pid}/status")
