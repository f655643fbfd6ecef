"""The README's memory tax: what 100,000 values of 1 KiB cost in one worker's dict, and in the
store (its whole RSS), with the shared-memory region on and off.

    python -m bench.memory_tax [--keys 100000] [--value-size 1024] [--memory-limit 256MiB]

The dict figure is the RSS growth of a fresh Python process that fills a dict with the values
(what each worker pays for a per-process cache); the store figures are the RSS of a
``blinkstore serve`` process, empty and after a client wrote the same values. With the region
on, the values live in the shared memory that the store and every client map: the store's RSS
counts it once (``RssShmem``), and a worker that reads from it adds only the pages it touches
to its own RSS, shared with every other worker.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from blinkstore_gunicorn import Cache
from harness.processes import blinkstore_process

_DICT_PROBE = """
import sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
keys, size = int(sys.argv[1]), int(sys.argv[2])
before = rss()
cache = {f"key:{i:08d}": b"x" * size for i in range(keys)}
print(rss() - before)
"""


def _status_mib(pid: int) -> dict[str, float]:
    """VmRSS and its parts for ``pid``, in MiB."""
    fields: dict[str, float] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                fields[name] = int(value.split()[0]) / 1024
    return fields


def dict_growth_mib(keys: int, value_size: int) -> float:
    """RSS growth of a fresh interpreter filling a dict with the values."""
    out = subprocess.run(
        [sys.executable, "-c", _DICT_PROBE, str(keys), str(value_size)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(out) / 2**20


def store_rss_mib(
    keys: int, value_size: int, shm: str, limit: str
) -> tuple[dict[str, float], dict[str, float]]:
    """The store's RSS parts empty and holding the values, with ``--shm shm``."""
    value = b"x" * value_size
    names = [f"key:{i:08d}" for i in range(keys)]
    with (
        blinkstore_process("--memory-limit", limit, "--shm", shm) as store,
        Cache(store.url) as cache,
    ):
        cache.ping()
        empty = _status_mib(store.pid)
        for start in range(0, keys, 1000):
            cache.set_many(dict.fromkeys(names[start : start + 1000], value))
        full = _status_mib(store.pid)
    return empty, full


def main(argv: list[str] | None = None) -> int:
    """Print the dict's growth and the store's RSS with the region on and off."""
    parser = argparse.ArgumentParser(prog="python -m bench.memory_tax", description=__doc__)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--value-size", type=int, default=1024)
    parser.add_argument("--memory-limit", default="256MiB", help="the store's --memory-limit")
    args = parser.parse_args(argv)
    print(f"{args.keys:,} values of {args.value_size} B")
    per_worker = dict_growth_mib(args.keys, args.value_size)
    print(f"  per-process dict: +{per_worker:.0f} MiB in every worker")
    totals = {}
    for shm in ("off", "on"):
        empty, full = store_rss_mib(args.keys, args.value_size, shm, args.memory_limit)
        totals[shm] = full["VmRSS"]
        print(
            f"  store, region {shm:3}: RSS {full['VmRSS']:.0f} MiB for all workers "
            f"(empty {empty['VmRSS']:.0f}; anonymous {full['RssAnon']:.0f}, "
            f"shared region {full['RssShmem']:.0f}, files {full['RssFile']:.0f})"
        )
    print(f"  region on / off: {totals['on'] / totals['off']:.3f}x the store's RSS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
