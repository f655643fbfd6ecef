"""``BLINK.RATELIMIT`` and ``BLINK.WINDOW``: the store's rate limiting commands (RESP only;
see docs/rate-limits.md).

``BLINK.RATELIMIT key limit period_ms [cost]``
    GCRA (:mod:`blinkstore_gunicorn.engine.ratelimit`): ``limit`` requests per ``period_ms``
    with a burst of ``limit``; ``cost`` (default 1, 0 only looks) is taken when it fits.
    Replies ``[allowed (1/0), remaining, reset_ms, retry_after_ms]``: ``reset_ms`` until the
    full ``limit`` is available again, ``retry_after_ms`` until this ``cost`` would fit (0
    when allowed).
``BLINK.WINDOW key period_ms [delta]``
    A fixed-window counter: ``INCRBY`` that starts a ``period_ms`` window when it creates the
    key and never moves it afterwards; replies the count. (The ``limits`` package's
    fixed-window strategy counts with it.)

Both keep their state in an ordinary string key with a TTL, so it is evicted, expired, deleted
and listed like any other key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from blinkstore_gunicorn.engine.ratelimit import (
    MAX_PERIOD_MS,
    argument_error,
    rate_limit_step,
    window_step,
)
from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands.registry import command
from blinkstore_gunicorn.server.commands.replies import ERR_NOT_INT, ERR_SYNTAX, parse_int

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher

__all__: list[str] = []

_ERR_STATE: Final = resp.error("ERR value is not a rate limit state")
_ERR_OVERFLOW: Final = resp.error("ERR increment or decrement would overflow")


@command("blink.ratelimit", -4, "write fast", (1, 1, 1))
def cmd_blink_ratelimit(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``BLINK.RATELIMIT key limit period_ms [cost]``."""
    if len(args) > 5:
        return ERR_SYNTAX
    numbers = [parse_int(raw) for raw in args[2:]]
    limit, period_ms = numbers[0], numbers[1]
    cost = numbers[2] if len(numbers) == 3 else 1
    if limit is None or period_ms is None or cost is None:
        return ERR_NOT_INT
    problem = argument_error(limit, period_ms, cost)
    if problem is not None:
        return resp.error(f"ERR {problem} in 'blink.ratelimit' command")
    key = args[1]
    try:
        decision, write = rate_limit_step(d.engine.peek(key), d.clock_ms(), limit, period_ms, cost)
    except ValueError:
        return _ERR_STATE
    if write is not None:
        error = d.store(key, write.value, write.expire_at_ms)
        if error is not None:
            return error
    return resp.array([resp.integer(int(number)) for number in decision.reply()])


@command("blink.window", -3, "write fast", (1, 1, 1))
def cmd_blink_window(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``BLINK.WINDOW key period_ms [delta]``."""
    if len(args) > 4:
        return ERR_SYNTAX
    period_ms = parse_int(args[2])
    delta = parse_int(args[3]) if len(args) == 4 else 1
    if period_ms is None or delta is None:
        return ERR_NOT_INT
    if not 1 <= period_ms <= MAX_PERIOD_MS:
        return resp.error(
            f"ERR period must be between 1 ms and {MAX_PERIOD_MS} ms in 'blink.window' command"
        )
    key = args[1]
    raw = d.engine.peek(key)
    try:
        count, write = window_step(
            raw, None if raw is None else d.engine.expire_at(key), d.clock_ms(), period_ms, delta
        )
    except ValueError:
        return ERR_NOT_INT
    except OverflowError:
        return _ERR_OVERFLOW
    return d.store(key, write.value, write.expire_at_ms) or resp.integer(count)
