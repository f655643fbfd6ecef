"""How the region's keyed hash spreads families of keys over its table, against a random hash.

    python -m bench.shm_hash [--secrets 2000] [--min-log2 10] [--max-log2 20] [--load 0.5]
                             [--families NAME,...] [--version-2]

For each table size (2**min-log2 .. 2**max-log2 slots) and each secret drawn as a region draws
it (``layout.hash_secret``, from a seeded generator, so a run replays), ``load`` x slots keys of
each family go into an empty table in key order by linear probing, as the writer places them
(it grows the table at a load of 1/2). Per family: over the secrets, the median, 99th
percentile and maximum of the table's longest probe (slots past a key's home), how many tables
put a key ``MAX_PROBE`` or more slots past its home (a reader answers "ask the store" for such a
key; the writer leaves it out of the table, or grows a small table at once), and the fraction
of such keys. ``random`` is the same tables with homes drawn at random: what an ideal hash
gives. ``--secrets`` applies to the smallest table; a table k times larger gets k times fewer
(at least 4), so each size costs about the same. ``--version-2`` measures the hash of layout
version 2 (the mod-p residue's low 32 bits) instead of today's ``layout.key_hash``.

Pure Python except the hash (``shm/_native.c``'s when built): ~1 minute per size with the
defaults on an idle core.
"""

from __future__ import annotations

import argparse
import random
import statistics
import uuid
from collections.abc import Callable, Iterator

from blinkstore_gunicorn.shm import layout
from blinkstore_gunicorn.shm.native import native

Hash = Callable[[bytes, int, int], int]

_MASK32 = 0xFFFFFFFF
RANDOM = "random"


def _uuids(n: int) -> list[bytes]:
    rng = random.Random(n)
    return [b"session:%s" % str(uuid.UUID(int=rng.getrandbits(128))).encode() for _ in range(n)]


def _prefixed(size: int) -> Callable[[int], list[bytes]]:
    return lambda n: [b"p" * size + b"%010d" % i for i in range(n)]


def _shifted(k: int) -> Callable[[int], list[bytes]]:
    return lambda n: [(i << k).to_bytes(16, "little") for i in range(n)]


#: Families of keys, by name: a function of n gives n keys. The regular shapes applications and
#: benchmarks use (numbers zero-padded and not, behind prefixes of 0-40 bytes, varying in a long
#: key's first or last bytes, binary counters of 1-16 bytes, multiples of 2**k) and random ones.
FAMILIES: dict[str, Callable[[int], list[bytes]]] = {
    "key:%012d (redis-benchmark)": lambda n: [b"key:%012d" % i for i in range(n)],
    "user:%d": lambda n: [b"user:%d" % i for i in range(n)],
    "%d": lambda n: [b"%d" % i for i in range(n)],
    "%08d": lambda n: [b"%08d" % i for i in range(n)],
    "%016d": lambda n: [b"%016d" % i for i in range(n)],
    "session:<uuid4>": _uuids,
    **{f"{size} B prefix + %010d": _prefixed(size) for size in (1, 3, 8, 13, 24, 40)},
    "%06d + 24 B tail": lambda n: [b"%06d" % i + b"~" * 24 for i in range(n)],
    "1-8 B little-endian": lambda n: [
        i.to_bytes(max(1, -(-i.bit_length() // 8)), "little") for i in range(n)
    ],
    "8 B big-endian": lambda n: [i.to_bytes(8, "big") for i in range(n)],
    "4 B big-endian + 12 B tail": lambda n: [i.to_bytes(4, "big") + b"t" * 12 for i in range(n)],
    **{f"i * 2**{k} (16 B)": _shifted(k) for k in (1, 8, 16, 32, 40, 56, 64, 96)},
    "random 16 B": lambda n: list(map(random.Random(-n).randbytes, [16] * n)),
}


def probe_runs(homes: Iterator[int] | list[int], slots: int) -> tuple[int, int]:
    """Place keys whose home slots are ``homes`` (in that order) into an empty table of
    ``slots`` slots by linear probing: ``(longest probe, keys MAX_PROBE or more past home)``."""
    mask = slots - 1
    taken = bytearray(slots)
    longest = far = 0
    for home in homes:
        slot = home & mask
        while taken[slot]:
            slot = (slot + 1) & mask
        taken[slot] = 1
        run = (slot - home) & mask
        if run > longest:
            longest = run
        if run >= layout.MAX_PROBE:
            far += 1
    return longest, far


def version_2_hash(key: bytes, mul: int, prime: int) -> int:
    """Layout version 2's key_hash: the residue's low 32 bits (for comparison only)."""
    return int.from_bytes(key, "little") * mul % prime & _MASK32


def seeded_secrets(count: int, seed: int) -> list[tuple[int, int]]:
    """``count`` secrets drawn as ``layout.hash_secret`` draws them, from a seeded generator."""
    rng = random.Random(seed)
    found: list[tuple[int, int]] = []
    while len(found) < count:
        prime = rng.getrandbits(61) | 1 << 61 | 1
        if layout._is_prime(prime):
            found.append((rng.randrange(1, prime), prime))
    return found


def measure(
    slots: int, secrets: list[tuple[int, int]], load: float, key_hash: Hash, names: list[str]
) -> dict[str, list[tuple[int, int]]]:
    """``{family: [(longest probe, far keys) per secret]}``, and the same for random homes."""
    n = int(slots * load)
    out: dict[str, list[tuple[int, int]]] = {}
    for name in names:  # one family's keys at a time: a million keys of each would not fit
        keys = FAMILIES[name](n)
        out[name] = [probe_runs([key_hash(k, *secret) for k in keys], slots) for secret in secrets]
    rng = random.Random(slots)
    out[RANDOM] = [probe_runs([rng.getrandbits(32) for _ in range(n)], slots) for _ in secrets]
    return out


def report(slots: int, load: float, results: dict[str, list[tuple[int, int]]]) -> None:
    """Print one table size's figures."""
    n = int(slots * load)
    print(f"\n{slots:,} slots, {n:,} keys, {len(results[RANDOM])} secrets")
    print(
        f"{'family':32} {'longest: median':>15} {'p99':>5} {'max':>5}   "
        f"{'tables with far keys':>20}   far keys"
    )
    for name, rows in results.items():
        longest = sorted(row[0] for row in rows)
        tables = sum(1 for row in rows if row[1])
        share = sum(row[1] for row in rows) / (len(rows) * n)
        p99 = longest[min(len(longest) - 1, int(len(longest) * 0.99))]
        print(
            f"{name:32} {statistics.median(longest):15.0f} {p99:5d} {longest[-1]:5d}   "
            f"{tables:>9d} of {len(rows):<8d}   {share:.1e}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.shm_hash", description=__doc__)
    parser.add_argument("--secrets", type=int, default=2000)
    parser.add_argument("--min-log2", type=int, default=10)
    parser.add_argument("--max-log2", type=int, default=20)
    parser.add_argument("--load", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--families", help="comma-separated names (default: all)")
    parser.add_argument("--version-2", action="store_true", help="layout version 2's hash")
    args = parser.parse_args(argv)
    module = native()
    key_hash: Hash
    if args.version_2:
        key_hash = version_2_hash
    else:
        key_hash = layout.key_hash if module is None else module.key_hash
    names = args.families.split(",") if args.families else list(FAMILIES)
    print(
        f"hash: {'layout version 2' if args.version_2 else 'layout.key_hash'}, "
        f"load {args.load}, MAX_PROBE {layout.MAX_PROBE}"
    )
    for log2 in range(args.min_log2, args.max_log2 + 1):
        slots = 1 << log2
        count = max(4, args.secrets * (1 << args.min_log2) // slots)
        secrets = seeded_secrets(count, args.seed + log2)
        report(slots, args.load, measure(slots, secrets, args.load, key_hash, names))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
