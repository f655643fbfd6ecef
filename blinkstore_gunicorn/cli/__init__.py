"""The ``blinkstore`` command (also ``python -m blinkstore_gunicorn``).

Subcommands live in modules of this package, listed in :data:`SUBCOMMAND_MODULES`. The contract
for such a module (``cli/serve.py``, ``cli/ops.py``, ``cli/run.py``):

* it defines ``register(subparsers: argparse._SubParsersAction) -> None``, which adds its
  parser(s) with ``subparsers.add_parser(name, help=..., description=...)``;
* each parser it adds calls ``parser.set_defaults(handler=func)`` where
  ``func(args: argparse.Namespace) -> int`` runs the subcommand and returns the exit status;
* a wrong value is reported by raising :class:`~blinkstore_gunicorn.config.ConfigError` (or by
  ``parser.error(...)``): ``main`` prints ``blinkstore <cmd>: error: <setting>: <message>`` to
  stderr and returns 2.

A listed module that is not installed (``ModuleNotFoundError`` for that very module) is skipped,
so the command works while parts are still being written or are left out of a build.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from blinkstore_gunicorn._version import __version__
from blinkstore_gunicorn.config import ConfigError

__all__ = ["SUBCOMMAND_MODULES", "build_parser", "main"]

#: Modules (relative to this package) whose ``register(subparsers)`` adds subcommands.
SUBCOMMAND_MODULES = ("serve", "run", "ops", "snapshot")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="blinkstore",
        description="Shared in-memory cache store for multi-worker Python web services.",
    )
    parser.add_argument("--version", action="version", version=f"blinkstore {__version__}")
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        module_name = f"{__name__}.{name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``blinkstore`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(handler(args))
    except ConfigError as exc:
        print(f"blinkstore {args.command}: error: {describe_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def describe_error(exc: ConfigError) -> str:
    """``--memory-limit (BLINKSTORE_MEMORY_LIMIT): invalid size 'x'`` for known settings."""
    from blinkstore_gunicorn.config import SETTINGS, env_name, flag_name

    if any(spec.name == exc.setting for spec in SETTINGS):
        return f"{flag_name(exc.setting)} ({env_name(exc.setting)}): {exc.message}"
    return str(exc)
