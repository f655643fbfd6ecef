"""Which commands stay in the store or hold an upstream connection, and what a forwarded
command invalidates here before its reply reaches the worker (read-your-writes). The reads the
near cache serves itself are ``service._NEAR``."""

from __future__ import annotations

from typing import Final

from blinkstore_gunicorn.server.commands.registry import COMMANDS

__all__ = ["ALL", "BLOCKING", "LOCAL", "PINNING", "REFUSED", "UNPINNING", "written_keys"]

#: Commands about the worker's own connection or this store: answered here.
LOCAL: Final = frozenset(
    {
        "auth", "bs.shm", "client", "command", "config", "echo", "hello", "info", "ping",
        "pubsub", "psubscribe", "punsubscribe", "quit", "select", "subscribe", "time",
        "unsubscribe",
    }
)  # fmt: skip
#: Commands that hold their connection until they answer: each gets a dedicated one.
BLOCKING: Final = frozenset(
    {
        "blpop", "brpop", "blmove", "brpoplpush", "blmpop", "bzpopmin", "bzpopmax", "bzmpop",
        "xread", "xreadgroup", "wait", "waitaof",
    }
)  # fmt: skip
#: Commands that would take over a shared upstream connection (a stream of replies, a reset of
#: its protocol): refused.
REFUSED: Final = frozenset(
    {b"monitor", b"ssubscribe", b"sunsubscribe", b"sync", b"psync", b"reset"}
)
#: Commands that tie the worker to one upstream connection (a transaction, a WATCH)...
PINNING: Final = frozenset({b"multi", b"watch"})
#: ...until one of these answers.
UNPINNING: Final = frozenset({b"exec", b"discard", b"unwatch"})
#: Read commands Redis has and the store does not: forwarding them invalidates nothing.
_OTHER_READS: Final = frozenset(
    {
        b"getrange", b"substr", b"bitcount", b"bitpos", b"getbit", b"lcs", b"object", b"dump",
        b"randomkey", b"touch", b"xrange", b"xrevrange", b"xlen", b"xinfo", b"pfcount",
        b"sort_ro", b"memory", b"sunion", b"sinter", b"sdiff",
        b"zunion", b"zinter", b"zdiff", b"zrandmember", b"lastsave", b"role", b"wait",
        b"evalsha_ro", b"eval_ro", b"fcall_ro", b"script", b"function", b"slowlog",
        b"latency", b"acl", b"cluster", b"readonly", b"readwrite", b"asking",
    }
)  # fmt: skip
_SCRIPTS: Final = frozenset({b"eval", b"evalsha", b"fcall"})

#: "Every key": the command's keys are unknown, or it changes the whole database.
ALL: Final = None


def written_keys(args: list[bytes]) -> list[bytes] | None:
    """The keys a forwarded command may change (drop them here), or :data:`ALL`.

    From the command table's key positions for the store's own commands; by ``numkeys`` for
    scripts (a script must declare its keys); every key for anything unknown that is not a
    known read (flushing the near cache is always safe, only slower).
    """
    name = args[0].lower()
    if name in _SCRIPTS:
        try:
            count = int(args[2])
        except (IndexError, ValueError):
            return []
        return args[3 : 3 + count]
    spec = COMMANDS.get(name.decode("ascii", "replace"))
    if spec is None:
        return [] if name in _OTHER_READS else ALL
    if "write" not in spec.flags:
        return []
    if spec.first_key == 0 or "movablekeys" in spec.flags:
        return ALL  # the key positions do not name every key written (SORT ... STORE dst)
    last = spec.last_key if spec.last_key >= 0 else len(args) + spec.last_key
    return args[spec.first_key : last + 1 : spec.step]
