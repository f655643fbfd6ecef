"""Bitmap commands (Redis's bitops.c): SETBIT, GETBIT, BITCOUNT and BITPOS (``BYTE``/``BIT``
ranges), BITOP AND/OR/XOR/NOT, BITFIELD and BITFIELD_RO.

Bitmaps are strings: every change goes through ``Dispatcher.store``, SET's write path (the
shared-memory region, WATCH, the memory account and eviction). Bit 0 is the most significant
bit of the first byte, as in Redis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from blinkstore_gunicorn.engine import ValueTooLarge
from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands.registry import command
from blinkstore_gunicorn.server.commands.replies import (
    ERR_NOT_INT,
    ERR_SYNTAX,
    ONE,
    ZERO,
    limit_error,
    parse_int,
)

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher

__all__: list[str] = []

#: Redis's ``proto-max-bulk-len`` (512 MB) in bits: the first offset refused.
MAX_BIT_OFFSET = 512 * 1024 * 1024 * 8
ERR_OFFSET = resp.error("ERR bit offset is not an integer or out of range")
ERR_BIT = resp.error("ERR bit is not an integer or out of range")
ERR_BITPOS_BIT = resp.error("ERR The bit argument must be 1 or 0.")
ERR_NOT_SINGLE = resp.error("ERR BITOP NOT must be called with a single source key.")


def _offset(raw: bytes) -> int | None:
    offset = parse_int(raw)
    return None if offset is None or not 0 <= offset < MAX_BIT_OFFSET else offset


@command("setbit", 4, "write denyoom", (1, 1, 1))
def cmd_setbit(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``SETBIT key offset 0|1``: the bit's old value; the string grows zero-padded, its TTL
    is kept."""
    offset = _offset(args[2])
    if offset is None:
        return ERR_OFFSET
    if args[3] not in (b"0", b"1"):
        return ERR_BIT
    old = d.engine.peek(args[1]) or b""
    byte, shift = offset >> 3, 7 - (offset & 7)
    if byte >= d.max_value_size:  # refused before the padded copy is built
        return limit_error(ValueTooLarge(byte + 1, d.max_value_size))
    value = bytearray(old.ljust(byte + 1, b"\0"))
    was = (value[byte] >> shift) & 1
    if byte < len(old) and was == (args[3] == b"1"):
        return ONE if was else ZERO  # no change: no write, as Redis (WATCH stays quiet)
    value[byte] = value[byte] | (1 << shift) if args[3] == b"1" else value[byte] & ~(1 << shift)
    return d.store(args[1], bytes(value), keep_ttl=True) or (ONE if was else ZERO)


@command("getbit", 3, "readonly fast", (1, 1, 1))
def cmd_getbit(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``GETBIT key offset``: 0 past the end of the string or for an absent key."""
    offset = _offset(args[2])
    if offset is None:
        return ERR_OFFSET
    value = d.engine.peek(args[1]) or b""
    byte = offset >> 3
    if byte >= len(value):
        return ZERO
    return ONE if (value[byte] >> (7 - (offset & 7))) & 1 else ZERO


def _bit_span(args: list[bytes], at: int, size: int, end_default: bool) -> tuple[int, int] | bytes:
    """``start [end [BYTE|BIT]]`` from ``args[at:]`` as the inclusive bit range Redis clamps
    them to (empty when start > end), or an error reply. ``end_default``: ``end`` may be left
    out (BITPOS)."""
    start = parse_int(args[at])
    if start is None:
        return ERR_NOT_INT
    in_bits = False
    if len(args) == at + 3:
        unit = args[at + 2].upper()
        if unit not in (b"BIT", b"BYTE"):
            return ERR_SYNTAX
        in_bits = unit == b"BIT"
    total = size * 8 if in_bits else size
    if len(args) > at + 1:
        end = parse_int(args[at + 1])
        if end is None:
            return ERR_NOT_INT
    elif end_default:
        end = total - 1
    else:
        return ERR_SYNTAX
    if start < 0 and end < 0 and start > end:
        return 0, -1
    start = max(start + total if start < 0 else start, 0)
    end = min(max(end + total if end < 0 else end, 0), total - 1)
    if in_bits:
        return start, end
    return start * 8, end * 8 + 7


def _bits(value: bytes, first: int, last: int) -> int:
    """The bits ``first..last`` (inclusive) of ``value`` as an integer, ``first`` the highest."""
    low, high = first >> 3, last >> 3
    number = int.from_bytes(value[low : high + 1], "big")
    return (number >> (7 - (last & 7))) & ((1 << (last - first + 1)) - 1)


@command("bitcount", -2, "readonly", (1, 1, 1))
def cmd_bitcount(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``BITCOUNT key [start end [BYTE|BIT]]``: set bits in the range (bytes by default)."""
    value = d.engine.peek(args[1])
    if value is None:
        return ZERO  # before the range is read, as in Redis
    if len(args) == 2:
        return resp.integer(int.from_bytes(value, "big").bit_count())
    if len(args) not in (4, 5):
        return ERR_SYNTAX
    span = _bit_span(args, 2, len(value), end_default=False)
    if isinstance(span, bytes):
        return span
    first, last = span
    return resp.integer(_bits(value, first, last).bit_count() if first <= last else 0)


@command("bitpos", -3, "readonly", (1, 1, 1))
def cmd_bitpos(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``BITPOS key 0|1 [start [end [BYTE|BIT]]]``: the first bit of that value in the range,
    or -1. Looking for 0 without an ``end``, the string counts as padded with zeros."""
    bit = parse_int(args[2])
    if bit is None:
        return ERR_NOT_INT
    if bit not in (0, 1):
        return ERR_BITPOS_BIT
    value = d.engine.peek(args[1])
    if value is None:
        return resp.integer(-1 if bit else 0)
    if len(args) > 6:
        return ERR_SYNTAX
    if len(args) == 3:
        first, last = 0, len(value) * 8 - 1
    else:
        span = _bit_span(args, 3, len(value), end_default=True)
        if isinstance(span, bytes):
            return span
        first, last = span
    if first > last:
        return resp.integer(-1)
    width = last - first + 1
    bits = _bits(value, first, last)
    if not bit:
        bits ^= (1 << width) - 1
    if bits:
        return resp.integer(first + width - bits.bit_length())
    if bit or len(args) >= 5:
        return resp.integer(-1)
    return resp.integer(((last >> 3) + 1) * 8)  # the first bit past the range: a zero


@command("bitop", -4, "write denyoom", (2, -1, 1))
def cmd_bitop(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``BITOP AND|OR|XOR|NOT destkey key [key...]``: the result's length (absent keys and
    shorter strings count as zero bytes); an empty result deletes ``destkey``."""
    op = args[1].upper()
    if op not in (b"AND", b"OR", b"XOR", b"NOT"):
        return ERR_SYNTAX
    if op == b"NOT" and len(args) != 4:
        return ERR_NOT_SINGLE
    values = [d.engine.peek(key) or b"" for key in args[3:]]
    size = max(map(len, values))
    numbers = [int.from_bytes(value.ljust(size, b"\0"), "big") for value in values]
    result = numbers[0]
    for number in numbers[1:]:
        if op == b"AND":
            result &= number
        elif op == b"OR":
            result |= number
        else:
            result ^= number
    if op == b"NOT":
        result ^= (1 << (8 * size)) - 1
    if not size:
        d.engine.delete(args[2])
        return ZERO
    return d.store(args[2], result.to_bytes(size, "big")) or resp.integer(size)


ERR_BITFIELD_TYPE = resp.error(
    "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but "
    "i64 is."
)
ERR_OVERFLOW_TYPE = resp.error("ERR Invalid OVERFLOW type specified")
ERR_BITFIELD_RO = resp.error("ERR BITFIELD_RO only supports the GET subcommand")
_OVERFLOWS = (b"WRAP", b"SAT", b"FAIL")
_WIDTHS = {b"GET": 2, b"SET": 3, b"INCRBY": 3}  # arguments after the operation's name


class _Op(NamedTuple):
    """One BITFIELD operation, parsed: what, where, how wide, and the overflow in force."""

    name: bytes  # GET, SET or INCRBY
    signed: bool
    bits: int
    offset: int
    number: int  # SET's value, INCRBY's increment
    overflow: bytes  # WRAP, SAT or FAIL


def _wrap64(number: int) -> int:
    """``number`` as C's int64_t arithmetic leaves it (two's complement wrap)."""
    return (number + (1 << 63)) % (1 << 64) - (1 << 63)


#: The field types, ``i1``..``i64`` and ``u1``..``u63`` (Redis's protocol has no room for a
#: u64 above INT64_MAX), as (signed, bits): canonical numbers only, as ``string2ll`` reads them.
_FIELD_TYPES = {b"i%d" % bits: (True, bits) for bits in range(1, 65)} | {
    b"u%d" % bits: (False, bits) for bits in range(1, 64)
}


def _field_type(raw: bytes) -> tuple[bool, int] | None:
    """A field type as (signed, bits), None for anything else. Redis reads the width as a C
    string, so it ends at a NUL byte."""
    return _FIELD_TYPES.get(raw.split(b"\0", 1)[0])


def _strict_int(raw: bytes) -> int | None:
    """An integer as Redis's ``string2ll`` reads it: ``-0`` is refused."""
    return None if raw == b"-0" else parse_int(raw)


def _field_offset(raw: bytes, bits: int) -> int | None:
    """A bit offset, or ``#N`` for the N-th field of that width (the product wraps as C's)."""
    times = raw[:1] == b"#"
    number = _strict_int(raw[1:] if times else raw)
    if number is None:
        return None
    if times:
        number = _wrap64(number * bits)
    return number if 0 <= number < MAX_BIT_OFFSET else None


def _parse_ops(args: list[bytes]) -> list[_Op] | bytes:
    """The operations of ``BITFIELD key ...``, or the first error in them (Redis checks them
    all before it looks at the key)."""
    ops: list[_Op] = []
    overflow, at = b"WRAP", 2
    while at < len(args):
        name, left = args[at].upper(), len(args) - at - 1
        if name == b"OVERFLOW" and left >= 1:
            overflow = args[at + 1].upper()
            if overflow not in _OVERFLOWS:
                return ERR_OVERFLOW_TYPE
            at += 2
            continue
        if name not in _WIDTHS or left < _WIDTHS[name]:
            return ERR_SYNTAX
        kind = _field_type(args[at + 1])
        if kind is None:
            return ERR_BITFIELD_TYPE
        offset = _field_offset(args[at + 2], kind[1])
        if offset is None:
            return ERR_OFFSET
        number = 0
        if name != b"GET":
            parsed = _strict_int(args[at + 3])
            if parsed is None:
                return ERR_NOT_INT
            number = parsed
        ops.append(_Op(name, *kind, offset, number, overflow))
        at += 1 + _WIDTHS[name]
    return ops


def _get_field(value: bytes | bytearray, op: _Op) -> int:
    """The field's integer; bytes past the end of ``value`` read as zeros."""
    last = op.offset + op.bits - 1
    span = bytes(value[op.offset >> 3 : (last >> 3) + 1]).ljust(
        (last >> 3) - (op.offset >> 3) + 1, b"\0"
    )
    number = (int.from_bytes(span, "big") >> (7 - (last & 7))) & ((1 << op.bits) - 1)
    if op.signed and number >> (op.bits - 1):
        number -= 1 << op.bits
    return number


def _set_field(value: bytearray, op: _Op, number: int) -> None:
    """Write the low ``op.bits`` bits of ``number`` at the field (``value`` is long enough)."""
    low, high = op.offset >> 3, (op.offset + op.bits - 1) >> 3
    shift = 7 - ((op.offset + op.bits - 1) & 7)
    mask = ((1 << op.bits) - 1) << shift
    span = int.from_bytes(value[low : high + 1], "big") & ~mask
    value[low : high + 1] = (span | ((number << shift) & mask)).to_bytes(high - low + 1, "big")


def _overflowed(op: _Op, old: int, increment: int) -> tuple[bool, int]:
    """Whether ``old + increment`` leaves the field's range, and the value to store then (by
    WRAP or SAT), as Redis's ``check(Un)signedBitfieldOverflow`` decide it in 64-bit C."""
    bits = op.bits
    if op.signed:
        top = (1 << (bits - 1)) - 1
        bottom = -top - 1
        up, down = _wrap64(top - old), _wrap64(bottom - old)
        wide = bits != 64
        if (
            old > top
            or (wide and increment > up)
            or (old >= 0 and increment > 0 and increment > up)
        ):
            limit = top
        elif (
            old < bottom
            or (wide and increment < down)
            or (old < 0 and increment < 0 and increment < down)
        ):
            limit = bottom
        else:
            return False, _wrap64(old + increment)
        if op.overflow != b"WRAP":
            return True, limit
        wrapped = (old + increment) & ((1 << bits) - 1)
        return True, wrapped - (1 << bits) if wrapped >> (bits - 1) else wrapped
    top = (1 << bits) - 1
    old %= 1 << 64  # C reads a SET value as uint64_t
    if old > top or (increment > 0 and increment > _wrap64(top - old)):
        limit = top
    elif increment < 0 and increment < _wrap64(-old):
        limit = 0
    else:
        return False, old + increment
    return True, (old + increment) & top if op.overflow == b"WRAP" else limit


def _bitfield(d: Dispatcher, c: Client, args: list[bytes], read_only: bool) -> bytes:
    ops = _parse_ops(args)
    if isinstance(ops, bytes):
        return ops
    writes = [op for op in ops if op.name != b"GET"]
    if not writes:
        stored = d.engine.get(args[1])  # a read: a keyspace hit or miss, as Redis counts it
        return resp.array(resp.integer(_get_field(stored or b"", op)) for op in ops)
    if read_only:
        return ERR_BITFIELD_RO
    old = d.engine.peek(args[1])
    size = max((op.offset + op.bits - 1) >> 3 for op in writes) + 1
    if size > d.max_value_size:  # refused before the padded copy is built
        return limit_error(ValueTooLarge(size, d.max_value_size))
    value = bytearray((old or b"").ljust(size, b"\0"))
    # As Redis counts them: a write that did not fail is a change when it changed its field or
    # the string was created or grown for the command's writes.
    grown = old is None or len(value) > len(old)
    changes = 0
    replies = []
    for op in ops:
        current = _get_field(value, op)
        if op.name == b"GET":
            replies.append(resp.integer(current))
            continue
        if op.name == b"INCRBY":
            overflow, new = _overflowed(op, current, op.number)
        else:
            overflow, new = _overflowed(op, op.number, 0)
        if overflow and op.overflow == b"FAIL":
            replies.append(c.nil)
            continue
        replies.append(resp.integer(new if op.name == b"INCRBY" else current))
        changes += grown or new != current
        _set_field(value, op, new)
    written = old is None or value != old
    if written:
        error = d.store(args[1], bytes(value), keep_ttl=True)
        if error is not None:
            return error
    # The store counted one change (WATCH, rdb_changes_since_last_save): Redis counts
    # ``changes``, none when every write failed even though the string was created or padded.
    d.engine.watched.recount(args[1], changes - written)
    return resp.array(replies)


@command("bitfield", -2, "write denyoom", (1, 1, 1))
def cmd_bitfield(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``BITFIELD key [GET type offset] [SET type offset value] [INCRBY type offset increment]
    [OVERFLOW WRAP|SAT|FAIL]...``: integers of 1 to 64 bits (``i64``, ``u63``) at any bit
    offset (``#N``: the N-th field of that width); the string grows zero-padded."""
    return _bitfield(d, c, args, read_only=False)


@command("bitfield_ro", -2, "readonly fast", (1, 1, 1))
def cmd_bitfield_ro(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``BITFIELD_RO key [GET type offset]...``: BITFIELD's reads."""
    return _bitfield(d, c, args, read_only=True)
