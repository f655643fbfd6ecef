"""``python -m bench.abuse [--quick] [SCENARIO ...]``: attack a live store, print figures.

Exit status 0 when every scenario passed (memory bound kept, no crash, hang or internal error,
sentinel intact, max-connections refusal working), 1 otherwise. Latency is reported, not
judged: on a small shared machine it measures the machine as much as the store.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from bench.abuse.fuzz import run_fuzz
from bench.abuse.memory import KINDS, run_memory
from bench.abuse.storm import run_storm

#: Each scenario's run; ``memory`` also takes ``attacks`` (``--attacks``).
FULL: dict[str, Callable[..., object]] = {
    "memory": lambda **options: run_memory(connections=1000, seconds=30, **options),
    "fuzz": lambda: run_fuzz(inputs=1_000_000, split_inputs=2000),
    "storm": lambda: run_storm(connections=5000),
}
QUICK: dict[str, Callable[..., object]] = {
    "memory": lambda **options: run_memory(connections=100, seconds=3, **options),
    "fuzz": lambda: run_fuzz(inputs=20_000, split_inputs=50),
    "storm": lambda: run_storm(connections=500, window=2),
}


def main(argv: list[str] | None = None) -> int:
    """Run the chosen scenarios (all by default) and print each report."""
    parser = argparse.ArgumentParser(prog="python -m bench.abuse", description=__doc__)
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=", ".join(FULL))
    parser.add_argument("--quick", action="store_true", help="the short slice CI runs")
    parser.add_argument(
        "--attacks",
        metavar="KIND,...",
        help=f"memory: run only these attacks ({', '.join(KINDS)}), sharing the connections",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.scenarios) - set(FULL))
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    memory_options: dict[str, list[str]] = {}
    if args.attacks is not None:
        attacks = args.attacks.split(",")
        unknown = sorted(set(attacks) - set(KINDS))
        if unknown:
            parser.error(f"unknown attack(s): {', '.join(unknown)}")
        memory_options["attacks"] = attacks
    table = QUICK if args.quick else FULL
    passed = True
    for name in args.scenarios or list(table):
        report = table[name](**(memory_options if name == "memory" else {}))
        print("\n".join(report.lines()), flush=True)  # type: ignore[attr-defined]
        passed = passed and bool(report.ok)  # type: ignore[attr-defined]
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
