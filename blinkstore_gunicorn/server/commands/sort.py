"""``SORT`` and ``SORT_RO`` (Redis's sort.c) over a list, set or sorted set: numeric or
``ALPHA`` order, ``ASC``/``DESC``, ``LIMIT``, ``BY`` and ``GET`` patterns (``*`` replaced by
the element; ``key->field`` reads a hash field; ``GET #`` is the element itself) and
``STORE`` (SORT only) into a list.

Ties and conversions follow Redis: numbers are read as C's ``strtod`` reads them (an empty
string is 0, hex is accepted, trailing text is an error), equal scores fall back to comparing
the elements' bytes, and ``ALPHA`` compares bytes (Redis's ``strcoll`` in the C locale).
With a ``BY`` pattern that has no ``*`` nothing is sorted: lists and sorted sets keep their
order (reversed by ``DESC``), a set is alpha-sorted when stored or sorted by a script.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from blinkstore_gunicorn.engine import WrongType
from blinkstore_gunicorn.engine.hashes import Hash
from blinkstore_gunicorn.engine.lists import List, lstore
from blinkstore_gunicorn.engine.sets import Set
from blinkstore_gunicorn.engine.zsets import ZSet
from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands.floats import read_to_end, strtod
from blinkstore_gunicorn.server.commands.registry import command
from blinkstore_gunicorn.server.commands.replies import (
    ERR_NOT_INT,
    ERR_SYNTAX,
    parse_int,
    reply_too_large,
    stored,
)

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher

__all__: list[str] = []

ERR_NOT_DOUBLE = resp.error("ERR One or more scores can't be converted into double")


def _score(raw: bytes) -> float | None:
    """The number Redis's SORT reads from ``raw`` with ``strtod``, None where it reports a
    conversion error (trailing text, NaN, ``ERANGE``: out of range or a rounded subnormal)."""
    score, end, erange = strtod(raw)
    return None if not read_to_end(raw, end) or erange or math.isnan(score) else score


def _lookup(d: Dispatcher, pattern: bytes, element: bytes) -> bytes | None:
    """Redis's ``lookupKeyByPattern``: ``#`` is the element, else the first ``*`` is replaced
    by it and the string (or ``->field`` of the hash) at that key is read; None when absent."""
    if pattern == b"#":
        return element
    star = pattern.find(b"*")
    if star < 0:
        return None
    arrow = pattern.find(b"->", star + 1)
    field = None
    if arrow >= 0 and arrow + 2 < len(pattern):
        field = pattern[arrow + 2 :]
        pattern = pattern[:arrow]
    value = d.engine.value(pattern[:star] + element + pattern[star + 1 :])
    if field is None:
        return value if isinstance(value, bytes) else None
    return value.fields.get(field) if isinstance(value, Hash) else None


def _elements(d: Dispatcher, key: bytes) -> tuple[list[bytes], bool]:
    """The elements to sort, and whether their order means something (list, sorted set)."""
    value = d.engine.value(key)
    if value is None:
        return [], True
    if isinstance(value, List):
        return list(value.items), True
    if isinstance(value, ZSet):
        return [member for _, member in value.order], True
    if isinstance(value, Set):
        return list(value.members), False
    raise WrongType


def _sort(d: Dispatcher, c: Client, args: list[bytes], read_only: bool) -> bytes:
    desc = alpha = False
    by: bytes | None = None
    gets: list[bytes] = []
    start, count = 0, -1
    destination: bytes | None = None
    i = 2
    while i < len(args):
        option = args[i].upper()
        left = len(args) - i - 1
        if option in (b"ASC", b"DESC"):
            desc = option == b"DESC"
        elif option == b"ALPHA":
            alpha = True
        elif option == b"LIMIT" and left >= 2:
            offset, number = parse_int(args[i + 1]), parse_int(args[i + 2])
            if offset is None or number is None:
                return ERR_NOT_INT
            start, count = offset, number
            i += 2
        elif option == b"STORE" and left >= 1 and not read_only:
            destination = args[i + 1]
            i += 1
        elif option == b"BY" and left >= 1:
            by = args[i + 1]
            i += 1
        elif option == b"GET" and left >= 1:
            gets.append(args[i + 1])
            i += 1
        else:
            return ERR_SYNTAX
        i += 1
    elements, ordered = _elements(d, args[1])
    dont_sort = by is not None and b"*" not in by
    if dont_sort and not ordered and (destination is not None or c.in_script):
        # A stored set, or one a script reads, gets a stable order, as in Redis.
        dont_sort, alpha, by = False, True, None
    # Redis's LIMIT clamping, as an end-exclusive slice.
    size = len(elements)
    start = max(start, 0)
    end = size if count < 0 else min(start + count, size)
    if dont_sort:
        if ordered and desc:
            elements.reverse()
    else:
        sorted_elements = _sorted(d, elements, by, alpha, desc)
        if sorted_elements is None:
            return ERR_NOT_DOUBLE
        elements = sorted_elements
    chosen = elements[start:end]
    if not gets:
        output: list[bytes | None] = list(chosen)
    else:
        output = [_lookup(d, pattern, element) for element in chosen for pattern in gets]
    if destination is None:
        size_error = reply_too_large(sum(len(v) for v in output if v), d.max_reply_size)
        return size_error or c.bulk_array(output)
    values = [b"" if value is None else value for value in output]
    return stored(
        d.blocked, destination, lambda: lstore(d.engine, destination, values), len(values)
    )


def _sorted(
    d: Dispatcher, elements: list[bytes], by: bytes | None, alpha: bool, desc: bool
) -> list[bytes] | None:
    """The elements in SORT's order, None on a number that cannot be read."""
    if alpha:
        if by is None:
            return sorted(elements, reverse=desc)
        # A missing BY value sorts first; equal ones stay in their order.
        weights = [_lookup(d, by, element) for element in elements]
        keyed = sorted(
            range(len(elements)),
            key=lambda n: (weights[n] is not None, weights[n] or b""),
            reverse=desc,
        )
        return [elements[n] for n in keyed]
    scores: list[tuple[float, bytes]] = []
    for element in elements:
        raw = element if by is None else _lookup(d, by, element)
        score = 0.0 if raw is None else _score(raw)
        if score is None:
            return None
        scores.append((score, element))
    scores.sort(reverse=desc)
    return [element for _, element in scores]


@command("sort", -2, "write denyoom movablekeys", (1, 1, 1))
def cmd_sort(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``SORT key [BY pattern] [LIMIT offset count] [GET pattern...] [ASC|DESC] [ALPHA]
    [STORE destination]``: the sorted elements, or how many were stored."""
    return _sort(d, c, args, read_only=False)


@command("sort_ro", -2, "readonly movablekeys", (1, 1, 1))
def cmd_sort_ro(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``SORT_RO key [BY pattern] [LIMIT offset count] [GET pattern...] [ASC|DESC] [ALPHA]``."""
    return _sort(d, c, args, read_only=True)
