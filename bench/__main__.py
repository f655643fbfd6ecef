"""Run every benchmark suite: ``python -m bench [suite ...]`` (``make bench``).

Each suite compares us with a peer measured in the same run and prints ratios; figures on a
2-core machine are noisy, so suites report medians of several runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUITES = (
    "store",
    "client",
    "eviction",
    "stampede",
    "locks",
    "pubsub",
    "ratelimit",
    "gunicorn",
    "shm",
    "shm_writes",
    "pipeline",
    "memory_tax",
    "snapshot",
    "datatypes",
    "nearcache",
    "middleware",
)


def main(argv: list[str] | None = None) -> int:
    """Run the named suites (all by default), each through its own ``main``."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("suites", nargs="*", metavar="SUITE", help=f"any of {', '.join(SUITES)}")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.suites) - set(SUITES))
    if unknown:
        parser.error(f"unknown suite(s): {', '.join(unknown)}")
    for name in args.suites or SUITES:
        module = importlib.import_module(f"bench.{name}")
        print(f"\n== {name} ==", flush=True)
        status = module.main([])
        if status:
            return int(status)
    return 0


if __name__ == "__main__":
    sys.exit(main())
