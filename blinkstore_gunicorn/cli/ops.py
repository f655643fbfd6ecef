"""``blinkstore ping | get | set | del | stats``: talk to a running store from the shell.

Every subcommand takes ``--url`` (default ``$BLINKSTORE_URL``), so it works against the store,
Redis/Valkey or anything else :class:`~blinkstore_gunicorn.client.Cache` accepts.

Exit status: 0 success; 1 the store is unreachable (or timed out); 2 a usage/configuration
error or an error reply; 3 the key was not found (``get``) or not written (``set --nx/--xx``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any, Final

from blinkstore_gunicorn.client import (
    Cache,
    CacheConfigError,
    CacheConnectionError,
    CacheError,
)

__all__ = ["EXIT_NOT_FOUND", "EXIT_UNREACHABLE", "EXIT_USAGE", "register"]

EXIT_UNREACHABLE: Final = 1
EXIT_USAGE: Final = 2
EXIT_NOT_FOUND: Final = 3

#: What ``blinkstore stats`` shows without ``--all``: the same names on every backend.
SUMMARY: Final = (
    "backend",
    "keys",
    "used_memory",
    "memory_limit",
    "hits",
    "misses",
    "evictions",
    "expirations",
)

Action = Callable[[Cache, argparse.Namespace], int]


def _run(args: argparse.Namespace, action: Action) -> int:
    """Open a cache from the common flags, run ``action``, map errors to exit statuses."""
    command = f"blinkstore {args.command}"
    try:
        with Cache(
            args.url,
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
    if args.json:
        print(json.dumps(stats, indent=2, sort_keys=True, default=str))
        return 0
    names = list(SUMMARY)
    if args.all:
        names += sorted(name for name in stats if name not in SUMMARY)
    width = max(len(name) for name in names)
    for name in names:
        value = stats.get(name)
        shown = "-" if value is None else value
        print(f"{name:<{width}}  {shown}")
    return 0


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


def _common(parser: argparse.ArgumentParser, namespace: bool = True) -> None:
    parser.add_argument(
        "--url",
        default=None,
        help="where the store is (default: $BLINKSTORE_URL), e.g. unix:///run/app/store.sock",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=2.0,
        metavar="SECONDS",
        help="connect and reply timeout (default 2)",
    )
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
    _common(parser, namespace)
    parser.set_defaults(handler=lambda args: _run(args, action))
    return parser


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``ping``, ``get``, ``set``, ``del`` and ``stats`` to the ``blinkstore`` command."""
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
