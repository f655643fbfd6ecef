"""``blinkstore ping | get | set | del | stats | ls``: talk to running stores from the shell.

Every subcommand but ``ls`` takes ``--url`` (default ``$BLINKSTORE_URL``), so it works against
the store, Redis/Valkey or anything else :class:`~blinkstore_gunicorn.client.Cache` accepts;
without either it finds the running store of this user on this host (``--pid`` picks one of
several), see :mod:`blinkstore_gunicorn.cli.discovery`.

Exit status: 0 success; 1 the store is unreachable (or timed out); 2 a usage/configuration
error, no store found, or an error reply; 3 the key was not found (``get``) or not written
(``set --nx/--xx``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from blinkstore_gunicorn.cli.discovery import find_stores, store_url
from blinkstore_gunicorn.client import (
    Cache,
    CacheConfigError,
    CacheConnectionError,
    CacheError,
)
from blinkstore_gunicorn.config import human_size
from blinkstore_gunicorn.registry import StoreEntry

__all__ = ["EXIT_NOT_FOUND", "EXIT_UNREACHABLE", "EXIT_USAGE", "common_arguments", "register"]

EXIT_UNREACHABLE: Final = 1
EXIT_USAGE: Final = 2
EXIT_NOT_FOUND: Final = 3

#: What ``blinkstore stats`` shows without ``--all``: the same names on every backend.
#: ``commands`` is INFO's ``total_commands_processed``: hits and misses count reads only (as in
#: Redis), so after writes and ``incr`` alone it is the number that moves.
SUMMARY: Final = (
    "backend",
    "keys",
    "used_memory",
    "memory_limit",
    "hits",
    "misses",
    "hit_ratio",
    "commands",
    "evictions",
    "expirations",
)

Action = Callable[[Cache, argparse.Namespace], int]


def _run(args: argparse.Namespace, action: Action) -> int:
    """Open a cache from the common flags, run ``action``, map errors to exit statuses."""
    command = f"blinkstore {args.command}"
    try:
        with Cache(
            store_url(args.url, args.pid),
            namespace=getattr(args, "namespace", None),
            timeout=args.timeout,
            connect_timeout=args.timeout,
        ) as cache:
            return action(cache, args)
    except CacheConfigError as exc:
        print(f"{command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CacheConnectionError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except (CacheError, TypeError, ValueError) as exc:
        print(f"{command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _print_value(value: Any) -> None:
    if isinstance(value, bytes):
        sys.stdout.flush()
        sys.stdout.buffer.write(value + b"\n")
        sys.stdout.buffer.flush()
    elif isinstance(value, str):
        print(value)
    else:
        print(json.dumps(value, ensure_ascii=False))


def _ping(cache: Cache, args: argparse.Namespace) -> int:
    cache.ping()
    print("PONG")
    return 0


def _get(cache: Cache, args: argparse.Namespace) -> int:
    value = cache.get(args.key, _NOT_FOUND)
    if value is _NOT_FOUND:
        print(f"blinkstore get: {args.key!r} not found", file=sys.stderr)
        return EXIT_NOT_FOUND
    _print_value(value)
    return 0


def _set(cache: Cache, args: argparse.Namespace) -> int:
    value: Any = args.value
    if args.json:
        try:
            value = json.loads(args.value)
        except ValueError as exc:
            print(f"blinkstore set: error: --json: {exc}", file=sys.stderr)
            return EXIT_USAGE
    if not cache.set(args.key, value, args.ttl, nx=args.nx, xx=args.xx):
        print(f"blinkstore set: {args.key!r} not written ({'--nx' if args.nx else '--xx'})")
        return EXIT_NOT_FOUND
    print("OK")
    return 0


def _delete(cache: Cache, args: argparse.Namespace) -> int:
    print(cache.delete_many(args.keys))
    return 0


def _stats(cache: Cache, args: argparse.Namespace) -> int:
    stats = cache.stats()
    stats["hit_ratio"] = _hit_ratio(stats)
    if args.json:
        print(json.dumps(stats, indent=2, sort_keys=True, default=str))
        return 0
    rows = [("url", cache.url.display), *_summary(stats)]
    if args.all:
        rows += [(name, stats[name]) for name in sorted(stats) if name not in SUMMARY]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {'-' if value is None else value}")
    return 0


def _hit_ratio(stats: Mapping[str, Any]) -> float | None:
    hits, misses = stats.get("hits"), stats.get("misses")
    if hits is None or misses is None or hits + misses == 0:
        return None
    return float(hits / (hits + misses))


def _summary(stats: Mapping[str, Any]) -> list[tuple[str, object]]:
    """The :data:`SUMMARY` rows for people: sizes in binary units, the hit ratio explained."""
    used, limit = stats.get("used_memory"), stats.get("memory_limit")
    shown: dict[str, object] = {name: stats.get(name) for name in SUMMARY}
    shown["commands"] = stats.get("total_commands_processed")
    if isinstance(used, int):
        share = f" ({used / limit:.0%} of the limit)" if isinstance(limit, int) and limit else ""
        shown["used_memory"] = human_size(used) + share
    if isinstance(limit, int):
        shown["memory_limit"] = human_size(limit) if limit else "unlimited"
    ratio = stats["hit_ratio"]
    if ratio is not None:
        reads = stats["hits"] + stats["misses"]
        shown["hit_ratio"] = f"{ratio:.1%} of {reads} reads"
    elif stats.get("hits") is not None:
        # After `incr` alone this is where people look: say what is counted.
        shown["hit_ratio"] = "- (no reads yet: hits and misses count reads of keys, not writes)"
    return list(shown.items())


def _ls(args: argparse.Namespace) -> int:
    """Handler of ``blinkstore ls``."""
    try:
        stores = find_stores()
    except CacheConfigError as exc:
        print(f"blinkstore ls: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    now = time.time()
    listed = [_describe(store, now, args.timeout) for store in stores]
    if args.json:
        print(json.dumps(listed, indent=2))
        return 0
    if not listed:
        print("no store of this user is running on this host", file=sys.stderr)
        return 0
    rows = [("PID", "PARENTS", "UPTIME", "KEYS", "MEMORY", "URL")]
    for item in listed:
        memory = "not answering"
        if item["used_memory"] is not None:
            limit = item["memory_limit"]
            memory = f"{human_size(item['used_memory'])} / " + (
                human_size(limit) if limit else "unlimited"
            )
        rows.append(
            (
                str(item["pid"]),
                ",".join(map(str, item["parents"])) or "-",
                _duration(item["uptime_seconds"]),
                "-" if item["keys"] is None else str(item["keys"]),
                memory,
                item["url"],
            )
        )
    # Every column padded to its widest cell but the last (URLs vary most).
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        print("  ".join([*cells, row[-1]]))
    return 0


def _describe(store: StoreEntry, now: float, timeout: float) -> dict[str, Any]:
    stats: dict[str, Any] = {}
    try:
        with Cache(store.client_url, timeout=timeout, connect_timeout=timeout) as cache:
            stats = cache.stats()
    except CacheError:
        pass  # shown as not answering
    return {
        "pid": store.pid,
        "parents": store.ancestors,
        "url": store.url,
        "cwd": store.cwd,
        "uptime_seconds": max(0, int(now - store.started)),
        "keys": stats.get("keys"),
        "used_memory": stats.get("used_memory"),
        "memory_limit": stats.get("memory_limit"),
    }


def _duration(seconds: int) -> str:
    """``42s``, ``5m 07s``, ``3h 02m``, ``2d 4h``."""
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {seconds:02d}s"
    return f"{seconds}s"


class _NotFound:
    __slots__ = ()


_NOT_FOUND: Final = _NotFound()


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0 seconds")
    return value


def _add_timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=2.0,
        metavar="SECONDS",
        help="connect and reply timeout (default 2)",
    )


def common_arguments(parser: argparse.ArgumentParser, namespace: bool = True) -> None:
    parser.add_argument(
        "--url",
        default=None,
        help="where the store is, e.g. unix:///run/app/store.sock (default: $BLINKSTORE_URL, "
        "else the running store of this user)",
    )
    parser.add_argument(
        "--pid",
        type=int,
        default=None,
        help="the running store that is PID or was started by it (a gunicorn master, "
        "blinkstore run), when several run",
    )
    _add_timeout(parser)
    if namespace:
        parser.add_argument("--namespace", default=None, help="key prefix, as Cache(namespace=)")


def _add(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    action: Action,
    help_text: str,
    *,
    namespace: bool = True,
) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    common_arguments(parser, namespace)
    parser.set_defaults(handler=lambda args: _run(args, action))
    return parser


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``ping``, ``get``, ``set``, ``del``, ``stats`` and ``ls`` to ``blinkstore``."""
    _add(subparsers, "ping", _ping, "check that the store answers", namespace=False)

    get = _add(subparsers, "get", _get, "print the value of a key (exit 3 if missing)")
    get.add_argument("key")

    set_ = _add(subparsers, "set", _set, "store a value (a string unless --json)")
    set_.add_argument("key")
    set_.add_argument("value")
    set_.add_argument(
        "--ttl", type=_positive_seconds, default=None, metavar="SECONDS", help="expire after"
    )
    set_.add_argument(
        "--json", action="store_true", help="parse VALUE as JSON (numbers become counters)"
    )
    mode = set_.add_mutually_exclusive_group()
    mode.add_argument("--nx", action="store_true", help="only if the key does not exist")
    mode.add_argument("--xx", action="store_true", help="only if the key exists")

    delete = _add(subparsers, "del", _delete, "delete keys; prints how many existed")
    delete.add_argument("keys", nargs="+", metavar="key")

    stats = _add(subparsers, "stats", _stats, "show the store's counters", namespace=False)
    output = stats.add_mutually_exclusive_group()
    output.add_argument("--all", action="store_true", help="every INFO field too")
    output.add_argument("--json", action="store_true", help="everything, as JSON")

    ls = subparsers.add_parser(
        "ls",
        help="list the running stores of this user on this host",
        description="List the stores of this user running on this host (started by gunicorn, "
        "blinkstore run or blinkstore serve) with their pid, the pids of the processes that "
        "started them, uptime, keys, memory and URL.",
    )
    _add_timeout(ls)
    ls.add_argument("--json", action="store_true", help="as JSON")
    ls.set_defaults(handler=_ls)
