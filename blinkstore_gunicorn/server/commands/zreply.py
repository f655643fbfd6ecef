"""What the sorted-set families share (``zsets``, ``zsetops``, ``mpop``): reading a sorted
set, and scores written as Redis 7.0 writes them (``%.17g``; a RESP3 double).

Not a family: it registers no command, so families may import it as they import ``replies``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from blinkstore_gunicorn.engine.zsets import ZSet, zstore
from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands.replies import reply_too_large, stored

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher

__all__ = ["double", "entries_reply", "pairs_reply", "score_text", "stored_zset", "zset_of"]

_EMPTY = ZSet()


def zset_of(d: Dispatcher, key: bytes) -> ZSet:
    """The key's sorted set for a read (an empty one when absent); WRONGTYPE for another."""
    found = d.engine.lookup(key, ZSet)
    return _EMPTY if found is None else found


def score_text(score: float) -> bytes:
    """A score as Redis writes it in a reply (``%.17g``, ``inf``, ``-inf``)."""
    if math.isinf(score):
        return b"inf" if score > 0 else b"-inf"
    return b"%.17g" % score


def double(c: Client, score: float) -> bytes:
    """A score: a bulk string in RESP2, a double in RESP3."""
    text = score_text(score)
    return b",%b\r\n" % text if c.resp3 else resp.bulk(text)


def pairs_reply(c: Client, entries: Sequence[tuple[float, bytes]]) -> bytes:
    """``[[member, score], ...]`` in both protocols (ZMPOP, and ZRANGE WITHSCORES in RESP3)."""
    return resp.array(
        b"*2\r\n%b%b" % (resp.bulk(member), double(c, score)) for score, member in entries
    )


def entries_reply(
    d: Dispatcher, c: Client, entries: Sequence[tuple[float, bytes]], with_scores: bool
) -> bytes:
    """Members (with their scores: flat in RESP2, pairs in RESP3), or the too-large error."""
    error = reply_too_large(sum(len(member) + 24 for _, member in entries), d.max_reply_size)
    if error is not None:
        return error
    if not with_scores:
        return resp.bulk_array(member for _, member in entries)
    if c.resp3:
        return pairs_reply(c, entries)
    return resp.array(
        item for score, member in entries for item in (resp.bulk(member), double(c, score))
    )


def stored_zset(d: Dispatcher, destination: bytes, scores: dict[bytes, float]) -> bytes:
    """Make ``destination`` the sorted set of ``scores`` (ZRANGESTORE, ZUNIONSTORE...): its
    size, or a size-limit error. A -0 score (``WEIGHTS -1`` of 0) is stored as 0, as Redis
    stores it, though ``ZUNION`` answers it as -0."""
    kept = {member: score + 0.0 for member, score in scores.items()}
    return stored(d.blocked, destination, lambda: zstore(d.engine, destination, kept), len(kept))
