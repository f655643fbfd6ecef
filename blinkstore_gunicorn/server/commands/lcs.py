"""``LCS`` (Redis 7's t_string.c): the longest common subsequence of two strings, its length,
or the matching ranges (``IDX``, with ``MINMATCHLEN`` and ``WITHMATCHLEN``).

The same dynamic programme as Redis, so ties resolve the same way and replies match byte for
byte. It costs (len(a) + 1) x (len(b) + 1) table cells of the single-threaded store's time and
memory: past :data:`MAX_CELLS` the command is refused (Redis refuses past 512 MB of table).
"""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING

from blinkstore_gunicorn.engine.typed import Container
from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands.registry import command
from blinkstore_gunicorn.server.commands.replies import ERR_NOT_INT, ERR_SYNTAX, parse_int

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher

__all__: list[str] = []

#: The largest table computed: about 1 s of the store's time and 16 MB.
MAX_CELLS = 4_000_000
ERR_NOT_STRINGS = resp.error("ERR The specified keys must contain string values")
ERR_LEN_AND_IDX = resp.error("ERR If you want both the length and indexes, please just use IDX.")
ERR_TOO_LONG = resp.error(
    f"ERR LCS table exceeds the store's limit of {MAX_CELLS} cells ((len(a)+1) x (len(b)+1))"
)


def _table(a: bytes, b: bytes) -> list[array[int]]:
    """``table[i][j]``: the LCS length of ``a[:i]`` and ``b[:j]``."""
    table = [array("I", bytes(4 * (len(b) + 1)))]
    for i in range(1, len(a) + 1):
        above = table[i - 1]
        row = array("I", above)
        char = a[i - 1]
        for j in range(1, len(b) + 1):
            if char == b[j - 1]:
                row[j] = above[j - 1] + 1
            elif row[j - 1] > above[j]:
                row[j] = row[j - 1]
        table.append(row)
    return table


def _walk(
    a: bytes, b: bytes, table: list[array[int]], minimum: int, with_len: bool
) -> tuple[bytes, list[bytes]]:
    """Redis's walk back from the end: the subsequence and the encoded match ranges."""
    i, j = len(a), len(b)
    result = bytearray()
    ranges: list[bytes] = []
    a_start = len(a)  # no range open
    a_end = b_start = b_end = 0
    while i > 0 and j > 0:
        emit = False
        if a[i - 1] == b[j - 1]:
            result.append(a[i - 1])
            if a_start == len(a):
                a_start = a_end = i - 1
                b_start = b_end = j - 1
            elif a_start == i and b_start == j:
                a_start -= 1
                b_start -= 1
            else:
                emit = True
            if a_start == 0 or b_start == 0:
                emit = True
            i -= 1
            j -= 1
        else:
            if table[i - 1][j] > table[i][j - 1]:
                i -= 1
            else:
                j -= 1
            if a_start != len(a):
                emit = True
        if emit:
            length = a_end - a_start + 1
            if not minimum or length >= minimum:
                spans = [
                    resp.array([resp.integer(a_start), resp.integer(a_end)]),
                    resp.array([resp.integer(b_start), resp.integer(b_end)]),
                ]
                if with_len:
                    spans.append(resp.integer(length))
                ranges.append(resp.array(spans))
            a_start = len(a)
    result.reverse()
    return bytes(result), ranges


@command("lcs", -3, "readonly", (1, 2, 1))
def cmd_lcs(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``LCS key1 key2 [LEN] [IDX] [MINMATCHLEN len] [WITHMATCHLEN]``."""
    values = [d.engine.value(key) for key in args[1:3]]
    if any(isinstance(value, Container) for value in values):
        return ERR_NOT_STRINGS
    a, b = (value if isinstance(value, bytes) else b"" for value in values)
    get_len = get_idx = with_len = False
    minimum = 0
    i = 3
    while i < len(args):
        option = args[i].upper()
        if option == b"IDX":
            get_idx = True
        elif option == b"LEN":
            get_len = True
        elif option == b"WITHMATCHLEN":
            with_len = True
        elif option == b"MINMATCHLEN" and i + 1 < len(args):
            number = parse_int(args[i + 1])
            if number is None:
                return ERR_NOT_INT
            minimum = max(number, 0)
            i += 1
        else:
            return ERR_SYNTAX
        i += 1
    if get_idx and get_len:
        return ERR_LEN_AND_IDX
    if (len(a) + 1) * (len(b) + 1) > MAX_CELLS:
        return ERR_TOO_LONG
    table = _table(a, b)
    length = table[len(a)][len(b)]
    if get_len:
        return resp.integer(length)
    subsequence, ranges = _walk(a, b, table, minimum, with_len)
    if not get_idx:
        return resp.bulk(subsequence)
    matches = [resp.bulk(b"matches"), resp.array(ranges), resp.bulk(b"len"), resp.integer(length)]
    return b"%%2\r\n%b" % b"".join(matches) if c.resp3 else resp.array(matches)
