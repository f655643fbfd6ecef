"""Numbers read and written as Redis 7.0 does it in C: ``strtod`` (a double), ``strtold`` (on
x86-64 an 80-bit extended ``long double``, which INCRBYFLOAT, HINCRBYFLOAT and the blocking
timeouts compute in) and ``printf("%.17Lf")``, all as glibc does them.

Each Redis rule (``string2d``, ``string2ld``, ``zslParseRange``, SORT's check) is built on
these in ``replies`` or its family; this module knows C, not Redis. Python's ``float()``
accepts other spellings (``1_0``, spaces, ``nan``, no hex) and has no extended type, so the
grammar is scanned here and extended values are kept exact, as ``Fraction``, rounded to the
x87 format after each step. Not a family: it registers no command.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from fractions import Fraction
from typing import NamedTuple

__all__ = [
    "LongDouble",
    "Scan",
    "add_long_double",
    "format_long_double",
    "multiply_long_double",
    "read_to_end",
    "strtod",
    "strtold",
]

#: A long double: exact while finite, else ``inf``, ``-inf`` or ``nan`` as a float.
LongDouble = Fraction | float

# C's strtod after isspace() white space, longest prefix first. A "0x" without hex digits
# reads as "0" and stops at the x, an exponent without digits is not part of the number.
_NUMBER = re.compile(
    rb"[\t\n\x0b\x0c\r ]*(?P<sign>[+-]?)(?:(?P<inf>inf(?:inity)?)|(?P<nan>nan(?:\([0-9a-z_]*\))?)"
    rb"|0x(?P<hex>[0-9a-f]+\.?[0-9a-f]*|\.[0-9a-f]+)(?:p(?P<pexp>[+-]?[0-9]+))?"
    rb"|(?P<dec>[0-9]+\.?[0-9]*|\.[0-9]+)(?:e(?P<eexp>[+-]?[0-9]+))?)",
    re.I,
)
_NONZERO = re.compile(rb"[1-9a-f]", re.I)

# The x87 extended format: a 64-bit significand; the largest finite value is just below
# 2**16384, the smallest subnormal 2**-16445. A double's smallest normal is 2**-1022.
_LD_DIGITS = 64
_LD_TINY = -16445
_LD_LIMIT = 16384
_DBL_MIN_NORMAL = 2.0**-1022
# Exponents this far out of range need no arithmetic: overflow or zero whatever the digits.
_HUGE_EXPONENT = 10**7


class Scan(NamedTuple):
    """What ``strtod``/``strtold`` read: the value, where reading stopped (C's ``endptr``:
    0 when nothing was read) and whether ``errno`` would be ``ERANGE``."""

    value: float
    end: int
    erange: bool


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
    if match["hex"] is not None:
        whole, _, fraction = match["hex"].partition(b".")
        mantissa = _digits_int((whole + fraction).lstrip(b"0"), 16)
        return mantissa, 2, _exponent(match["pexp"]) - 4 * len(fraction)
    whole, _, fraction = match["dec"].partition(b".")
    mantissa = _digits_int((whole + fraction).lstrip(b"0"), 10)
    return mantissa, 10, _exponent(match["eexp"]) - len(fraction)


def strtod(raw: bytes) -> Scan:
    """glibc's ``strtod`` on ``raw`` (read as a C string: it stops at a NUL byte)."""
    match = _NUMBER.match(raw)
    if match is None:
        return Scan(0.0, 0, False)
    negative = match["sign"] == b"-"
    if match["inf"] is not None or match["nan"] is not None:
        value = math.inf if match["inf"] is not None else math.nan
        return Scan(-value if negative else value, match.end(), False)
    body = raw[match.start("sign") + len(match["sign"]) : match.end()]
    try:
        value = float.fromhex(body.decode("ascii")) if match["hex"] is not None else float(body)
    except OverflowError:
        value = math.inf
    nonzero = _NONZERO.search(match["hex"] or match["dec"]) is not None
    erange = nonzero and (math.isinf(value) or value < _DBL_MIN_NORMAL)
    if erange and 0 < value < _DBL_MIN_NORMAL:  # a subnormal: ERANGE only when rounded
        mantissa, radix, exponent = _exact(match)
        erange = Fraction(value) != Fraction(mantissa) * Fraction(radix) ** exponent
    return Scan(-value if negative else value, match.end(), erange)


def read_to_end(raw: bytes, end: int) -> bool:
    """Whether ``strtod`` stopped at the end of the C string (C's ``*endptr == '\\0'``): at
    the end of ``raw`` or at a NUL byte in it, the end for C."""
    return end == len(raw) or raw[end] == 0


def _round_extended(num: int, den: int) -> LongDouble:
    """``num / den`` (both positive) rounded to nearest-even in the x87 format: a Fraction,
    or ``inf`` past the largest finite value."""
    shift = _LD_DIGITS + 2 - (num.bit_length() - den.bit_length())
    quotient, remainder = divmod(num << shift if shift > 0 else num, den << -min(shift, 0))
    exponent = -shift  # the value is (quotient + remainder/den') * 2**exponent
    lowest = max(exponent + quotient.bit_length() - _LD_DIGITS, _LD_TINY)
    drop = lowest - exponent
    mantissa, rest = quotient >> drop, quotient & ((1 << drop) - 1)
    half = 1 << (drop - 1)
    if rest > half or (rest == half and (remainder or mantissa & 1)):
        mantissa += 1
    if mantissa.bit_length() + lowest > _LD_LIMIT:
        return math.inf
    return Fraction(mantissa) * Fraction(2) ** lowest


def _to_extended(mantissa: int, radix: int, exponent: int) -> LongDouble:
    if mantissa == 0:
        return Fraction(0)
    # A rough size in bits first: far out of range, no big numbers are built.
    bits = mantissa.bit_length() + exponent * math.log2(radix)
    if bits > _LD_LIMIT + 64:
        return math.inf
    if bits < _LD_TINY - 64:
        return Fraction(0)
    scale = radix ** abs(exponent)
    if exponent >= 0:
        return _round_extended(mantissa * scale, 1)
    return _round_extended(mantissa, scale)


def strtold(raw: bytes) -> tuple[LongDouble, int, bool]:
    """glibc's ``strtold`` on ``raw`` as a C string: the value, the end and ``ERANGE`` (only
    its overflow and underflow to zero matter to Redis, so that is all it says)."""
    match = _NUMBER.match(raw)
    if match is None:
        return Fraction(0), 0, False
    negative = match["sign"] == b"-"
    value: LongDouble
    if match["inf"] is not None or match["nan"] is not None:
        value = math.inf if match["inf"] is not None else math.nan
        return (-value if negative else value), match.end(), False
    mantissa, radix, exponent = _exact(match)
    value = _to_extended(mantissa, radix, exponent)
    erange = mantissa != 0 and (value == 0 or isinstance(value, float))
    return (-value if negative else value), match.end(), erange


def add_long_double(left: LongDouble, right: LongDouble) -> LongDouble:
    """``left + right`` in long double arithmetic (rounded once, as the x87 adds)."""
    if isinstance(left, float) or isinstance(right, float):
        return float(left) + float(right)  # an infinity or NaN is in it: C's rules
    total = left + right
    if total == 0:
        return Fraction(0)
    rounded = _round_extended(abs(total.numerator), total.denominator)
    return -rounded if total < 0 else rounded


def multiply_long_double(value: LongDouble, factor: int) -> LongDouble:
    """``value * factor`` in long double arithmetic."""
    if isinstance(value, float):
        return value * factor
    product = value * factor
    if product == 0:
        return Fraction(0)
    rounded = _round_extended(abs(product.numerator), product.denominator)
    return -rounded if product < 0 else rounded


def format_long_double(value: Fraction) -> bytes:
    """Redis's ``ld2string(LD_STR_HUMAN)`` of a finite value: ``%.17Lf`` (rounded to nearest,
    ties to even), then trailing zeros and a trailing ``.`` dropped, and ``-0`` written ``0``."""
    scaled = value * 10**17
    units = round(scaled)  # Fraction rounds half to even, as glibc's printf does
    whole, fraction = divmod(abs(units), 10**17)
    text = format(Decimal(whole), "f").encode("ascii")
    if fraction:
        text += b"." + (b"%017d" % fraction).rstrip(b"0")
    return b"-" + text if units < 0 else text
