"""``blinkstore serve``: run a store in the foreground until SIGTERM/SIGINT.

Its flags are every store setting's (``config_args.py``, shared with ``blinkstore run``), each
also read from its ``BLINKSTORE_*`` variable (flags win).
"""

from __future__ import annotations

import argparse
import sys

from blinkstore_gunicorn.config import unknown_variable_warnings
from blinkstore_gunicorn.config_args import add_store_arguments, settings_from_args

__all__ = ["register", "run_serve", "warn_unknown_variables"]


def warn_unknown_variables(command: str) -> None:
    """Print a warning for each misspelled ``BLINKSTORE_*`` variable of this process."""
    for warning in unknown_variable_warnings():
        print(f"blinkstore {command}: warning: {warning}", file=sys.stderr, flush=True)


def run_serve(args: argparse.Namespace) -> int:
    """Handler of ``blinkstore serve``."""
    from blinkstore_gunicorn.server import serve

    warn_unknown_variables("serve")
    return serve(settings_from_args(args))


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``serve`` to the ``blinkstore`` command."""
    parser = subparsers.add_parser(
        "serve",
        help="run a store in the foreground",
        description="Run a Blink Store / RESP2 compatible cache store until SIGTERM or SIGINT. "
        "Listens on 127.0.0.1:8765 unless --unix or --tcp says otherwise.",
    )
    add_store_arguments(parser)
    parser.set_defaults(handler=run_serve)
