"""Sorted-set commands over several keys or at random (Redis's t_zset.c): ZUNION, ZINTER,
ZDIFF and their STORE forms, ZINTERCARD, ZRANDMEMBER.

Inputs may be sets as well as sorted sets (a set member scores 1), as in Redis. Results are
sorted by score then member, the order Redis's result set has.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from blinkstore_gunicorn.engine import WrongType
from blinkstore_gunicorn.engine.sets import Set
from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands.registry import command
from blinkstore_gunicorn.server.commands.replies import (
    ERR_NOT_INT,
    ERR_SYNTAX,
    INT64_MAX,
    parse_float,
    parse_int,
    reply_too_large,
)
from blinkstore_gunicorn.server.commands.zreply import entries_reply, stored_zset, zset_of

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher

__all__: list[str] = []

ERR_WEIGHT = resp.error("ERR weight value is not a float")
ERR_NEGATIVE_LIMIT = resp.error("ERR LIMIT can't be negative")
ERR_COUNT_RANGE = resp.error(
    f"ERR value is out of range, value must between {-INT64_MAX} and {INT64_MAX}"
)
ERR_RANGE = resp.error("ERR value is out of range")

_AGGREGATES: dict[bytes, Callable[[float, float], float]] = {
    b"SUM": lambda a, b: a + b,
    b"MIN": min,
    b"MAX": max,
}


def _scores(d: Dispatcher, key: bytes) -> Mapping[bytes, float]:
    """The key's members and scores: a sorted set's, a set's at 1 (absent: none)."""
    kind = d.engine.kind(key)
    if kind == b"set":
        found = d.engine.lookup(key, Set)
        return dict.fromkeys(found.members if found is not None else (), 1.0)
    if kind is not None and kind != b"zset":
        raise WrongType
    return zset_of(d, key).scores


def _no_nan(score: float) -> float:
    return 0.0 if math.isnan(score) else score  # inf - inf and 0 * inf are 0 in Redis


def _combine(
    inputs: list[Mapping[bytes, float]], weights: list[float], how: str, aggregate: bytes
) -> dict[bytes, float]:
    """Redis's union, intersection or difference of the inputs, weighted and aggregated."""
    if how == "diff":
        first, others = inputs[0], inputs[1:]
        return {m: s for m, s in first.items() if not any(m in other for other in others)}
    join = _AGGREGATES[aggregate]
    result: dict[bytes, float] = {}
    if how == "inter":
        if not all(inputs):
            return result
        order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]))
        smallest = inputs[order[0]]
        for member in smallest:
            if all(member in inputs[i] for i in order[1:]):
                score = _no_nan(smallest[member] * weights[order[0]])
                for i in order[1:]:
                    score = _no_nan(join(score, _no_nan(inputs[i][member] * weights[i])))
                result[member] = score
        return result
    for scores, weight in zip(inputs, weights, strict=True):
        for member, raw in scores.items():
            score = _no_nan(raw * weight)
            old = result.get(member)
            result[member] = score if old is None else _no_nan(join(old, score))
    return result


def _inputs(d: Dispatcher, args: list[bytes], at: int) -> list[Mapping[bytes, float]] | bytes:
    """The inputs named by ``numkeys key [key...]`` at ``args[at]``, or Redis's error."""
    numkeys = parse_int(args[at])
    if numkeys is None:
        return ERR_NOT_INT
    if numkeys < 1:
        name = args[0].decode("ascii", "replace").lower()
        return resp.error(f"ERR at least 1 input key is needed for '{name}' command")
    keys = args[at + 1 : at + 1 + numkeys]
    if numkeys > len(keys):
        return ERR_SYNTAX
    return [_scores(d, key) for key in keys]


def _setop(d: Dispatcher, c: Client, args: list[bytes], how: str, store: bool) -> bytes:
    """``[dst] numkeys key [key...] [WEIGHTS w...] [AGGREGATE SUM|MIN|MAX] [WITHSCORES]``."""
    at = 2 if store else 1
    inputs = _inputs(d, args, at)
    if isinstance(inputs, bytes):
        return inputs
    numkeys = len(inputs)
    weights = [1.0] * numkeys
    aggregate = b"SUM"
    with_scores = False
    i = at + 1 + numkeys
    while i < len(args):
        option = args[i].upper()
        left = len(args) - i - 1
        if how != "diff" and option == b"WEIGHTS" and left >= numkeys:
            for n in range(numkeys):
                weight = parse_float(args[i + 1 + n])
                if weight is None:
                    return ERR_WEIGHT
                weights[n] = weight
            i += numkeys + 1
        elif how != "diff" and option == b"AGGREGATE" and left >= 1:
            aggregate = args[i + 1].upper()
            if aggregate not in _AGGREGATES:
                return ERR_SYNTAX
            i += 2
        elif option == b"WITHSCORES" and not store:
            with_scores = True
            i += 1
        else:
            return ERR_SYNTAX
    result = _combine(inputs, weights, how, aggregate)
    if store:
        return stored_zset(d, args[1], result)
    entries = sorted((score, member) for member, score in result.items())
    return entries_reply(d, c, entries, with_scores)


def _setop_command(how: str, store: bool) -> Callable[[Dispatcher, Client, list[bytes]], bytes]:
    def handler(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
        return _setop(d, c, args, how, store)

    return handler


# ZUNION/ZINTER/ZDIFF numkeys key... and ZUNIONSTORE/ZINTERSTORE/ZDIFFSTORE dst numkeys key...
for _how in ("union", "inter", "diff"):
    command(f"z{_how}", -3, "readonly movablekeys", (0, 0, 0))(_setop_command(_how, store=False))
    command(f"z{_how}store", -4, "write denyoom movablekeys", (1, 1, 1))(
        _setop_command(_how, store=True)
    )


@command("zintercard", -3, "readonly movablekeys", (0, 0, 0))
def cmd_zintercard(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``ZINTERCARD numkeys key [key...] [LIMIT limit]``: the intersection's size, counting
    at most ``limit`` (0: no limit)."""
    inputs = _inputs(d, args, 1)
    if isinstance(inputs, bytes):
        return inputs
    numkeys = len(inputs)
    limit = 0
    for i in range(2 + numkeys, len(args), 2):  # a later LIMIT wins, as in Redis
        if args[i].upper() != b"LIMIT" or i + 1 >= len(args):
            return ERR_SYNTAX
        number = parse_int(args[i + 1])
        if number is None or number < 0:
            return ERR_NEGATIVE_LIMIT
        limit = number
    size = len(_combine(inputs, [1.0] * numkeys, "inter", b"SUM"))
    return resp.integer(min(size, limit) if limit else size)


@command("zrandmember", -2, "readonly", (1, 1, 1))
def cmd_zrandmember(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``ZRANDMEMBER key [count [WITHSCORES]]``: distinct members for a positive count (all
    of them, highest first, when it covers the set), members that may repeat for a negative
    one."""
    found = zset_of(d, args[1])
    if len(args) == 2:
        return resp.bulk(random.choice(found.order)[1]) if len(found) else c.nil
    count = parse_int(args[2])
    if count is None:
        return ERR_NOT_INT
    with_scores = False
    if len(args) == 4 and args[3].upper() == b"WITHSCORES":
        with_scores = True
    elif len(args) > 3:
        return ERR_SYNTAX
    if count < -INT64_MAX:
        return ERR_COUNT_RANGE
    if with_scores and count < -INT64_MAX // 2:
        return ERR_RANGE
    order = found.order
    # Checked before choosing: a large negative count repeats members without bound.
    error = reply_too_large(-count * 24, d.max_reply_size) if count < 0 and order else None
    if error is not None:
        return error
    if count >= len(order):
        chosen = order[::-1]  # Redis's order for a small sorted set
    elif count >= 0:
        chosen = random.sample(order, count)
    else:
        chosen = random.choices(order, k=-count) if order else []
    return entries_reply(d, c, chosen, with_scores)
