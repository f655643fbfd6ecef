"""Numbers read and written as Redis 7.0 does it in C: ``strtod`` (a double), ``strtold`` (on
x86-64 an 80-bit extended ``long double``, which INCRBYFLOAT, HINCRBYFLOAT and the blocking
timeouts compute in) and ``printf("%.17Lf")``, all as glibc does them.

Each Redis rule (``string2d``, ``string2ld``, ``zslParseRange``, SORT's check) is built on
these in ``replies`` or its family; this module knows C, not Redis. Python's ``float()``
accepts other spellings (``1_0``, spaces, ``nan``, no hex) and has no extended type, so the
grammar is scanned here and an extended value is kept as integers, ``mantissa * 2**exponent``,
rounded to the x87 format (64 significant bits) after each step, as the FPU rounds.
Not a family: it registers no command.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from fractions import Fraction
from typing import NamedTuple

__all__ = [
    "Extended",
    "LongDouble",
    "Scan",
    "add_long_double",
    "ceil_long_double",
    "format_long_double",
    "long_double",
    "multiply_long_double",
    "read_to_end",
    "strtod",
    "strtold",
]

# C's strtod after isspace() white space, longest prefix first. A "0x" without hex digits
# reads as "0" and stops at the x, an exponent without digits is not part of the number.
_NUMBER = re.compile(
    rb"[\t\n\x0b\x0c\r ]*(?P<sign>[+-]?)"
    rb"(?:(?P<inf>(?i:inf(?:inity)?))|(?P<nan>(?i:nan)(?:\([0-9A-Za-z_]*\))?)"
    rb"|0[xX](?P<hex>[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP](?P<pexp>[+-]?[0-9]+))?"
    rb"|(?P<dec>[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE](?P<eexp>[+-]?[0-9]+))?)"
)  # case-blind only where C is: a case-blind character class makes long numbers slow


# The x87 extended format: a 64-bit significand; the largest finite value is just below
# 2**16384, the smallest subnormal 2**-16445. A double's smallest normal is 2**-1022.
_LD_DIGITS = 64
_LD_TINY = -16445
_LD_LIMIT = 16384
_DBL_MIN_NORMAL = 2.0**-1022
_SUBNORMAL_DIGITS = 800
# Exponents this far out of range need no arithmetic: overflow or zero whatever the digits.
_HUGE_EXPONENT = 10**7


class Scan(NamedTuple):
    """What ``strtod`` read: the value, where reading stopped (C's ``endptr``: 0 when nothing
    was read) and whether ``errno`` would be ``ERANGE``."""

    value: float
    end: int
    erange: bool


class Extended(NamedTuple):
    """A finite long double, exactly ``mantissa * 2**exponent`` (the mantissa signed)."""

    mantissa: int
    exponent: int


#: A long double: finite, or ``inf``, ``-inf`` or ``nan`` as a float.
LongDouble = Extended | float

_ZERO = Extended(0, 0)


def long_double(number: int) -> Extended:
    """An integer as a long double (exact below 2**64, the callers' range)."""
    return Extended(number, 0)


def read_to_end(raw: bytes, end: int) -> bool:
    """Whether ``strtod`` stopped at the end of the C string (C's ``*endptr == '\\0'``): at
    the end of ``raw`` or at a NUL byte in it, the end for C."""
    return end == len(raw) or raw[end] == 0


def _digits_int(digits: bytes, base: int) -> int:
    # int() refuses decimal text over 4,300 digits (a CPython guard); Decimal has no limit.
    if base == 10 and len(digits) > 4000:
        return int(Decimal(digits.decode("ascii")))
    return int(digits, base) if digits else 0


def _exponent(raw: bytes | None) -> int:
    """An exponent's digits, capped: past the cap the value is inf or 0 regardless."""
    if raw is None:
        return 0
    digits = raw.lstrip(b"+-").lstrip(b"0")
    size = _HUGE_EXPONENT * 10 if len(digits) > 9 else int(digits or b"0")
    return -size if raw.startswith(b"-") else size


def _exact(match: re.Match[bytes]) -> tuple[int, int, int]:
    """A finite match as ``(mantissa, radix, exponent)``: the value is mantissa * radix**exponent
    (radix 2 for hex, whose exponent counts bits; 10 for decimal)."""
    hexadecimal = match["hex"] is not None
    whole, _, fraction = (match["hex"] if hexadecimal else match["dec"]).partition(b".")
    written = whole + fraction
    kept = written.rstrip(b"0")  # trailing zeros move into the exponent: no big number
    shift = len(written) - len(kept) - len(fraction)
    digits = kept.lstrip(b"0")
    if hexadecimal:
        return _digits_int(digits, 16), 2, _exponent(match["pexp"]) + 4 * shift
    return _digits_int(digits, 10), 10, _exponent(match["eexp"]) + shift


def strtod(raw: bytes) -> Scan:
    """glibc's ``strtod`` on ``raw`` (read as a C string: it stops at a NUL byte)."""
    match = _NUMBER.match(raw)
    if match is None:
        return Scan(0.0, 0, False)
    sign = -1.0 if match["sign"] == b"-" else 1.0
    if match["inf"] is not None or match["nan"] is not None:
        return Scan(sign * (math.inf if match["inf"] is not None else math.nan), match.end(), False)
    digits = match["hex"] or match["dec"]
    body = raw[match.start("hex") - 2 if match["hex"] else match.start("dec") : match.end()]
    try:
        value = float.fromhex(body.decode("ascii")) if match["hex"] else float(body)
    except OverflowError:
        value = math.inf
    erange = False
    if value < _DBL_MIN_NORMAL or value == math.inf:
        # Empty: the number is 0, which is no underflow (one strip of one byte is fast).
        significant = digits.replace(b".", b"", 1).strip(b"0")
        erange = bool(significant)
        # A subnormal sets ERANGE only when it was rounded. An exact one has at most 767
        # significant digits: more is inexact, and no big number is built for it.
        if erange and 0 < value < _DBL_MIN_NORMAL and len(significant) <= _SUBNORMAL_DIGITS:
            mantissa, radix, exponent = _exact(match)
            erange = Fraction(value) != Fraction(mantissa) * Fraction(radix) ** exponent
    return Scan(sign * value, match.end(), erange)


def _rounded(quotient: int, exponent: int, sticky: bool, negative: bool) -> LongDouble:
    """``(quotient + a bit more if sticky) * 2**exponent`` (quotient >= 0) rounded to
    nearest-even in the x87 format, or an infinity past its largest value."""
    lowest = max(exponent + quotient.bit_length() - _LD_DIGITS, _LD_TINY)
    drop = lowest - exponent
    if drop > 0:
        mantissa, rest, half = quotient >> drop, quotient & ((1 << drop) - 1), 1 << (drop - 1)
        if rest > half or (rest == half and (sticky or mantissa & 1)):
            mantissa += 1
    else:  # fits as it is (a sum or product of exact values)
        mantissa, lowest = quotient, exponent
    if mantissa.bit_length() + lowest > _LD_LIMIT:
        return -math.inf if negative else math.inf
    return Extended(-mantissa if negative else mantissa, lowest)


def _to_extended(mantissa: int, radix: int, exponent: int, negative: bool) -> LongDouble:
    """``mantissa * radix**exponent`` (mantissa >= 0) rounded to a long double."""
    if mantissa == 0:
        return _ZERO
    # A rough size in bits first: far out of range, no big numbers are built.
    bits = mantissa.bit_length() + exponent * math.log2(radix)
    if bits > _LD_LIMIT + 64:
        return -math.inf if negative else math.inf
    if bits < _LD_TINY - 64:
        return _ZERO
    if radix == 2:
        return _rounded(mantissa, exponent, False, negative)
    if exponent >= 0:
        return _rounded(mantissa * 10**exponent, 0, False, negative)
    divisor = 10**-exponent
    # Enough quotient bits (66 or more) for the rounding bit and the sticky remainder.
    shift = _LD_DIGITS + 2 - (mantissa.bit_length() - divisor.bit_length())
    if shift >= 0:
        quotient, remainder = divmod(mantissa << shift, divisor)
    else:
        quotient, remainder = divmod(mantissa, divisor << -shift)
    return _rounded(quotient, -shift, remainder != 0, negative)


def strtold(raw: bytes) -> tuple[LongDouble, int, bool]:
    """glibc's ``strtold`` on ``raw`` as a C string: the value, the end and ``ERANGE`` (only
    its overflow and underflow to zero matter to Redis, so that is all it says)."""
    match = _NUMBER.match(raw)
    if match is None:
        return _ZERO, 0, False
    negative = match["sign"] == b"-"
    if match["inf"] is not None or match["nan"] is not None:
        value = math.inf if match["inf"] is not None else math.nan
        return (-value if negative else value), match.end(), False
    mantissa, radix, exponent = _exact(match)
    result = _to_extended(mantissa, radix, exponent, negative)
    erange = mantissa != 0 and (isinstance(result, float) or result.mantissa == 0)
    return result, match.end(), erange


def add_long_double(left: LongDouble, right: LongDouble) -> LongDouble:
    """``left + right`` in long double arithmetic (rounded once, as the x87 adds)."""
    if isinstance(left, float) or isinstance(right, float):
        # An infinity or NaN is in it: whatever the finite side, C's rules for those decide.
        return (left if isinstance(left, float) else 0.0) + (
            right if isinstance(right, float) else 0.0
        )
    exponent = min(left.exponent, right.exponent)
    total = (left.mantissa << (left.exponent - exponent)) + (
        right.mantissa << (right.exponent - exponent)
    )
    return _rounded(abs(total), exponent, False, total < 0)


def multiply_long_double(value: LongDouble, factor: int) -> LongDouble:
    """``value * factor`` in long double arithmetic."""
    if isinstance(value, float):
        return value * factor
    product = value.mantissa * factor
    return _rounded(abs(product), value.exponent, False, product < 0)


def ceil_long_double(value: Extended) -> int:
    """C's ``ceill``: the least integer not below ``value``."""
    if value.exponent >= 0:
        return value.mantissa << value.exponent
    return -(-value.mantissa >> -value.exponent)


def format_long_double(value: Extended) -> bytes:
    """Redis's ``ld2string(LD_STR_HUMAN)`` of a finite value: ``%.17Lf`` (rounded to nearest,
    ties to even), then trailing zeros and a trailing ``.`` dropped, and ``-0`` written ``0``."""
    magnitude = abs(value.mantissa)
    if value.exponent >= 0:
        units = (magnitude << value.exponent) * 10**17
    else:
        units, rest = divmod(magnitude * 10**17, 1 << -value.exponent)
        twice, whole = rest << 1, 1 << -value.exponent
        if twice > whole or (twice == whole and units & 1):
            units += 1
    whole_part, fraction = divmod(units, 10**17)
    text = format(Decimal(whole_part), "f").encode("ascii")
    if fraction:
        text += b"." + (b"%017d" % fraction).rstrip(b"0")
    return b"-" + text if value.mantissa < 0 and units else text
