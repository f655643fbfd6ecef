"""Redis-style glob patterns on bytes (``SCAN ... MATCH``, ``KEYS``).

Syntax, as Redis defines it: ``*`` any run of bytes, ``?`` exactly one byte, ``[abc]`` one of
the listed bytes, ``[^abc]`` none of them, ``[a-z]`` a range (ends in either order), ``\\x``
the byte ``x`` literally (also inside brackets). Like Redis, an unterminated ``[`` runs to the
end of the pattern and a trailing lone ``\\`` is a literal backslash.

The pattern is split at its stars into fixed-length segments, each compiled to a regular
expression without repetition. Matching places the first segment at the start, the last at the
end and every middle one at its leftmost possible position, which is optimal for star-only
globs: the cost is O(len(key) * len(pattern)) with no backtracking blow-up, so a hostile
pattern such as ``*a*a*a*a*a*b`` cannot stall the single-threaded store.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

__all__ = ["compile_pattern", "match_pattern"]

_STAR = 0x2A
_QUESTION = 0x3F
_OPEN = 0x5B
_CLOSE = 0x5D
_CARET = 0x5E
_BACKSLASH = 0x5C
_DASH = 0x2D


def _literal(byte: int) -> bytes:
    return b"\\x%02x" % byte


def _parse_class(pattern: bytes, i: int) -> tuple[bytes, int]:
    """Translate the bracket expression whose ``[`` is at ``pattern[i - 1]``.

    Returns the regex for one byte and the index just past the expression.
    """
    n = len(pattern)
    negate = i < n and pattern[i] == _CARET
    if negate:
        i += 1
    items: list[bytes] = []
    while i < n and pattern[i] != _CLOSE:
        c = pattern[i]
        if c == _BACKSLASH and i + 1 < n:
            items.append(_literal(pattern[i + 1]))
            i += 2
        elif i + 2 < n and pattern[i + 1] == _DASH:
            # Redis takes the byte after '-' as the range end even when it is ']'.
            lo, hi = sorted((c, pattern[i + 2]))
            items.append(_literal(lo) + b"-" + _literal(hi))
            i += 3
        else:
            items.append(_literal(c))
            i += 1
    i += 1  # past ']' (or past the end for an unterminated class, which is harmless)
    if not items:
        # "[]" matches nothing, "[^]" any single byte.
        return (b"." if negate else b"(?!)"), i
    return b"[" + (b"^" if negate else b"") + b"".join(items) + b"]", i


def _segments(pattern: bytes) -> list[tuple[bytes, int]]:
    """Split at the stars into segments (regex matching a fixed length, that length)."""
    segments: list[tuple[bytes, int]] = []
    parts: list[bytes] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == _STAR:
            segments.append((b"".join(parts), len(parts)))
            parts = []
            while i < n and pattern[i] == _STAR:
                i += 1
            continue
        if c == _QUESTION:
            parts.append(b".")
            i += 1
        elif c == _OPEN:
            part, i = _parse_class(pattern, i + 1)
            parts.append(part)
        elif c == _BACKSLASH and i + 1 < n:
            parts.append(_literal(pattern[i + 1]))
            i += 2
        else:
            parts.append(_literal(c))
            i += 1
    segments.append((b"".join(parts), len(parts)))
    return segments


@lru_cache(maxsize=256)
def compile_pattern(pattern: bytes) -> Callable[[bytes], bool]:
    """Return a predicate telling whether a key matches the Redis glob ``pattern``."""
    segments = _segments(pattern)
    if len(segments) <= 2:
        # At most one star: a single regex cannot backtrack more than linearly, and one C
        # call per key is several times faster than the segment walk below.
        whole = re.compile(b".*".join(regex for regex, _ in segments), re.DOTALL).fullmatch
        return lambda key: whole(key) is not None
    compiled = [(re.compile(regex, re.DOTALL), length) for regex, length in segments]

    head, head_len = compiled[0]
    tail, tail_len = compiled[-1]
    middle = [regex for regex, _ in compiled[1:-1]]

    def matches(key: bytes) -> bool:
        tail_start = len(key) - tail_len
        if tail_start < head_len:
            return False
        if head_len and head.match(key) is None:
            return False
        pos = head_len
        for regex in middle:
            found = regex.search(key, pos, tail_start)
            if found is None:
                return False
            pos = found.end()
        return tail.fullmatch(key, tail_start) is not None

    return matches


def match_pattern(pattern: bytes, key: bytes) -> bool:
    """Whether ``key`` matches the Redis glob ``pattern``."""
    return compile_pattern(pattern)(key)
