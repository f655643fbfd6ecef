"""Hash flooding of the shared region: SET of keys forged to one crc32, region on vs off.

Keys that users choose (``rate:{ip}``, ``session:{id}``) can be forged so that they all land
on one slot of an unkeyed hash. crc32 is affine over GF(2): for a key ``prefix + x`` with 4
free bytes ``x``, ``crc32(prefix + x) = crc32(prefix + 0000) ^ M x`` where ``M`` (32 x 32) is
the same for every prefix, so one inversion of ``M`` forges a colliding key per prefix.

    python -m bench.shm_flood [--keys 10000]

Prints seconds to SET the forged keys (pipelined), and the same number of ordinary keys, on a
``blinkstore serve`` with the region on and with ``--shm off``, and the ratio.
"""

from __future__ import annotations

import argparse
import time
import zlib
from functools import cache

import redis

from bench import print_rows
from harness.processes import blinkstore_process

__all__ = ["crc32_collisions", "flood_seconds", "main"]

_FREE = 4
_BITS = 8 * _FREE


@cache
def _pivots() -> dict[int, tuple[int, int]]:
    """Gaussian elimination of ``M``'s columns: pivot bit -> (row, free bits that make it)."""
    zero = zlib.crc32(bytes(_FREE))
    pivots: dict[int, tuple[int, int]] = {}
    for bit in range(_BITS):
        row = zlib.crc32((1 << bit).to_bytes(_FREE, "little")) ^ zero
        made = 1 << bit
        while row:
            top = row.bit_length() - 1
            if top not in pivots:
                pivots[top] = (row, made)
                break
            other, other_made = pivots[top]
            row ^= other
            made ^= other_made
    if len(pivots) != _BITS:
        raise AssertionError("the 32 free bits do not reach every crc32")
    return pivots


def _free_bytes(difference: int) -> bytes:
    """The 4 bytes ``x`` with ``M x == difference``."""
    pivots = _pivots()
    bits = 0
    while difference:
        row, made = pivots[difference.bit_length() - 1]
        difference ^= row
        bits ^= made
    return bits.to_bytes(_FREE, "little")


def crc32_collisions(target: int, count: int, prefix: bytes = b"flood:") -> list[bytes]:
    """``count`` distinct keys of one length whose crc32 is ``target``."""
    keys = []
    for n in range(count):
        head = b"%s%08d:" % (prefix, n)
        keys.append(head + _free_bytes(target ^ zlib.crc32(head + bytes(_FREE))))
    return keys


def flood_seconds(client: redis.Redis, keys: list[bytes], batch: int = 1000) -> float:
    """Seconds to SET ``keys`` (pipelined, ``batch`` a round trip)."""
    start = time.perf_counter()
    for n in range(0, len(keys), batch):
        pipe = client.pipeline(transaction=False)
        for key in keys[n : n + batch]:
            pipe.set(key, b"v")
        pipe.execute()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    """Time the floods and print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.shm_flood", description=__doc__)
    parser.add_argument("--keys", type=int, default=10_000)
    args = parser.parse_args(argv)
    forged = crc32_collisions(0x5EED1234, args.keys)
    ordinary = [b"flood:%08d:key" % n for n in range(args.keys)]
    rows = []
    for name, keys in (("forged (one crc32)", forged), ("ordinary", ordinary)):
        seconds = {}
        for shm in ("on", "off"):
            with blinkstore_process("--shm", shm) as store:
                client = redis.Redis(unix_socket_path=store.unix_path, socket_timeout=600)
                seconds[shm] = flood_seconds(client, keys)
                client.close()
        rows.append(
            {
                "keys": f"{len(keys)} {name}",
                "region on s": f"{seconds['on']:.2f}",
                "region off s": f"{seconds['off']:.2f}",
                "on/off": f"{seconds['on'] / seconds['off']:.1f}x",
            }
        )
    print_rows(rows, 22)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
