"""What every command family shares: error replies, argument parsing, Redis's wordings.

Error replies use Redis's wording wherever Redis has one, because clients match on it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from blinkstore_gunicorn.engine import EngineError, EntryTooLarge, KeyTooLarge
from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.blocking import BlockedPops
from blinkstore_gunicorn.server.commands.floats import (
    LongDouble,
    add_long_double,
    ceil_long_double,
    format_long_double,
    long_double,
    multiply_long_double,
    strtod,
    strtold,
)

__all__ = [
    "ERR_NAN",
    "ERR_NOT_FLOAT",
    "ERR_NOT_INT",
    "ERR_OVERFLOW",
    "ERR_PATTERN_TOO_LONG",
    "ERR_SYNTAX",
    "INT64_MAX",
    "INT64_MIN",
    "MAX_PATTERN",
    "NOAUTH",
    "ONE",
    "REDIS_COMPAT_VERSION",
    "RESP3_NULL",
    "ZERO",
    "ScanOptions",
    "as_text",
    "bulk_items",
    "client_name_error",
    "help_reply",
    "incremented",
    "invalid_expire",
    "limit_error",
    "parse_float",
    "parse_int",
    "parse_long_double",
    "parse_scan",
    "parse_timeout",
    "reply_too_large",
    "stored",
    "subcommand_syntax",
    "unknown_command",
    "unknown_subcommand",
    "wrong_args",
]

#: The Redis version whose commands, replies and error texts the store follows: the one its
#: compatibility tests run against. Reported as ``INFO``'s ``redis_version``, by ``HELLO`` and
#: as Lua's ``redis.REDIS_VERSION``, because clients gate features on it (``blinkstore_version``
#: is the store's own). Not 7.2 or later: their additions (``CLIENT NO-TOUCH``, ``WAITAOF``,
#: ``XREAD +``...) are not here, and a client told 7.2 would send them.
REDIS_COMPAT_VERSION = "7.0.15"

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)

ERR_SYNTAX = resp.error("ERR syntax error")
ERR_NOT_INT = resp.error("ERR value is not an integer or out of range")
#: Longest glob pattern accepted (KEYS, SCAN MATCH, CONFIG GET): compiling one costs about
#: 6 us per byte of the single-threaded store's time, and compiled patterns are cached.
MAX_PATTERN = 4096
ERR_PATTERN_TOO_LONG = resp.error(f"ERR pattern too long (max {MAX_PATTERN} bytes)")
NOAUTH = resp.error("NOAUTH Authentication required.")
RESP3_NULL = b"_\r\n"
ZERO = resp.integer(0)
ONE = resp.integer(1)

_INT_RE = re.compile(rb"-?(?:0|[1-9][0-9]*)\Z")

ERR_NOT_FLOAT = resp.error("ERR value is not a valid float")
ERR_OVERFLOW = resp.error("ERR increment or decrement would overflow")
ERR_NAN = resp.error("ERR increment would produce NaN or Infinity")

#: Redis's ``MAX_LONG_DOUBLE_CHARS``: ``string2ld`` refuses text of this length or more.
_LONG_DOUBLE_TEXT = 5 * 1024


def parse_float(raw: bytes) -> float | None:
    """Redis's ``string2d`` (``getDoubleFromObject``: ZADD scores, ZINCRBY, WEIGHTS): all of
    ``raw`` read by C's ``strtod`` (hex and ``inf`` spellings too), without leading white
    space, NaN, or a value out of a double's range (``1e400``; ``1e-400``: underflow to 0)."""
    if raw.isdigit() and len(raw) < 300:  # an integer (ZADD's usual score): always in range
        return float(raw)
    value, end, erange = strtod(raw)
    if not raw or end != len(raw) or raw[:1].isspace() or math.isnan(value):
        return None
    if erange and (value == 0 or math.isinf(value)):
        return None
    return value


def parse_long_double(raw: bytes) -> LongDouble | None:
    """Redis's ``string2ld`` (``getLongDoubleFromObject``: INCRBYFLOAT, HINCRBYFLOAT, the
    blocking commands' timeouts): ``parse_float``'s rule read by ``strtold``, whose range is
    wider (``1e400`` is finite), on text shorter than 5,120 bytes."""
    if raw.isdigit() and len(raw) < 19:  # below 2**63: exact in 64 bits
        return long_double(int(raw))
    if not raw or len(raw) >= _LONG_DOUBLE_TEXT or raw[:1].isspace():
        return None
    value, end, erange = strtold(raw)
    if end != len(raw) or erange or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def incremented(current: LongDouble, delta: LongDouble) -> bytes | None:
    """INCRBYFLOAT's and HINCRBYFLOAT's new value: the long double sum written by Redis's
    ``ld2string`` (``%.17Lf``, trailing zeros dropped: ``0.1 + 0.2`` is ``0.3``, ``1e20`` is
    ``100000000000000000000``); None when the sum is NaN or infinite."""
    total = add_long_double(current, delta)
    return None if isinstance(total, float) else format_long_double(total)


def parse_int(raw: bytes) -> int | None:
    """Strict signed 64-bit integer like Redis's ``string2ll``: no spaces, ``+`` or ``_``."""
    if len(raw) > 20 or _INT_RE.match(raw) is None:
        return None
    number = int(raw)
    if number > INT64_MAX or number < INT64_MIN:
        return None
    return number


ERR_TIMEOUT = resp.error("ERR timeout is not a float or out of range")
ERR_TIMEOUT_NEGATIVE = resp.error("ERR timeout is negative")


def parse_timeout(raw: bytes, now_ms: int) -> int | bytes | None:
    """A blocking command's timeout in seconds as an absolute deadline (``0``: None, no
    limit), or Redis's error reply."""
    seconds = parse_long_double(raw)
    if seconds is None:
        return ERR_TIMEOUT
    # Redis takes ceill(seconds * 1000) as a long long: an infinity or a value past the
    # 64-bit range becomes LLONG_MIN, "negative"; -0.5 ms rounds up to 0, no limit.
    ms = multiply_long_double(seconds, 1000)
    rounded = INT64_MIN if isinstance(ms, float) else ceil_long_double(ms)
    if rounded < 0 or rounded > INT64_MAX:
        return ERR_TIMEOUT_NEGATIVE
    if rounded == 0 or rounded > INT64_MAX - now_ms:
        return None  # past the end of time Redis's deadline wraps round and never comes
    return now_ms + rounded


def reply_too_large(size: int, limit: int) -> bytes | None:
    """The error for a reply of ``size`` bytes over the client buffer ``limit``, else None."""
    if size <= limit:
        return None
    return resp.error(f"ERR reply too large: {size} bytes exceeds the client buffer limit {limit}")


def bulk_items(items: list[bytes], width: int) -> bytes:
    """``resp.bulk_list(items)`` (LRANGE, LPOP with a count...), where ``width`` is the length
    every item has (-1: they may differ, as ``List.width`` says). Items of one width are one
    ``join`` whose separator ends an item and heads the next: no per-item work in Python."""
    if width < 0 or not items:
        return resp.bulk_list(items)
    return b"*%d\r\n$%d\r\n%b\r\n" % (len(items), width, (b"\r\n$%d\r\n" % width).join(items))


@dataclass(slots=True)
class ScanOptions:
    """The options of SCAN, HSCAN, SSCAN: ``MATCH pattern``, ``COUNT n``, ``TYPE t``."""

    match: bytes | None = None
    count: int = 10
    kind: bytes | None = None


def parse_scan(args: list[bytes], start: int, with_type: bool) -> ScanOptions | bytes:
    """The options from ``args[start:]`` (``TYPE`` only for SCAN), or an error reply."""
    options = ScanOptions()
    i = start
    while i < len(args):
        option = args[i].upper()
        if i + 1 >= len(args):
            return ERR_SYNTAX
        if option == b"MATCH":
            options.match = args[i + 1]
            if len(options.match) > MAX_PATTERN:
                return ERR_PATTERN_TOO_LONG
        elif option == b"COUNT":
            number = parse_int(args[i + 1])
            if number is None:
                return ERR_NOT_INT
            if number < 1:
                return ERR_SYNTAX
            options.count = number
        elif option == b"TYPE" and with_type:
            options.kind = args[i + 1].lower()
        else:
            return ERR_SYNTAX
        i += 2
    return options


def as_text(raw: bytes) -> str:
    """A command argument as text for an error message (undecodable bytes replaced)."""
    return raw.decode("utf-8", "replace")


def help_reply(lines: tuple[str, ...]) -> bytes:
    """A HELP subcommand's reply: its lines (Redis's words) as status replies."""
    return resp.array(resp.simple(line) for line in lines)


def wrong_args(name: str) -> bytes:
    """``-ERR wrong number of arguments for 'get' command``."""
    return resp.error(f"ERR wrong number of arguments for '{name.lower()}' command")


def limit_error(exc: EngineError) -> bytes:
    """``-ERR value too large: value of N bytes exceeds max value size M`` (or key...)."""
    what = "key" if isinstance(exc, KeyTooLarge) else "value"
    return resp.error(f"ERR {what} too large: {exc}")


def stored(blocked: BlockedPops, destination: bytes, write: Callable[[], None], size: int) -> bytes:
    """A ``*STORE`` command's end (ZUNIONSTORE, SORT ... STORE...): run ``write``, which makes
    ``destination`` a new value of ``size`` elements (0: deletes it); answer ``size``, or the
    size-limit error (nothing changed). Callers parked on the destination are served, as Redis
    signals the key ready."""
    try:
        write()
    except (EntryTooLarge, KeyTooLarge) as exc:
        return limit_error(exc)
    if size and blocked:
        blocked.ready(destination)
    return resp.integer(size)


def invalid_expire(name: str) -> bytes:
    """``-ERR invalid expire time in 'set' command``."""
    return resp.error(f"ERR invalid expire time in '{name}' command")


def unknown_command(args: list[bytes]) -> bytes:
    """Redis's wording, truncated the way Redis truncates it (about 128 characters of args)."""
    shown = ""
    for arg in args[1:]:
        if len(shown) >= 128:
            break
        shown += f"'{as_text(arg)[: 128 - len(shown)]}' "
    return resp.error(
        f"ERR unknown command '{as_text(args[0])[:128]}', with args beginning with: {shown}"
    )


def unknown_subcommand(args: list[bytes]) -> bytes:
    """``-ERR unknown subcommand 'x'. Try CLIENT HELP.``."""
    return resp.error(
        f"ERR unknown subcommand '{as_text(args[1])[:128]}'. Try {as_text(args[0]).upper()} HELP."
    )


def subcommand_syntax(args: list[bytes]) -> bytes:
    """Redis's ``addReplySubcommandSyntaxError``."""
    return resp.error(
        f"ERR unknown subcommand or wrong number of arguments for '{as_text(args[1])[:128]}'. "
        f"Try {as_text(args[0]).upper()} HELP."
    )


def client_name_error(name: bytes) -> bytes | None:
    """Redis's error for a client name with spaces or special characters (CLIENT SETNAME,
    HELLO SETNAME), else None."""
    if any(byte < 0x21 or byte > 0x7E for byte in name):
        return resp.error("ERR Client names cannot contain spaces, newlines or special characters.")
    return None
