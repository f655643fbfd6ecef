"""``blinkstore serve``: run a store in the foreground until SIGTERM/SIGINT.

:func:`add_store_arguments` and :func:`settings_from_args` are shared with ``blinkstore run``
so both accept the same flags, each also read from its ``BLINKSTORE_*`` variable (flags win).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Collection, Mapping
from typing import Any

from blinkstore_gunicorn.config import (
    SETTINGS,
    StoreSettings,
    env_name,
    flag_name,
    unknown_variable_warnings,
)

__all__ = [
    "add_store_arguments",
    "register",
    "run_serve",
    "settings_from_args",
    "warn_unknown_variables",
]


def add_store_arguments(parser: argparse.ArgumentParser, exclude: Collection[str] = ()) -> None:
    """Add one flag per store setting but ``exclude``; unset flags stay absent so env vars
    can apply."""
    group = parser.add_argument_group("store settings (each also as an environment variable)")
    for spec in SETTINGS:
        if spec.name in exclude:
            continue
        group.add_argument(
            flag_name(spec.name),
            dest=f"store_{spec.name}",
            metavar=spec.metavar,
            default=argparse.SUPPRESS,
            help=f"{spec.help} [{env_name(spec.name)}]",
        )


def settings_from_args(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> StoreSettings:
    """Settings from ``BLINKSTORE_*`` (``environ``, default ``os.environ``) and the flags."""
    flags: dict[str, Any] = {}
    for spec in SETTINGS:
        value = getattr(args, f"store_{spec.name}", None)
        if value is not None:
            flags[spec.name] = value
    return StoreSettings.from_env(os.environ if environ is None else environ, flags)


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
