"""``MULTI``, ``EXEC``, ``DISCARD``, ``WATCH``, ``UNWATCH``: Redis transactions (what
redis-py's default ``pipeline()`` sends, and libraries such as fastapi-cache2 with it).

After ``MULTI`` a connection's commands are checked (name, arity) and queued, each answered
``+QUEUED``; ``EXEC`` runs them one after the other, as one step of the single-threaded store,
and answers the array of their replies. A command that cannot be queued (unknown, wrong
arity, or one that may wait in the store) answers its error and makes ``EXEC`` answer
``-EXECABORT``, as Redis does. The queue is bounded by the request-size limit: a
transaction larger than one request could be is refused.

``WATCH`` makes the next ``EXEC`` answer a null array (and run nothing) when a watched key
changed meanwhile: written, deleted, its TTL changed, expired, evicted or flushed, by anyone
(the connection itself included). The engine counts the changes of the keys in its
``watched`` dict; a connection remembers each key's count at ``WATCH`` time, and
``Dispatcher.watchers`` how many connections watch a key, so that the engine forgets a key
nobody watches any more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands.registry import COMMANDS, command
from blinkstore_gunicorn.server.commands.replies import RESP3_NULL, unknown_command, wrong_args
from blinkstore_gunicorn.server.commands.shm import seen_at_once

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher, Entry

__all__ = ["Transaction"]

_QUEUED: Final = resp.simple("QUEUED")
_OK: Final = resp.simple("OK")
_ERR_NESTED: Final = resp.error("ERR MULTI calls can not be nested")
_ERR_EXEC: Final = resp.error("ERR EXEC without MULTI")
_ERR_DISCARD: Final = resp.error("ERR DISCARD without MULTI")
_ERR_NOT_ALLOWED: Final = resp.error("ERR Command not allowed inside a transaction")
_ERR_TOO_LARGE: Final = resp.error("ERR transaction too large: more than the request size limit")
_EXECABORT: Final = resp.error("EXECABORT Transaction discarded because of previous errors.")
_ERR_WATCH_IN_MULTI: Final = resp.error("ERR WATCH inside MULTI is not allowed")
_NULL_ARRAY: Final = b"*-1\r\n"

#: Commands that change how the connection itself works cannot be part of a transaction, nor
#: can our own commands that park in the store (BS.FETCH, BLINK.LOCK: they have no answer
#: without waiting), nor SAVE: those carry Redis's ``no_multi`` flag, or are named here.
#: Redis's blocking commands (BLPOP, BZPOPMIN, XREAD BLOCK...) are queued and run without
#: waiting, as in Redis: ``Client.in_exec`` tells them to answer their timeout reply at once.
NOT_IN_TRANSACTION: Final = frozenset({"bs.fetch", "blink.lock", "hello", "auth", "select"})
_REFUSING_FLAGS: Final = frozenset({"no_multi"})


class Transaction:
    """The commands a connection queued since ``MULTI``, and whether one was refused."""

    __slots__ = ("commands", "failed", "reason", "size")

    def __init__(self) -> None:
        self.commands: list[list[bytes]] = []
        self.failed = False
        #: The error EXEC itself was refused with (BUSY), which its EXECABORT names.
        self.reason: bytes | None = None
        self.size = 0

    def fail(self, reason: bytes | None = None) -> None:
        """A command was refused: ``EXEC`` will run nothing and answer ``-EXECABORT``, naming
        ``reason`` when given (EXEC itself was refused) as Redis does, else "previous errors".
        """
        self.failed = True
        self.reason = reason
        # A refused transaction keeps nothing: its commands will never run.
        self.commands.clear()


class _QueueTable(dict[bytes, "Entry"]):
    """A connection's command table during ``MULTI``: every name the connection sends, known
    or not and in any spelling, reaches :func:`_queue`, except the commands that end or
    refuse a transaction."""

    def get(self, key: bytes, default: Entry | None = None) -> Entry:  # type: ignore[override]
        return super().get(key.lower(), _QUEUE_ENTRY)

    def __contains__(self, key: object) -> bool:
        return True


def _queue(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    transaction = c.transaction
    assert transaction is not None
    name = args[0].lower().decode("utf-8", "replace")
    spec = COMMANDS.get(name)
    refusal: bytes | None = None
    if spec is None:
        refusal = unknown_command(args)
    elif len(args) != spec.arity and (spec.arity > 0 or len(args) < -spec.arity):
        refusal = wrong_args(spec.name)
    elif name in NOT_IN_TRANSACTION or _REFUSING_FLAGS.intersection(spec.flags):
        refusal = _ERR_NOT_ALLOWED
    else:
        transaction.size += sum(map(len, args))
        if transaction.size > d.max_request_size:
            refusal = _ERR_TOO_LARGE
    if refusal is not None:
        transaction.fail()
        return refusal
    if not transaction.failed:
        transaction.commands.append(args)
    return _QUEUED


_QUEUE_ENTRY: Final[Entry] = (_queue, -1)


def _end(d: Dispatcher, c: Client) -> Transaction | None:
    transaction = c.transaction
    c.transaction = None
    if transaction is not None:
        c.table = d.full_table
    return transaction


@command("multi", 1, "noscript loading stale fast allow_busy")
def cmd_multi(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``MULTI``: queue what follows until ``EXEC`` or ``DISCARD``."""
    if c.transaction is not None:
        return _ERR_NESTED
    c.transaction = Transaction()
    c.table = _QueueTable(
        {
            name: entry
            for name, entry in d.full_table.items()
            if name.lower() in (b"exec", b"discard", b"multi", b"quit", b"watch")
        }
    )
    return _OK


@command("exec", 1, "noscript loading stale skip_slowlog")
def cmd_exec(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``EXEC``: run the queued commands; the array of their replies."""
    transaction = _end(d, c)
    if transaction is None:
        return _ERR_EXEC
    changed = _watched_key_changed(d, c)
    _unwatch(d, c)
    if transaction.failed:
        if transaction.reason is not None:
            return b"-EXECABORT Transaction discarded because of: " + transaction.reason[1:]
        return _EXECABORT
    if changed:
        return RESP3_NULL if c.resp3 else _NULL_ARRAY
    c.in_exec = True
    try:
        with seen_at_once(d), d.blocked.held():
            replies = [d.execute(c, queued) for queued in transaction.commands]
    finally:
        c.in_exec = False
    return b"*%d\r\n%b" % (len(replies), b"".join(replies))


@command("discard", 1, "noscript loading stale fast allow_busy")
def cmd_discard(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``DISCARD``: forget the queued commands."""
    if _end(d, c) is None:
        return _ERR_DISCARD
    _unwatch(d, c)
    return _OK


@command("watch", -2, "noscript loading stale fast allow_busy", (1, -1, 1))
def cmd_watch(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``WATCH key...``: make the next ``EXEC`` fail if one of the keys changes."""
    if c.transaction is not None:
        return _ERR_WATCH_IN_MULTI
    watching = c.watching
    if watching is None:
        watching = c.watching = {}
        c.on_close.append(lambda: _unwatch(d, c))
    engine = d.engine
    watchers = d.watchers
    for key in args[1:]:
        if key in watching:
            continue
        count = watchers.get(key, 0)
        watchers[key] = count + 1
        if not count:
            engine.watched[key] = 0
        # A key already past its deadline goes now: its expiry is not a change after WATCH.
        engine.contains(key)
        watching[key] = engine.watched[key]
    return _OK


@command("unwatch", 1, "noscript loading stale fast allow_busy")
def cmd_unwatch(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``UNWATCH``: forget the watched keys."""
    _unwatch(d, c)
    return _OK


def _watched_key_changed(d: Dispatcher, c: Client) -> bool:
    watching = c.watching
    if not watching:
        return False
    engine = d.engine
    for key, seen in watching.items():
        engine.contains(key)  # a key that expired since WATCH is removed (a change) now
        if engine.watched[key] != seen:
            return True
    return False


def _unwatch(d: Dispatcher, c: Client) -> None:
    watching = c.watching
    if not watching:
        return
    watchers = d.watchers
    for key in watching:
        count = watchers[key] - 1
        if count:
            watchers[key] = count
        else:
            del watchers[key]
            del d.engine.watched[key]
    watching.clear()
