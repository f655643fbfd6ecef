"""``blinkstore_*`` settings in a gunicorn config module, and their ``BLINKSTORE_*`` variables.

Every ``blinkstore serve`` option is a variable named after it (``blinkstore_memory_limit =
"256MB"``, ``blinkstore_max_connections = 2000``...), plus three that belong to the plugin:
``blinkstore_wrap_app``, ``blinkstore_start_timeout`` and ``blinkstore_runtime_dir``. Each also
reads its environment variable (``BLINKSTORE_MEMORY_LIMIT``); as with gunicorn's
``GUNICORN_CMD_ARGS``, the environment wins over the config file. An unknown ``blinkstore_*``
variable (a typo) is an error too, so nothing is silently ignored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from blinkstore_gunicorn.config import SETTINGS, ConfigError, StoreSettings, env_name

__all__ = ["PREFIX", "PluginSettings", "PluginSettingsError", "load_settings"]

#: Prefix of the plugin's variables in a gunicorn config module.
PREFIX = "blinkstore_"

# The plugin chooses the socket itself (a private directory per master).
_MANAGED = frozenset({"unix"})
_STORE_NAMES = frozenset(spec.name for spec in SETTINGS) - _MANAGED
_PLUGIN_NAMES = frozenset({"wrap_app", "start_timeout", "runtime_dir"})
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class PluginSettingsError(RuntimeError):
    """A ``blinkstore_*`` variable or ``BLINKSTORE_*`` value is invalid; the message names it.

    A ``RuntimeError`` on purpose: gunicorn prints those as ``Error: <message>`` and exits 1.
    """


@dataclass(frozen=True)
class PluginSettings:
    """Resolved settings: the store's, and the plugin's own."""

    store: StoreSettings
    wrap_app: bool = True
    start_timeout: float = 10.0
    runtime_dir: str | None = None

    def serve_args(self) -> list[str]:
        """``blinkstore serve`` flags for the store (the password travels in the environment)."""
        return self.store.to_argv()


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"expected True or False, got {value!r}")


def _parse_timeout(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a number of seconds, got {value!r}")
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number of seconds, got {value!r}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"must be a positive number of seconds, got {value!r}")
    return seconds


def _parse_dir(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a directory path, got {value!r}")
    return value


_PLUGIN_PARSERS = {
    "wrap_app": _parse_bool,
    "start_timeout": _parse_timeout,
    "runtime_dir": _parse_dir,
}


def load_settings(namespace: Mapping[str, Any], environ: Mapping[str, str]) -> PluginSettings:
    """Resolve the settings from a config module's variables and the environment.

    Raises :class:`PluginSettingsError` naming the variable (``blinkstore_memory_limit``) or the
    environment variable (``BLINKSTORE_MEMORY_LIMIT``) whose value is wrong.
    """
    # name -> (raw value, where it came from)
    raw: dict[str, tuple[Any, str]] = {}
    for key, value in namespace.items():
        if not key.startswith(PREFIX):
            continue
        name = key[len(PREFIX) :]
        if name in _MANAGED:
            raise PluginSettingsError(
                f"{key}: the gunicorn plugin chooses the store's socket itself (a private "
                "directory per master, exported as BLINKSTORE_URL); remove this setting"
            )
        if name not in _STORE_NAMES and name not in _PLUGIN_NAMES:
            known = ", ".join(PREFIX + n for n in sorted(_STORE_NAMES | _PLUGIN_NAMES))
            raise PluginSettingsError(f"{key}: unknown setting (known: {known})")
        if value is not None:
            raw[name] = (value, key)
    for name in _STORE_NAMES | _PLUGIN_NAMES:
        variable = env_name(name)
        if variable in environ:
            raw[name] = (environ[variable], variable)

    plugin: dict[str, Any] = {}
    for name, parse in _PLUGIN_PARSERS.items():
        if name in raw:
            value, origin = raw.pop(name)
            try:
                plugin[name] = parse(value)
            except ValueError as exc:
                raise PluginSettingsError(f"{origin}: {exc}") from None

    store_values: dict[str, str | int | None] = {}
    for name, (value, origin) in raw.items():
        if not isinstance(value, (str, int)):
            raise PluginSettingsError(f"{origin}: expected a string or an integer, got {value!r}")
        store_values[name] = value
    # A socket path the plugin will replace; validation needs a listener to be named.
    store_values["unix"] = "/placeholder/store.sock"
    try:
        store = StoreSettings.from_mapping(store_values)
    except ConfigError as exc:
        origin = raw[exc.setting][1] if exc.setting in raw else PREFIX + exc.setting
        raise PluginSettingsError(f"{origin}: {exc.message}") from None
    return PluginSettings(store=store.replace(unix=None), **plugin)
