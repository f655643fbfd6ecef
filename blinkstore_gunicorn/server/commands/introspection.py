"""Server commands (Redis's server.c and config.c): INFO with its sections, CONFIG GET and
COMMAND (what redis-cli and redis-benchmark ask a server about itself)."""

from __future__ import annotations

import os
import platform
import re
import resource
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from blinkstore_gunicorn._version import __version__
from blinkstore_gunicorn.engine import MemoryEngine
from blinkstore_gunicorn.engine.pattern import compile_pattern
from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands.commanddocs import (
    acl_categories,
    command_flags,
    command_names,
    docs_reply,
    find_keys,
    info_reply,
    is_container,
    is_own,
    key_specs,
    redis_arity,
)
from blinkstore_gunicorn.server.commands.registry import COMMANDS, command
from blinkstore_gunicorn.server.commands.replies import (
    ERR_PATTERN_TOO_LONG,
    ERR_SYNTAX,
    INT64_MAX,
    MAX_PATTERN,
    REDIS_COMPAT_VERSION,
    RESP3_NULL,
    as_text,
    help_reply,
    parse_int,
    unknown_subcommand,
    wrong_args,
)

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher

__all__ = ["config_values", "human_bytes", "info_text"]


def human_bytes(n: int) -> str:
    """Redis's ``used_memory_human`` style: ``0B``, ``1.50K``, ``64.00M``."""
    if n < 1024:
        return f"{n}B"
    for unit, size in (("T", 1024**4), ("G", 1024**3), ("M", 1024**2)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n / 1024:.2f}K"


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _info_server(d: Dispatcher) -> list[tuple[str, object]]:
    uptime = d.stats.uptime_seconds
    return [
        ("redis_version", REDIS_COMPAT_VERSION),
        ("blinkstore_version", __version__),
        ("redis_mode", "standalone"),
        ("os", f"{platform.system()} {platform.release()} {platform.machine()}"),
        ("arch_bits", 64 if sys.maxsize > 2**32 else 32),
        ("multiplexing_api", d.stats.event_loop),
        ("python_version", platform.python_version()),
        ("process_id", os.getpid()),
        ("run_id", d.stats.run_id),
        ("tcp_port", d.stats.tcp_port),
        ("uptime_in_seconds", uptime),
        ("uptime_in_days", uptime // 86400),
        ("executable", sys.executable),
        ("config_file", ""),
    ]


def _info_clients(d: Dispatcher) -> list[tuple[str, object]]:
    return [
        ("connected_clients", d.stats.connected),
        ("maxclients", d.stats.max_connections),
        # Requests parked in the store (BS.FETCH waiting for a value, BLINK.LOCK for a lock),
        # as Redis counts BLPOP.
        ("blocked_clients", d.leases.waiting() + d.locks.waiting() + len(d.blocked)),
    ]


def _system_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError):
        return 0


def _info_memory(d: Dispatcher) -> list[tuple[str, object]]:
    used = d.engine.used_bytes
    limit = d.engine.memory_limit
    rss = _rss_bytes()
    # The store samples the peak every 100 ms (as Redis's cron does); INFO adds the present.
    peak = d.stats.used_memory_peak = max(d.stats.used_memory_peak, used)
    system = _system_memory()
    return [
        ("used_memory", used),
        ("used_memory_human", human_bytes(used)),
        ("used_memory_rss", rss),
        ("used_memory_rss_human", human_bytes(rss)),
        ("used_memory_peak", peak),
        ("used_memory_peak_human", human_bytes(peak)),
        ("total_system_memory", system),
        ("total_system_memory_human", human_bytes(system)),
        ("maxmemory", limit),
        ("maxmemory_human", human_bytes(limit)),
        ("maxmemory_policy", "allkeys-lru"),
        # Exporters and the SCRIPT FLUSH checks read it, as from Redis.
        ("number_of_cached_scripts", len(d.scripting.cache) if d.scripting else 0),
        ("mem_clients_normal", d.stats.client_buffers),
        ("maxmemory_clients", d.max_reply_size),
        ("mem_allocator", "pymalloc"),
    ]


def _info_stats(d: Dispatcher) -> list[tuple[str, object]]:
    engine = d.engine.stats()
    # Reads answered from the shared-memory region (included in keyspace_hits/misses).
    region = d.engine.region if isinstance(d.engine, MemoryEngine) else None
    shm_hits, shm_misses = region.reader_counts() if region is not None else (0, 0)
    return [
        ("total_connections_received", d.stats.connections_received),
        ("total_commands_processed", d.stats.commands_processed),
        ("rejected_connections", d.stats.rejected_connections),
        ("evicted_clients", d.stats.evicted_clients),
        ("expired_keys", engine.expirations),
        ("evicted_keys", engine.evictions),
        ("keyspace_hits", engine.hits),
        ("keyspace_misses", engine.misses),
        ("pubsub_channels", d.pubsub.channel_count()),
        ("pubsub_patterns", d.pubsub.numpat()),
        ("client_output_buffer_limit_disconnections", d.pubsub.dropped),
        ("total_error_replies", d.stats.error_replies),
        ("shm_enabled", int(region is not None)),
        ("shm_keyspace_hits", shm_hits),
        ("shm_keyspace_misses", shm_misses),
    ]


def _info_persistence(d: Dispatcher) -> list[tuple[str, object]]:
    if d.snapshots is not None:
        return d.snapshots.info()
    return [("loading", 0), ("rdb_bgsave_in_progress", 0), ("rdb_last_bgsave_status", "ok")]


def _info_replication(d: Dispatcher) -> list[tuple[str, object]]:
    # One store per host, never a replica: dashboards label instances by role.
    return [("role", "master"), ("connected_slaves", 0)]


def _info_cpu(d: Dispatcher) -> list[tuple[str, object]]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return [
        ("used_cpu_sys", f"{own.ru_stime:.6f}"),
        ("used_cpu_user", f"{own.ru_utime:.6f}"),
        ("used_cpu_sys_children", f"{children.ru_stime:.6f}"),
        ("used_cpu_user_children", f"{children.ru_utime:.6f}"),
    ]


def _info_keyspace(d: Dispatcher) -> list[tuple[str, object]]:
    keys = len(d.engine)  # not stats().keys: len() first adopts all of an inheritance
    if not keys:
        return []
    return [("db0", f"keys={keys},expires={d.engine.stats().expires},avg_ttl=0")]


def _info_errorstats(d: Dispatcher) -> list[tuple[str, object]]:
    codes = sorted(d.stats.error_codes.items())  # Redis lists them from a radix tree: sorted
    return [(f"errorstat_{as_text(code)}", f"count={n}") for code, n in codes]


_INFO_SECTIONS: dict[str, Callable[[Dispatcher], list[tuple[str, object]]]] = {
    "server": _info_server,
    "clients": _info_clients,
    "memory": _info_memory,
    "persistence": _info_persistence,
    "stats": _info_stats,
    "replication": _info_replication,
    "cpu": _info_cpu,
    "errorstats": _info_errorstats,
    "keyspace": _info_keyspace,
}


def info_text(d: Dispatcher, sections: Iterable[str] = ()) -> str:
    """The ``INFO`` text (Redis format) for the named sections, all of them by default."""
    wanted = {section.lower() for section in sections}
    if not wanted or wanted & {"all", "everything", "default"}:
        wanted = {*_INFO_SECTIONS, "upstream"}
    blocks = []
    for section, build in _INFO_SECTIONS.items():
        if section in wanted:
            title = "CPU" if section == "cpu" else section.capitalize()
            lines = [f"# {title}", *(f"{k}:{v}" for k, v in build(d))]
            blocks.append("\r\n".join(lines) + "\r\n")
    if d.upstream is not None and "upstream" in wanted:
        lines = ["# Upstream", *(f"{k}:{v}" for k, v in d.upstream.info())]
        blocks.append("\r\n".join(lines) + "\r\n")
    return "\r\n".join(blocks)


def config_values(d: Dispatcher) -> dict[str, str]:
    """What ``CONFIG GET`` reports: enough for redis-benchmark and curious operators."""
    return {
        "save": "",
        "appendonly": "no",
        "maxmemory": str(d.engine.memory_limit),
        "maxmemory-policy": "allkeys-lru",
        "maxmemory-clients": str(d.max_reply_size),
        "maxclients": str(d.stats.max_connections),
        "databases": "1",
        "timeout": "0",
        "port": str(d.stats.tcp_port),
        "unixsocket": d.stats.unix_path,
        "unixsocketperm": "600" if d.stats.unix_path else "0",
        "proto-max-bulk-len": str(d.max_request_size),
        "busy-reply-threshold": str(d.busy_threshold_ms),
        "lua-time-limit": str(d.busy_threshold_ms),
        "hll-sparse-max-bytes": str(d.hll_sparse_max_bytes),
    }


def _set_busy_threshold(d: Dispatcher, raw: bytes) -> str | None:
    """Apply ``busy-reply-threshold`` (ms) to the next scripts; why not, else None."""
    number = parse_int(raw)
    if number is None:
        return "argument couldn't be parsed into an integer"
    if number < 0:
        return f"argument must be between 0 and {INT64_MAX} inclusive"
    d.busy_threshold_ms = number
    if d.scripting is not None:
        d.scripting.busy_threshold = number / 1000
    return None


#: Redis's memory units (``memtoull``): a number of bytes, or of these, case-insensitive.
_MEMORY_UNITS = {
    b"": 1,
    b"b": 1,
    b"k": 1000,
    b"kb": 1024,
    b"m": 1000**2,
    b"mb": 1024**2,
    b"g": 1000**3,
    b"gb": 1024**3,
}
_MEMORY_VALUE = re.compile(rb"([0-9]+)([a-zA-Z]*)")


def _set_hll_sparse_max_bytes(d: Dispatcher, raw: bytes) -> str | None:
    """Apply ``hll-sparse-max-bytes`` (a memory value, as Redis reads it) to the next writes."""
    matched = _MEMORY_VALUE.fullmatch(raw)
    unit = _MEMORY_UNITS.get(matched.group(2).lower()) if matched else None
    if matched is None or unit is None:
        return "argument must be a memory value"
    number = int(matched.group(1)) * unit
    if number >= 1 << 64:  # past an unsigned long long: strtoull fails
        return "argument must be a memory value"
    if number > INT64_MAX:
        return f"argument must be between 0 and {INT64_MAX} inclusive"
    d.hll_sparse_max_bytes = number
    return None


#: What ``CONFIG SET`` can change while the store runs (the rest comes from its settings).
_SETTABLE: dict[str, Callable[[Dispatcher, bytes], str | None]] = {
    "busy-reply-threshold": _set_busy_threshold,
    "lua-time-limit": _set_busy_threshold,
    "hll-sparse-max-bytes": _set_hll_sparse_max_bytes,
}


def _config_set(d: Dispatcher, args: list[bytes]) -> bytes:
    """``CONFIG SET name value [name value...]``: all checked before any is applied."""
    if len(args) < 4 or len(args) % 2:
        return wrong_args("config|set")
    known = config_values(d)
    pairs = list(zip(args[2::2], args[3::2], strict=True))
    seen: set[Callable[[Dispatcher, bytes], str | None]] = set()
    for raw_name, _ in pairs:
        name = as_text(raw_name).lower()
        if name not in known:
            return resp.error(
                f"ERR Unknown option or number of arguments for CONFIG SET - '{as_text(raw_name)}'"
            )
        if name not in _SETTABLE:
            return _set_failed(name, "can't set immutable config")
        if _SETTABLE[name] in seen:  # lua-time-limit is busy-reply-threshold's alias
            return _set_failed(name, "duplicate parameter")
        seen.add(_SETTABLE[name])
    for raw_name, value in pairs:
        name = as_text(raw_name).lower()
        problem = _SETTABLE[name](d, value)
        if problem is not None:
            return _set_failed(name, problem)
    return resp.OK


def _set_failed(name: str, why: str) -> bytes:
    return resp.error(f"ERR CONFIG SET failed (possibly related to argument '{name}') - {why}")


#: Redis 7.0's ``CONFIG HELP``, the subcommands the store has.
_CONFIG_HELP = (
    "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET <pattern>",
    "    Return parameters matching the glob-like <pattern> and their values.",
    "SET <directive> <value>",
    "    Set the configuration <directive> to <value>.",
    "RESETSTAT",
    "    Reset statistics reported by the INFO command.",
    "HELP",
    "    Prints this help.",
)
#: Redis 7.0's ``COMMAND HELP``.
_COMMAND_HELP = (
    "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "(no subcommand)",
    "    Return details about all Redis commands.",
    "COUNT",
    "    Return the total number of commands in this Redis server.",
    "LIST",
    "    Return a list of all commands in this Redis server.",
    "INFO [<command-name> ...]",
    "    Return details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "GETKEYS <full-command>",
    "    Return the keys from a full Redis command.",
    "GETKEYSANDFLAGS <full-command>",
    "    Return the keys and the access flags from a full Redis command.",
    "HELP",
    "    Prints this help.",
)
ERR_INVALID_COMMAND = resp.error("ERR Invalid command specified")
ERR_NO_KEYS = resp.error("ERR The command has no key arguments")
ERR_INVALID_ARITY = resp.error("ERR Invalid number of arguments specified for command")
ERR_BAD_ARGS = resp.error("ERR Invalid arguments specified for command")


@command("command", -1, "loading stale")
def cmd_command(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``COMMAND [COUNT | INFO [name...] | DOCS [name...] | LIST [FILTERBY ...] |
    GETKEYS[ANDFLAGS] cmd arg... | HELP]``: INFO, DOCS and GETKEYS from Redis's own table for the
    commands the store shares with it."""
    if len(args) == 1:
        return _info(list(COMMANDS), c.resp3)
    sub = args[1].upper()
    if sub == b"HELP":
        return help_reply(_COMMAND_HELP) if len(args) == 2 else wrong_args("command|help")
    if sub == b"COUNT" and len(args) == 2:
        return resp.integer(len(COMMANDS))
    if sub == b"INFO":
        return _info([as_text(name).lower() for name in args[2:]] or list(COMMANDS), c.resp3)
    if sub == b"DOCS":
        return docs_reply([as_text(name).lower() for name in args[2:]], c.resp3)
    if sub == b"LIST":
        return _list(args)
    if sub in (b"GETKEYS", b"GETKEYSANDFLAGS"):
        return _getkeys(c, args, with_flags=sub == b"GETKEYSANDFLAGS")
    return unknown_subcommand(args)


def _info(names: list[str], resp3: bool) -> bytes:
    missing = RESP3_NULL if resp3 else resp.NIL  # addReplyNull: a nil bulk string in RESP2
    return resp.array(info_reply(name, resp3) or missing for name in names)


def _list(args: list[bytes]) -> bytes:
    """``COMMAND LIST [FILTERBY MODULE name | ACLCAT category | PATTERN pattern]``: the
    subcommands listed too; the store's own commands are those of the module ``blinkstore``."""
    if len(args) == 2:
        return resp.bulk_array(name.encode() for name in command_names())
    if len(args) != 5 or args[2].upper() != b"FILTERBY":
        return ERR_SYNTAX  # as Redis: one filter, the last three arguments
    kind, value = args[3].upper(), args[4].lower()
    keep: Callable[[str], bool]
    if kind == b"MODULE":
        keep = is_own if value == b"blinkstore" else lambda name: False
    elif kind == b"ACLCAT":
        keep = lambda name: b"@" + value in acl_categories(name)  # noqa: E731
    elif kind == b"PATTERN":
        if len(value) > MAX_PATTERN:
            return ERR_PATTERN_TOO_LONG
        matches = compile_pattern(value)
        keep = lambda name: matches(name.encode())  # noqa: E731
    else:
        return ERR_SYNTAX
    return resp.bulk_array(name.encode() for name in command_names() if keep(name))


def _getkeys(c: Client, args: list[bytes], with_flags: bool) -> bytes:
    """``COMMAND GETKEYS[ANDFLAGS] command arg...``: the keys Redis finds in the arguments."""
    if len(args) < 4:
        return wrong_args(f"command|{as_text(args[1]).lower()}")
    command_args = args[2:]
    name = as_text(command_args[0]).lower()
    spec = COMMANDS.get(name)
    if spec is None:
        return ERR_INVALID_COMMAND
    if is_container(name):
        if len(command_args) < 2:
            return ERR_INVALID_COMMAND
        name = f"{name}|{as_text(command_args[1]).lower()}"
    arity = redis_arity(name)
    if arity is None and "|" in name:
        return ERR_INVALID_COMMAND
    arity = spec.arity if arity is None else arity
    found = _keys_of(name, spec.first_key, spec.last_key, spec.step, command_args)
    if found is not None and not found and not key_specs(name) and not name.startswith("sort"):
        return ERR_NO_KEYS
    count = len(command_args)
    if (arity > 0 and arity != count) or count < -arity:
        return ERR_INVALID_ARITY
    if not found:
        return resp.EMPTY_ARRAY if b"no_mandatory_keys" in command_flags(name) else ERR_BAD_ARGS
    if not with_flags:
        return resp.array(resp.bulk(command_args[at]) for at, _ in found)
    kind = b"~" if c.resp3 else b"*"  # the flags are a set
    return resp.array(
        resp.array(
            [
                resp.bulk(command_args[at]),
                b"%b%d\r\n" % (kind, len(flags)) + b"".join(b"+%b\r\n" % f for f in flags),
            ]
        )
        for at, flags in found
    )


def _keys_of(
    name: str, first: int, last: int, step: int, args: list[bytes]
) -> list[tuple[int, tuple[bytes, ...]]] | None:
    """Key positions and flags: Redis's specifications for its commands, the registered
    range for the store's own."""
    if key_specs(name) is not None:
        return find_keys(name, args)
    if not first:
        return []
    end = len(args) + last if last < 0 else last
    return [(at, ()) for at in range(first, min(end, len(args) - 1) + 1, step)]


def _config_resetstat(d: Dispatcher, args: list[bytes]) -> bytes:
    """``CONFIG RESETSTAT``: zero the counters Redis's ``resetServerStats`` zeroes, of those
    the store keeps (INFO's stats, the region readers' hits and misses included)."""
    if len(args) != 2:
        return wrong_args("config|resetstat")
    stats = d.stats
    stats.connections_received = stats.commands_processed = stats.rejected_connections = 0
    stats.evicted_clients = d.pubsub.dropped = stats.error_replies = 0
    stats.error_codes.clear()
    d.engine.reset_stats()
    if d.snapshots is not None:
        d.snapshots.saves = 0
    return resp.OK


@command("config", -2, "admin")
def cmd_config(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``CONFIG GET pattern [pattern...]``, ``CONFIG RESETSTAT``, ``CONFIG HELP``; ``CONFIG SET``
    for the busy threshold and ``hll-sparse-max-bytes`` only (the other settings come from the
    command line)."""
    if args[1].upper() == b"SET":
        return _config_set(d, args)
    if args[1].upper() == b"RESETSTAT":
        return _config_resetstat(d, args)
    if args[1].upper() == b"HELP":
        return help_reply(_CONFIG_HELP) if len(args) == 2 else wrong_args("config|help")
    if args[1].upper() != b"GET":
        return unknown_subcommand(args)
    if len(args) < 3:
        return wrong_args("config|get")
    if any(len(pattern) > MAX_PATTERN for pattern in args[2:]):
        return ERR_PATTERN_TOO_LONG
    values = config_values(d)
    found: dict[str, str] = {}
    for pattern in args[2:]:
        matches = compile_pattern(pattern.lower())
        for name, value in values.items():
            if matches(name.encode()):
                found[name] = value
    return c.map([(resp.bulk(k.encode()), resp.bulk(v.encode())) for k, v in found.items()])


@command("info", -1, "")
def cmd_info(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``INFO [section...]``: server, clients, memory, stats, keyspace."""
    return resp.bulk(info_text(d, (as_text(arg) for arg in args[1:])).encode())
