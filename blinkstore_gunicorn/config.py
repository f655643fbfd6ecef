"""Store settings: one table shared by `blinkstore serve`, `BLINKSTORE_*` and gunicorn.

Every setting is a field of :class:`StoreSettings`. Its command-line flag (``--memory-limit``),
its environment variable (``BLINKSTORE_MEMORY_LIMIT``) and its key in :meth:`from_mapping`
(``memory_limit``) are all derived from the field name by :func:`flag_name` and :func:`env_name`,
so there is exactly one table (:data:`SETTINGS`) to keep in sync.

Sizes (``parse_size``) use binary multiples everywhere: ``K``/``KB``/``KiB`` = 1024,
``M``/``MB``/``MiB`` = 1024**2, ``G``/``GB``/``GiB`` = 1024**3, ``T``/``TB``/``TiB`` = 1024**4,
case-insensitive, as memory limits are written for PostgreSQL, nginx, the JVM and Redis's ``mb``.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import logging
import os
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from blinkstore_gunicorn.upstream_url import UPSTREAM_HELP, checked_upstream, parse_upstream

__all__ = [
    "DEFAULT_BUSY_REPLY_THRESHOLD",
    "DEFAULT_TCP_HOST",
    "DEFAULT_TCP_PORT",
    "ENV_PREFIX",
    "NON_SETTING_VARIABLES",
    "SETTINGS",
    "ConfigError",
    "SettingSpec",
    "StoreSettings",
    "TcpAddress",
    "env_name",
    "flag_name",
    "format_size",
    "human_size",
    "parse_size",
    "refuse_as_gunicorn_config",
    "unknown_variable_warnings",
    "without_setting_variables",
]

ENV_PREFIX = "BLINKSTORE_"
DEFAULT_TCP_HOST = "127.0.0.1"
DEFAULT_TCP_PORT = 8765
KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
SHM_MODES = ("on", "off", "checksum")
#: Largest ``shm_max_value``: a block (key + value) must fit one page of the region.
MAX_SHM_VALUE = 128 * KiB
#: Milliseconds a Lua script runs before other clients get BUSY (Redis's default).
DEFAULT_BUSY_REPLY_THRESHOLD = 5000


class ConfigError(ValueError):
    """A setting has a wrong value; ``str()`` names the setting (``memory_limit: ...``)."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting
        self.message = message


# --- sizes ----------------------------------------------------------------------------------

_UNITS = {"": 1, "b": 1} | {
    unit + suffix: size
    for unit, size in (("k", KiB), ("m", MiB), ("g", GiB), ("t", 1024 * GiB))
    for suffix in ("", "b", "ib")
}
_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*\Z")


def parse_size(value: str | int) -> int:
    """Parse ``1048576``, ``64MB``, ``64mb``, ``1GiB``, ``1.5g`` into bytes (binary multiples).

    Raises ``ValueError`` with a readable message for anything else (negative numbers, unknown
    units, fractions of a byte).
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid size {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"invalid size {value}: must not be negative")
        return value
    match = _SIZE_RE.match(value)
    if match is None:
        raise ValueError(
            f"invalid size {value!r}: expected bytes or a number with a unit (64MB, 1GiB)"
        )
    number, unit = match.groups()
    multiplier = _UNITS.get(unit.lower())
    if multiplier is None:
        raise ValueError(f"invalid size {value!r}: unknown unit {unit!r} (use B, KB, MB, GB, TB)")
    try:
        amount = Decimal(number) * multiplier
    except InvalidOperation:  # pragma: no cover - the regex admits only valid decimals
        raise ValueError(f"invalid size {value!r}") from None
    if amount != amount.to_integral_value():
        raise ValueError(f"invalid size {value!r}: not a whole number of bytes")
    return int(amount)


def format_size(n: int) -> str:
    """``67108864`` -> ``"64MiB"``; exact binary multiples only, else plain bytes (``"1000B"``)."""
    for unit, size in (("TiB", 1024 * GiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n}B"


def human_size(n: int) -> str:
    """``1536`` -> ``"1.5 KiB"``, ``67108864`` -> ``"64 MiB"``: for people, not for parsing."""
    if n < KiB:
        return f"{n} B"
    amount = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):  # noqa: B007 - the last unit is the answer
        amount /= 1024
        if amount < 1024:
            break
    return f"{amount:.1f}".removesuffix(".0") + f" {unit}"


# --- addresses ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TcpAddress:
    """A TCP listen address; ``port`` 0 lets the OS pick one (the start log line shows it)."""

    host: str = DEFAULT_TCP_HOST
    port: int = DEFAULT_TCP_PORT

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        """True when every address the host resolves to is a loopback address."""
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            pass
        if self.host == "localhost":
            return True
        try:
            infos = socket.getaddrinfo(self.host, None, type=socket.SOCK_STREAM)
        except OSError:
            return False
        return bool(infos) and all(
            ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]).is_loopback for info in infos
        )


def parse_tcp(value: str) -> TcpAddress:
    """Parse ``HOST:PORT``, ``HOST``, ``:PORT``, ``PORT`` or ``[IPv6]:PORT``."""
    text = value.strip()
    if not text:
        raise ValueError("empty address: expected HOST:PORT")
    host, port_text = DEFAULT_TCP_HOST, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"invalid address {value!r}: missing ']'")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"invalid address {value!r}: expected [IPv6]:PORT")
        port_text = rest[1:]
    elif text.isdigit():
        port_text = text
    elif text.count(":") == 1:
        host_part, port_text = text.split(":")
        host = host_part or DEFAULT_TCP_HOST
    else:  # a name, an IPv4 or a bare IPv6 address
        host = text
    if not port_text:
        return TcpAddress(host, DEFAULT_TCP_PORT)
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"invalid port {port_text!r} in {value!r}: expected 0-65535")
    return TcpAddress(host, int(port_text))


# --- the settings table -----------------------------------------------------------------------


def _parse_count(value: str | int) -> int:
    if isinstance(value, bool):
        raise ValueError(f"invalid number {value!r}")
    if isinstance(value, int):
        number = value
    else:
        text = value.strip()
        if not text.isdigit():
            raise ValueError(f"invalid number {value!r}: expected a whole number")
        number = int(text)
    if number < 1:
        raise ValueError(f"invalid number {value!r}: must be at least 1")
    return number


def _parse_text(value: str | int) -> str:
    return str(value)


def _parse_seconds(value: str | int) -> float:
    if not re.fullmatch(r"\s*(\d+(\.\d*)?|\.\d+)\s*", str(value)):
        raise ValueError(f"invalid duration {value!r}: expected 0 or more seconds (60, 0.5)")
    return float(value)


def _one_of(choices: tuple[str, ...], what: str) -> Callable[[str | int], str]:
    def parse(value: str | int) -> str:
        choice = str(value).strip().lower()
        if choice not in choices:
            raise ValueError(f"invalid {what} {value!r}: expected one of {', '.join(choices)}")
        return choice

    return parse


_parse_log_level, _parse_shm = _one_of(LOG_LEVELS, "log level"), _one_of(SHM_MODES, "mode")
_SNAPSHOT_HELP = (
    "save every key to this file (Redis RDB, mode 0600) on stop, load it on start (empty: off)",
    "with --snapshot: also save in the background this often when something changed"
    " (default 60, 0 = on stop only)",
)


@dataclass(frozen=True)
class SettingSpec:
    """How one :class:`StoreSettings` field is parsed, shown and documented."""

    name: str
    parse: Callable[[str | int], Any]
    help: str
    metavar: str
    secret: bool = False


SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("unix", _parse_text, "listen on this Unix socket path (mode 0600)", "PATH"),
    SettingSpec(
        "tcp",
        lambda v: parse_tcp(str(v)),
        f"listen on TCP HOST:PORT (default {DEFAULT_TCP_HOST}:{DEFAULT_TCP_PORT} when no Unix"
        " socket is given; non-loopback hosts need --password)",
        "HOST:PORT",
    ),
    SettingSpec(
        "memory_limit",
        parse_size,
        "bytes of keys+values+overhead kept before evicting (default 64MiB, 0 = unlimited)",
        "SIZE",
    ),
    SettingSpec("max_key_size", parse_size, "largest key accepted (default 64KiB)", "SIZE"),
    SettingSpec("max_value_size", parse_size, "largest value accepted (default 16MiB)", "SIZE"),
    SettingSpec(
        "max_connections",
        _parse_count,
        "concurrent client connections; extra ones get an error and are closed (default 10000)",
        "N",
    ),
    SettingSpec(
        "max_request_size",
        parse_size,
        "largest single request (default: max value size + max key size + 1MiB, at least 64MiB)",
        "SIZE",
    ),
    SettingSpec(
        "client_buffer_limit",
        parse_size,
        "bytes all connections together may hold in partial requests and unread replies; past"
        " it the connection holding the most is closed (default: half the memory limit, 1GiB"
        " when unlimited, at least max value size + max key size + 1MiB)",
        "SIZE",
    ),
    SettingSpec(
        "pubsub_buffer_limit",
        parse_size,
        "bytes of pub/sub messages one subscriber may leave unread before it is disconnected"
        " (default 8MiB, at least 64KiB)",
        "SIZE",
    ),
    SettingSpec(
        "password",
        _parse_text,
        "require AUTH with this password on every connection (prefer BLINKSTORE_PASSWORD: "
        "flags are visible in ps)",
        "PASSWORD",
        secret=True,
    ),
    SettingSpec(
        "log_level", _parse_log_level, "debug, info, warning, error (default info)", "LEVEL"
    ),
    SettingSpec(
        "shm",
        _parse_shm,
        "shared-memory reads for clients of the Unix socket (Linux): on (default), off, or"
        " checksum (on, and readers verify a crc32 of every value; the default off x86-64)",
        "MODE",
    ),
    SettingSpec(
        "shm_max_value",
        parse_size,
        "largest value published for shared-memory reads; larger ones are read over the socket"
        " (default 64KiB, at most 128KiB)",
        "SIZE",
    ),
    SettingSpec("upstream", checked_upstream, UPSTREAM_HELP, "URL", secret=True),
    SettingSpec("snapshot", _parse_text, _SNAPSHOT_HELP[0], "PATH"),
    SettingSpec("snapshot_interval", _parse_seconds, _SNAPSHOT_HELP[1], "SECONDS"),
    SettingSpec(
        "busy_reply_threshold",
        _parse_count,
        "milliseconds a Lua script runs before other clients get BUSY and SCRIPT KILL may stop"
        " it (Redis's busy-reply-threshold; default 5000)",
        "MS",
    ),
)
_SPECS = {spec.name: spec for spec in SETTINGS}


def flag_name(setting: str) -> str:
    """``memory_limit`` -> ``--memory-limit``."""
    return "--" + setting.replace("_", "-")


def env_name(setting: str) -> str:
    """``memory_limit`` -> ``BLINKSTORE_MEMORY_LIMIT``."""
    return ENV_PREFIX + setting.upper()


@dataclass(frozen=True)
class StoreSettings:
    """Everything ``blinkstore serve`` needs; validated on construction (raises ConfigError)."""

    unix: str | None = None
    tcp: TcpAddress | None = None
    memory_limit: int = 64 * MiB
    max_key_size: int = 64 * KiB
    max_value_size: int = 16 * MiB
    max_connections: int = 10000
    max_request_size: int | None = None
    client_buffer_limit: int | None = None
    pubsub_buffer_limit: int = 8 * MiB
    password: str | None = None
    log_level: str = "info"
    shm: str = "on"
    shm_max_value: int = 64 * KiB
    snapshot: str | None = None
    snapshot_interval: float = 60.0
    upstream: str | None = None
    busy_reply_threshold: int = DEFAULT_BUSY_REPLY_THRESHOLD

    def __post_init__(self) -> None:
        if self.unix is not None and not self.unix.strip():
            raise ConfigError("unix", "empty socket path")
        if self.unix is not None and len(os.fsencode(self.unix)) > 107:
            raise ConfigError("unix", f"socket path too long ({len(self.unix)} > 107 bytes)")
        if self.password is not None and not self.password:
            raise ConfigError("password", "empty password")
        if self.max_key_size < 1:
            raise ConfigError("max_key_size", "must be at least 1 byte")
        if self.max_value_size < 1:
            raise ConfigError("max_value_size", "must be at least 1 byte")
        if self.max_request_size is not None and self.max_request_size < 1024:
            raise ConfigError("max_request_size", "must be at least 1KiB")
        if self.pubsub_buffer_limit < 64 * KiB:
            raise ConfigError("pubsub_buffer_limit", "must be at least 64KiB")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError("log_level", f"expected one of {', '.join(LOG_LEVELS)}")
        if self.shm not in SHM_MODES:
            raise ConfigError("shm", f"expected one of {', '.join(SHM_MODES)}")
        if self.shm_max_value > MAX_SHM_VALUE:
            raise ConfigError("shm_max_value", f"must be at most {format_size(MAX_SHM_VALUE)}")
        if self.client_buffer_limit is not None and self.client_buffer_limit < (
            self.largest_value_request
        ):
            raise ConfigError(
                "client_buffer_limit",
                f"must be at least {format_size(self.largest_value_request)} (max value size +"
                " max key size + 1MiB), or a request storing the largest value could not be"
                " received",
            )
        tcp = self.tcp_address
        if tcp is not None and self.password is None and not tcp.is_loopback:
            raise ConfigError(
                "tcp",
                f"refusing to listen on non-loopback address {tcp} without a password "
                f"(set {env_name('password')} or {flag_name('password')})",
            )

    @property
    def tcp_address(self) -> TcpAddress | None:
        """Where TCP is served: ``tcp`` if set, the default address when no listener is set."""
        if self.tcp is not None:
            return self.tcp
        return TcpAddress() if self.unix is None else None

    @property
    def request_size_limit(self) -> int:
        """``max_request_size``, or its derived default when unset."""
        if self.max_request_size is not None:
            return self.max_request_size
        return max(64 * MiB, self.max_value_size + self.max_key_size + MiB)

    @property
    def largest_value_request(self) -> int:
        """Bytes of a request storing the largest value under the longest key, with room."""
        return self.max_value_size + self.max_key_size + MiB

    @property
    def client_buffer_budget(self) -> int:
        """``client_buffer_limit``, or its default: half the memory limit (1GiB when it is
        unlimited), so data and client buffers stay within 1.5x the limit; at least
        :attr:`largest_value_request`."""
        if self.client_buffer_limit is not None:
            return self.client_buffer_limit
        half = self.memory_limit // 2 if self.memory_limit else GiB
        return max(self.largest_value_request, half)

    @property
    def log_level_number(self) -> int:
        """The ``logging`` level number of ``log_level``."""
        return int(logging.getLevelName(self.log_level.upper()))

    @classmethod
    def from_mapping(cls, values: Mapping[str, str | int | None]) -> StoreSettings:
        """Build settings from field names (``memory_limit``) to raw values (``"256MB"``, 42).

        ``None`` values are skipped (the default applies). Unknown names and bad values raise
        :class:`ConfigError` naming the setting.
        """
        parsed: dict[str, Any] = {}
        for name, raw in values.items():
            spec = _SPECS.get(name)
            if spec is None:
                raise ConfigError(name, f"unknown setting (known: {', '.join(_SPECS)})")
            if raw is None:
                continue
            try:
                parsed[name] = spec.parse(raw)
            except ValueError as exc:
                raise ConfigError(name, str(exc)) from None
        return cls(**parsed)

    @staticmethod
    def env_values(environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """The raw ``BLINKSTORE_*`` values present in ``environ`` (default ``os.environ``)."""
        env = os.environ if environ is None else environ
        return {
            spec.name: env[env_name(spec.name)] for spec in SETTINGS if env_name(spec.name) in env
        }

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        overrides: Mapping[str, str | int | None] | None = None,
    ) -> StoreSettings:
        """Settings from ``BLINKSTORE_*`` variables, with ``overrides`` (e.g. flags) winning."""
        given = {name: raw for name, raw in (overrides or {}).items() if raw is not None}
        return cls.from_mapping({**cls.env_values(environ), **given})

    def _raw_items(self) -> Iterable[tuple[str, str]]:
        for spec in SETTINGS:
            value = getattr(self, spec.name)
            if value is None or value == getattr(_DEFAULTS, spec.name):
                continue
            yield spec.name, str(value)

    def to_env(self) -> dict[str, str]:
        """``BLINKSTORE_*`` variables that reproduce these settings (non-defaults only)."""
        return {env_name(name): value for name, value in self._raw_items()}

    def to_argv(self, *, include_password: bool = False) -> list[str]:
        """``blinkstore serve`` flags reproducing these settings (non-defaults only).

        The password is left out unless asked for: command lines are visible to every local
        user; pass it with :meth:`to_env` instead.
        """
        argv: list[str] = []
        for name, value in self._raw_items():
            if _SPECS[name].secret and not include_password:
                continue
            argv += [flag_name(name), value]
        return argv

    def replace(self, **changes: Any) -> StoreSettings:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def describe(self) -> dict[str, str]:
        """Effective settings as text, password masked (for logs and ``INFO``)."""
        tcp = self.tcp_address
        return {
            "unix": self.unix or "",
            "tcp": str(tcp) if tcp else "",
            "memory_limit": format_size(self.memory_limit) if self.memory_limit else "unlimited",
            "max_key_size": format_size(self.max_key_size),
            "max_value_size": format_size(self.max_value_size),
            "max_connections": str(self.max_connections),
            "max_request_size": format_size(self.request_size_limit),
            "client_buffer_limit": format_size(self.client_buffer_budget),
            "password": "set" if self.password else "not set",
            "log_level": self.log_level,
            "upstream": parse_upstream(self.upstream).display if self.upstream else "",
        }


_DEFAULTS = StoreSettings()


# --- the environment ---------------------------------------------------------------------------

#: ``BLINKSTORE_*`` variables that are not store settings but are read by other parts (clients,
#: gunicorn plugin, Flask extension, store registry, the shared region's ``shm/native.py``,
#: the request parser's ``protocol/resp_hiredis.py``).
NON_SETTING_VARIABLES = frozenset(
    {
        "BLINKSTORE_URL",
        "BLINKSTORE_GUNICORN_CONFIG",
        "BLINKSTORE_RUNTIME_DIR",
        "BLINKSTORE_WRAP_APP",
        "BLINKSTORE_START_TIMEOUT",
        "BLINKSTORE_NAMESPACE",
        "BLINKSTORE_ON_ERROR",
        "BLINKSTORE_REGISTRY_DIR",
        "BLINKSTORE_SIGNING_KEY",
        "BLINKSTORE_NATIVE",
        "BLINKSTORE_HIREDIS",
    }
)
_SETTING_VARIABLES = frozenset(env_name(spec.name) for spec in SETTINGS)


def unknown_variable_warnings(environ: Mapping[str, str] | None = None) -> list[str]:
    """One line per ``BLINKSTORE_*`` variable nobody reads (a typo), naming the closest known.

    A misspelled variable would otherwise be ignored without a word, while a misspelled
    setting in a config file is an error.
    """
    env = os.environ if environ is None else environ
    known = sorted(_SETTING_VARIABLES | NON_SETTING_VARIABLES)
    # Compared without the shared prefix, which would make every name look alike.
    suffixes = {name.removeprefix(ENV_PREFIX): name for name in known}
    warnings = []
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name in known:
            continue
        close = difflib.get_close_matches(name.removeprefix(ENV_PREFIX), suffixes, n=1)
        hint = f"did you mean {suffixes[close[0]]}?" if close else f"known: {', '.join(known)}"
        warnings.append(f"{name} is not a blinkstore setting and is ignored ({hint})")
    return warnings


def without_setting_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without the ``BLINKSTORE_*`` store settings and unknown ``BLINKSTORE_*``
    (for a store started with explicit flags: what it inherits cannot override them)."""
    return {
        name: value
        for name, value in environ.items()
        if not name.startswith(ENV_PREFIX) or name in NON_SETTING_VARIABLES
    }


# --- a near miss of the gunicorn config module -------------------------------------------------


def refuse_as_gunicorn_config(module: str) -> Callable[[Any], None]:
    """An ``on_starting`` hook that stops gunicorn, for a module that is not the config module.

    ``gunicorn -c python:MODULE`` takes the module's globals as its settings and ignores the
    others, so ``-c python:blinkstore_gunicorn.config`` would start gunicorn with no store and
    fail at the first request. A module that defines this hook stops it at start-up instead,
    with gunicorn's ``Error:`` line naming the right module.
    """

    def on_starting(server: Any) -> None:
        raise RuntimeError(
            f"blinkstore: {module} is not a gunicorn config module, and gunicorn started with"
            f" -c python:{module} has no shared store; use -c python:blinkstore_gunicorn.conf"
        )

    return on_starting


#: gunicorn's hook when this module is mistaken for ``blinkstore_gunicorn.conf``.
on_starting = refuse_as_gunicorn_config(__name__)
