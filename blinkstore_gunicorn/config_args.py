"""The store settings as command-line flags: one flag per setting of ``config.SETTINGS``.

Shared by ``blinkstore serve``, ``blinkstore run`` and the supervised store child, so all three
accept the same flags, each also read from its ``BLINKSTORE_*`` variable (flags win).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Collection, Mapping
from typing import Any

from blinkstore_gunicorn.config import SETTINGS, StoreSettings, env_name, flag_name

__all__ = ["add_store_arguments", "settings_from_args"]


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
