"""Sorted-set commands (Redis's t_zset.c): ZADD, ZINCRBY, ZREM, ZCARD, ZSCORE, ZMSCORE, ZRANK,
ZREVRANK, ZCOUNT, ZLEXCOUNT, ZRANGE (by rank, BYSCORE or BYLEX, REV, LIMIT, WITHSCORES),
ZRANGESTORE, ZRANGEBYSCORE, ZRANGEBYLEX, ZREVRANGE, ZREVRANGEBYSCORE, ZREVRANGEBYLEX,
ZREMRANGEBYSCORE, ZREMRANGEBYLEX, ZREMRANGEBYRANK, ZPOPMIN, ZPOPMAX, ZSCAN, and the blocking
BZPOPMIN and BZPOPMAX (parked in the store until a ZADD serves them).

The data and its memory account are ``engine/zsets.py``'s; this module parses, checks and
encodes. Scores are doubles, written as Redis 7.0 writes them (``%.17g``; a RESP3 double).
Lex ranges (``BYLEX``, ``ZRANGEBYLEX``...) assume equal scores, as Redis documents.
"""

from __future__ import annotations

import bisect
import math
from typing import TYPE_CHECKING

from blinkstore_gunicorn.engine import EntryTooLarge, KeyTooLarge
from blinkstore_gunicorn.engine.pattern import compile_pattern
from blinkstore_gunicorn.engine.zsets import ZSet, zadd, zrem, zrem_range
from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands.floats import read_to_end, strtod
from blinkstore_gunicorn.server.commands.registry import DEFERRED, command
from blinkstore_gunicorn.server.commands.replies import (
    ERR_NOT_FLOAT,
    ERR_NOT_INT,
    ERR_SYNTAX,
    RESP3_NULL,
    limit_error,
    parse_float,
    parse_int,
    parse_scan,
    parse_timeout,
    reply_too_large,
)
from blinkstore_gunicorn.server.commands.zreply import (
    double,
    entries_reply,
    score_text,
    stored_zset,
    zset_of,
)

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher

__all__: list[str] = []

ERR_NX_XX = resp.error("ERR XX and NX options at the same time are not compatible")
ERR_GT_LT_NX = resp.error("ERR GT, LT, and/or NX options at the same time are not compatible")
ERR_INCR_PAIR = resp.error("ERR INCR option supports a single increment-element pair")
ERR_NAN_SCORE = resp.error("ERR resulting score is not a number (NaN)")
ERR_MIN_MAX = resp.error("ERR min or max is not a float")
ERR_LEX_RANGE = resp.error("ERR min or max not valid string range item")
ERR_POSITIVE = resp.error("ERR value is out of range, must be positive")
ERR_INVALID_CURSOR = resp.error("ERR invalid cursor")


def _scan_score(score: float) -> bytes:
    """ZSCAN's spelling (Redis's ``d2string``): an integral score as an integer."""
    if score.is_integer() and abs(score) < 2**63:
        return b"%d" % score
    return score_text(score)


#: ZADD's flags, which come before the pairs; none of them is a score.
_ZADD_FLAGS = frozenset((b"NX", b"XX", b"GT", b"LT", b"CH", b"INCR"))


@command("zadd", -4, "write denyoom fast", (1, 1, 1))
def cmd_zadd(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member...]``: how many
    members are new (with CH: new or changed; with INCR: the new score)."""
    if len(args) % 2 or args[2].upper() in _ZADD_FLAGS:
        return _zadd_with_flags(d, c, args)
    # The common call, pairs and no flag: no flag logic, no member chosen twice to track,
    # and one lookup of the key when no member is new.
    pairs = _pairs(d, args[2:])
    if isinstance(pairs, bytes):
        return pairs
    try:
        added = zadd(d.engine, args[1], pairs)
    except (EntryTooLarge, KeyTooLarge) as exc:
        return limit_error(exc)
    if added and d.blocked:
        d.blocked.ready(args[1])
    return resp.integer(added)


def _pairs(d: Dispatcher, rest: list[bytes]) -> list[tuple[float, bytes]] | bytes:
    """ZADD's ``score member...`` as ``(score, member)`` pairs, or the first one's error."""
    pairs: list[tuple[float, bytes]] = []
    for raw, member in zip(rest[::2], rest[1::2], strict=True):
        score = parse_float(raw)
        if score is None:
            return ERR_NOT_FLOAT
        error = d.fits(member, b"")
        if error is not None:
            return error
        pairs.append((score + 0.0, member))  # -0.0 is 0, as Redis stores it
    return pairs


def _zadd_with_flags(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """ZADD with flags, or an odd count: the flags' rules, then each member's."""
    flags: set[bytes] = set()
    i = 2
    while i < len(args) and args[i].upper() in _ZADD_FLAGS:
        flags.add(args[i].upper())
        i += 1
    rest = args[i:]
    if not rest or len(rest) % 2:
        return ERR_SYNTAX
    if {b"NX", b"XX"} <= flags:
        return ERR_NX_XX
    if len(flags & {b"GT", b"LT", b"NX"}) > 1:
        return ERR_GT_LT_NX
    incr = b"INCR" in flags
    if incr and len(rest) != 2:
        return ERR_INCR_PAIR
    pairs = _pairs(d, rest)
    if isinstance(pairs, bytes):
        return pairs
    scores = zset_of(d, args[1]).scores
    chosen: dict[bytes, float] = {}
    added = changed = 0
    for score, member in pairs:
        old = chosen.get(member, scores.get(member))
        if (b"NX" in flags and old is not None) or (b"XX" in flags and old is None):
            if incr:
                return c.nil
            continue
        new = score + old if incr and old is not None else score
        if math.isnan(new):
            return ERR_NAN_SCORE
        if old is not None and ((b"GT" in flags and new <= old) or (b"LT" in flags and new >= old)):
            if incr:
                return c.nil
            continue
        if old is None:
            added += 1
        elif new != old:
            changed += 1
        chosen[member] = new
    if chosen:
        try:
            zadd(d.engine, args[1], [(score, member) for member, score in chosen.items()])
        except (EntryTooLarge, KeyTooLarge) as exc:
            return limit_error(exc)
        if d.blocked:
            d.blocked.ready(args[1])
    if incr:
        new = chosen[pairs[0][1]]
        if added and new == 0 and rest[0].startswith(b"-"):
            new = -0.0  # Redis answers a new member's -0 as it read it, though it stores 0
        return double(c, new)
    return resp.integer(added + changed if b"CH" in flags else added)


@command("zincrby", 4, "write denyoom fast", (1, 1, 1))
def cmd_zincrby(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``ZINCRBY key increment member``: the new score."""
    return cmd_zadd(d, c, [args[0], args[1], b"INCR", args[2], args[3]])


@command("zrem", -3, "write fast", (1, 1, 1))
def cmd_zrem(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``ZREM key member [member...]``: how many were removed."""
    return resp.integer(zrem(d.engine, args[1], args[2:]))


@command("zcard", 2, "readonly fast", (1, 1, 1))
def cmd_zcard(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``ZCARD key``."""
    return resp.integer(len(zset_of(d, args[1])))


@command("zscore", 3, "readonly fast", (1, 1, 1))
def cmd_zscore(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``ZSCORE key member``: the score, or nil."""
    score = zset_of(d, args[1]).scores.get(args[2])
    return c.nil if score is None else double(c, score)


@command("zmscore", -3, "readonly fast", (1, 1, 1))
def cmd_zmscore(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``ZMSCORE key member [member...]``: a score or nil for each."""
    scores = zset_of(d, args[1]).scores
    found = [scores.get(member) for member in args[2:]]
    return resp.array(c.nil if score is None else double(c, score) for score in found)


def _rank(d: Dispatcher, c: Client, args: list[bytes], reverse: bool) -> bytes:
    found = zset_of(d, args[1])
    rank = found.rank(args[2])
    if rank is None:
        return c.nil
    return resp.integer(len(found) - 1 - rank if reverse else rank)


@command("zrank", 3, "readonly fast", (1, 1, 1))
def cmd_zrank(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``ZRANK key member``: its position by ascending score, or nil."""
    return _rank(d, c, args, reverse=False)


@command("zrevrank", 3, "readonly fast", (1, 1, 1))
def cmd_zrevrank(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``ZREVRANK key member``: its position by descending score, or nil."""
    return _rank(d, c, args, reverse=True)


def _bound(raw: bytes) -> tuple[float, bool] | None:
    """A score bound: the score and whether it is exclusive (``(1.5``), None if invalid.
    Redis's ``zslParseRange`` reads it with a bare ``strtod``, so white space before the
    number, an empty bound (0), a NUL ending it and ``1e400`` (inf) are all accepted."""
    exclusive = raw.startswith(b"(")
    text = raw[1:] if exclusive else raw
    score, end, _ = strtod(text)
    return None if not read_to_end(text, end) or math.isnan(score) else (score, exclusive)


def _score_span(found: ZSet, low_raw: bytes, high_raw: bytes) -> tuple[int, int] | bytes:
    """Positions ``[start, stop)`` of the members within the score bounds, or an error."""
    low, high = _bound(low_raw), _bound(high_raw)
    if low is None or high is None:
        return ERR_MIN_MAX
    start = found.first_at(low[0], exclusive=low[1])
    stop = found.first_at(high[0], exclusive=not high[1])
    return start, max(start, stop)


def _lex_position(found: ZSet, raw: bytes, upper: bool) -> int | None:
    """Where a lex bound (``[a`` inclusive, ``(a`` exclusive, ``-``, ``+``) cuts the members
    (ordered by member when their scores are equal, as Redis requires); None if invalid."""
    if raw == b"-":
        return 0
    if raw == b"+":
        return len(found.order)
    if raw[:1] not in (b"[", b"("):
        return None
    after = (raw[:1] == b"[") == upper  # an inclusive upper or exclusive lower bound
    find = bisect.bisect_right if after else bisect.bisect_left
    return find(found.order, raw[1:], key=lambda entry: entry[1])


def _lex_span(found: ZSet, low_raw: bytes, high_raw: bytes) -> tuple[int, int] | bytes:
    """Positions ``[start, stop)`` of the members within the lex bounds, or an error."""
    start = _lex_position(found, low_raw, upper=False)
    stop = _lex_position(found, high_raw, upper=True)
    if start is None or stop is None:
        return ERR_LEX_RANGE
    return start, max(start, stop)


def _rank_span(found: ZSet, start: int, stop: int) -> tuple[int, int]:
    """Redis's rank range rule (negative from the end, clamped) as ``[start, stop)``."""
    size = len(found)
    start = max(start + size, 0) if start < 0 else start
    stop = min(stop + size if stop < 0 else stop, size - 1)
    return (0, 0) if start > stop else (start, stop + 1)


_BY_RANK, _BY_SCORE, _BY_LEX = b"", b"BYSCORE", b"BYLEX"


def _span(found: ZSet, by: bytes, low: bytes, high: bytes) -> tuple[int, int] | bytes:
    """Positions ``[start, stop)`` between ``low`` and ``high`` (ranks, scores or members),
    or an error reply."""
    if by == _BY_SCORE:
        return _score_span(found, low, high)
    if by == _BY_LEX:
        return _lex_span(found, low, high)
    start, stop = parse_int(low), parse_int(high)
    if start is None or stop is None:
        return ERR_NOT_INT
    return _rank_span(found, start, stop)


def _range(
    d: Dispatcher,
    c: Client,
    key: bytes,
    spec: list[bytes],
    *,
    by: bytes,
    rev: bool,
    destination: bytes | None = None,
) -> bytes:
    """ZRANGE's work: ``spec`` is ``[min, max, options...]`` (max first when ``rev`` by score
    or member); with a ``destination`` (ZRANGESTORE) the range is stored there instead."""
    with_scores = False
    limit: tuple[int, int] | None = None
    i = 2
    while i < len(spec):
        option = spec[i].upper()
        if option == b"WITHSCORES" and by != _BY_LEX and destination is None:
            with_scores = True
            i += 1
        elif option == b"LIMIT" and i + 2 < len(spec) and by != _BY_RANK:
            offset, count = parse_int(spec[i + 1]), parse_int(spec[i + 2])
            if offset is None or count is None:
                return ERR_NOT_INT
            limit = (offset, count)
            i += 3
        else:
            return ERR_SYNTAX
    found = zset_of(d, key)
    low, high = (spec[1], spec[0]) if rev and by != _BY_RANK else (spec[0], spec[1])
    span = _span(found, by, low, high)
    if isinstance(span, bytes):
        return span
    if rev and by == _BY_RANK:
        size = len(found)
        span = (size - span[1], size - span[0]) if span[1] else (0, 0)
    entries = found.order[span[0] : span[1]]
    if rev:
        entries.reverse()
    if limit is not None:
        offset, count = limit
        if offset < 0:
            entries = []
        else:
            entries = entries[offset:] if count < 0 else entries[offset : offset + count]
    if destination is not None:
        return stored_zset(d, destination, {member: score for score, member in entries})
    return entries_reply(d, c, entries, with_scores)


@command("zrange", -4, "readonly", (1, 1, 1))
def cmd_zrange(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``ZRANGE key start stop [BYSCORE|BYLEX] [REV] [LIMIT offset count] [WITHSCORES]``."""
    return _zrange(d, c, args[1], args[2:], None)


@command("zrangestore", -5, "write denyoom", (1, 2, 1))
def cmd_zrangestore(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``ZRANGESTORE dst src min max [BYSCORE|BYLEX] [REV] [LIMIT offset count]``: the size
    of the range stored in ``dst``."""
    return _zrange(d, c, args[2], args[3:], args[1])


def _zrange(
    d: Dispatcher, c: Client, key: bytes, rest: list[bytes], destination: bytes | None
) -> bytes:
    spec = [rest[0], rest[1]]
    by = _BY_RANK
    rev = False
    for raw in rest[2:]:
        option = raw.upper()
        if option in (_BY_SCORE, _BY_LEX):
            by = option
        elif option == b"REV":
            rev = True
        else:
            spec.append(raw)
    options = [item.upper() for item in spec[2:]]
    if by == _BY_RANK and b"LIMIT" in options:
        return resp.error(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"
        )
    if by == _BY_LEX and b"WITHSCORES" in options:
        return resp.error("ERR syntax error, WITHSCORES not supported in combination with BYLEX")
    return _range(d, c, key, spec, by=by, rev=rev, destination=destination)


@command("zrangebyscore", -4, "readonly", (1, 1, 1))
def cmd_zrangebyscore(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``ZRANGEBYSCORE key min max [WITHSCORES] [LIMIT offset count]``."""
    return _range(d, c, args[1], args[2:], by=_BY_SCORE, rev=False)


@command("zrevrangebyscore", -4, "readonly", (1, 1, 1))
def cmd_zrevrangebyscore(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``ZREVRANGEBYSCORE key max min [WITHSCORES] [LIMIT offset count]``."""
    return _range(d, c, args[1], args[2:], by=_BY_SCORE, rev=True)


@command("zrangebylex", -4, "readonly", (1, 1, 1))
def cmd_zrangebylex(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``ZRANGEBYLEX key min max [LIMIT offset count]`` (members of equal scores)."""
    return _range(d, c, args[1], args[2:], by=_BY_LEX, rev=False)


@command("zrevrangebylex", -4, "readonly", (1, 1, 1))
def cmd_zrevrangebylex(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``ZREVRANGEBYLEX key max min [LIMIT offset count]``."""
    return _range(d, c, args[1], args[2:], by=_BY_LEX, rev=True)


@command("zrevrange", -4, "readonly", (1, 1, 1))
def cmd_zrevrange(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``ZREVRANGE key start stop [WITHSCORES]``."""
    return _range(d, c, args[1], args[2:], by=_BY_RANK, rev=True)


@command("zlexcount", 4, "readonly fast", (1, 1, 1))
def cmd_zlexcount(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``ZLEXCOUNT key min max``."""
    span = _lex_span(zset_of(d, args[1]), args[2], args[3])
    return span if isinstance(span, bytes) else resp.integer(span[1] - span[0])


@command("zremrangebylex", 4, "write", (1, 1, 1))
def cmd_zremrangebylex(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``ZREMRANGEBYLEX key min max``: how many were removed."""
    span = _lex_span(zset_of(d, args[1]), args[2], args[3])
    if isinstance(span, bytes):
        return span
    return resp.integer(len(zrem_range(d.engine, args[1], *span)))


@command("zcount", 4, "readonly fast", (1, 1, 1))
def cmd_zcount(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``ZCOUNT key min max``."""
    span = _score_span(zset_of(d, args[1]), args[2], args[3])
    return span if isinstance(span, bytes) else resp.integer(span[1] - span[0])


@command("zremrangebyscore", 4, "write", (1, 1, 1))
def cmd_zremrangebyscore(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``ZREMRANGEBYSCORE key min max``: how many were removed."""
    span = _score_span(zset_of(d, args[1]), args[2], args[3])
    if isinstance(span, bytes):
        return span
    return resp.integer(len(zrem_range(d.engine, args[1], *span)))


@command("zremrangebyrank", 4, "write", (1, 1, 1))
def cmd_zremrangebyrank(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``ZREMRANGEBYRANK key start stop``: how many were removed."""
    start, stop = parse_int(args[2]), parse_int(args[3])
    if start is None or stop is None:
        return ERR_NOT_INT
    span = _rank_span(zset_of(d, args[1]), start, stop)
    return resp.integer(len(zrem_range(d.engine, args[1], *span)))


def _pop(d: Dispatcher, c: Client, args: list[bytes], highest: bool) -> bytes:
    if len(args) > 3:
        return ERR_SYNTAX
    count = 1
    if len(args) == 3:
        number = parse_int(args[2])
        if number is None or number < 0:
            return ERR_POSITIVE
        count = number
    size = len(zset_of(d, args[1]))
    span = (max(size - count, 0), size) if highest else (0, min(count, size))
    taken = zrem_range(d.engine, args[1], *span)
    if highest:
        taken.reverse()
    if c.resp3 and len(args) == 3:
        return entries_reply(d, c, taken, with_scores=True)
    flat = [item for score, member in taken for item in (resp.bulk(member), double(c, score))]
    return resp.array(flat)


@command("zpopmin", -2, "write fast", (1, 1, 1))
def cmd_zpopmin(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``ZPOPMIN key [count]``: the lowest members with their scores."""
    return _pop(d, c, args, highest=False)


@command("zpopmax", -2, "write fast", (1, 1, 1))
def cmd_zpopmax(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``ZPOPMAX key [count]``: the highest members with their scores."""
    return _pop(d, c, args, highest=True)


@command("zscan", -3, "readonly", (1, 1, 1))
def cmd_zscan(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``ZSCAN key cursor [MATCH pattern] [COUNT n]``: the whole sorted set in one step
    (cursor 0), as Redis answers for a small one."""
    cursor = parse_int(args[2])
    if cursor is None or cursor < 0:
        return ERR_INVALID_CURSOR
    options = parse_scan(args, 3, with_type=False)
    if isinstance(options, bytes):
        return options
    entries = zset_of(d, args[1]).order
    if options.match is not None:
        matches = compile_pattern(options.match)
        entries = [(score, member) for score, member in entries if matches(member)]
    flat = [item for score, member in entries for item in (member, _scan_score(score))]
    error = reply_too_large(sum(map(len, flat)), d.max_reply_size)
    return error or resp.array([resp.bulk(b"0"), resp.bulk_array(flat)])


def _blocking_pop(d: Dispatcher, c: Client, args: list[bytes], highest: bool) -> bytes:
    deadline = parse_timeout(args[-1], d.clock_ms())
    if isinstance(deadline, bytes):
        return deadline

    def serve(key: bytes) -> bytes | None:
        size = len(zset_of(d, key))
        if not size:
            return None
        span = (size - 1, size) if highest else (0, 1)
        ((score, member),) = zrem_range(d.engine, key, *span)
        return resp.array([resp.bulk(key), resp.bulk(member), double(c, score)])

    reply = d.blocked.serve_or_park(
        c.id,
        args[1:-1],
        deadline,
        serve=serve,
        deliver=c.deliver,
        timeout_reply=RESP3_NULL if c.resp3 else resp.NIL_ARRAY,
        on_close=c.on_close,
        may_park=not c.in_exec,
    )
    return DEFERRED if reply is None else reply


@command("bzpopmin", -3, "write noscript blocking fast", (1, -2, 1))
def cmd_bzpopmin(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``BZPOPMIN key [key...] timeout``: ``[key, member, score]`` of the lowest member of the
    first non-empty sorted set, or parked until a ZADD; a nil array after ``timeout``."""
    return _blocking_pop(d, c, args, highest=False)


@command("bzpopmax", -3, "write noscript blocking fast", (1, -2, 1))
def cmd_bzpopmax(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``BZPOPMAX key [key...] timeout``: as BZPOPMIN, the highest member."""
    return _blocking_pop(d, c, args, highest=True)
