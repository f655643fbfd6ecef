"""Pub/sub: SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE, PUBLISH, PUBSUB (Redis's pubsub.c).

The channels and their subscribers live in the dispatcher's hub
(:class:`~blinkstore_gunicorn.server.pubsub.PubSubHub`); these handlers parse, answer and
switch a connection in and out of *subscribed mode*. A RESP2
connection with at least one subscription may only send (P)SUBSCRIBE, (P)UNSUBSCRIBE, PING and
QUIT, as in Redis: every other known command gets Redis's "only ... allowed in this context"
error (unknown commands and wrong arities are reported first, as Redis does), and PING answers
``["pong", message]``. A RESP3 connection (``HELLO 3``) receives messages as push frames and
may send anything while subscribed. Closing the connection ends its subscriptions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands.registry import COMMANDS, command
from blinkstore_gunicorn.server.commands.replies import (
    ERR_PATTERN_TOO_LONG,
    MAX_PATTERN,
    help_reply,
    unknown_subcommand,
    wrong_args,
)

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher, Entry

__all__ = ["SUBSCRIBED_ALLOWED"]

#: What a RESP2 connection in subscribed mode may send (besides RESET, which we lack).
SUBSCRIBED_ALLOWED: Final = (
    "subscribe",
    "unsubscribe",
    "psubscribe",
    "punsubscribe",
    "ping",
    "quit",
)
#: Commands Redis names with their subcommand in errors (``'pubsub|numsub'``).
_CONTAINERS: Final = frozenset({b"client", b"command", b"config", b"pubsub"})
_PONG: Final = resp.bulk(b"pong")

#: The command table of a RESP2 connection in subscribed mode (built on first use, once every
#: family has registered).
_subscribed_table: dict[bytes, Entry] = {}


def _not_in_context(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    name = args[0].lower()
    if name in _CONTAINERS and len(args) > 1:
        name += b"|" + args[1].lower()
    return resp.error(
        f"ERR Can't execute '{name.decode('utf-8', 'replace')}': only (P|S)SUBSCRIBE / "
        "(P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
    )


def _subscribed_ping(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``PING [message]`` in subscribed mode (RESP2): ``["pong", message or ""]``."""
    if len(args) > 2:
        return wrong_args("ping")
    return b"*2\r\n" + _PONG + resp.bulk(args[1] if len(args) == 2 else b"")


def _restricted_table() -> dict[bytes, Entry]:
    if not _subscribed_table:
        for name, spec in COMMANDS.items():
            handler = spec.handler if name in SUBSCRIBED_ALLOWED else _not_in_context
            if name == "ping":
                handler = _subscribed_ping
            for spelling in (name.lower(), name.upper()):
                _subscribed_table[spelling.encode()] = (handler, spec.arity)
    return _subscribed_table


def _changed(d: Dispatcher, c: Client, reply: bytes) -> bytes:
    """After a (un)subscribe: enter or leave subscribed mode to match ``c``'s subscriptions
    (and end them when its connection closes); return the command's ``reply``."""
    hub = d.pubsub
    subscribed = hub.subscriptions(c) > 0
    if subscribed and hub.track(c):
        c.on_close.append(lambda: hub.remove(c))
    if not c.resp3:
        c.table = _restricted_table() if subscribed else d.full_table
    return reply


@command("subscribe", -2, "pubsub noscript loading stale")
def cmd_subscribe(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``SUBSCRIBE channel [channel ...]``."""
    return _changed(d, c, d.pubsub.subscribe(c, args[1:]))


@command("unsubscribe", -1, "pubsub noscript loading stale")
def cmd_unsubscribe(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``UNSUBSCRIBE [channel ...]``: the channels named, or all of them."""
    return _changed(d, c, d.pubsub.unsubscribe(c, args[1:]))


@command("psubscribe", -2, "pubsub noscript loading stale")
def cmd_psubscribe(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``PSUBSCRIBE pattern [pattern ...]`` (Redis glob patterns, as long as KEYS takes)."""
    if any(len(pattern) > MAX_PATTERN for pattern in args[1:]):
        return ERR_PATTERN_TOO_LONG
    return _changed(d, c, d.pubsub.psubscribe(c, args[1:]))


@command("punsubscribe", -1, "pubsub noscript loading stale")
def cmd_punsubscribe(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``PUNSUBSCRIBE [pattern ...]``: the patterns named, or all of them."""
    return _changed(d, c, d.pubsub.punsubscribe(c, args[1:]))


@command("publish", 3, "pubsub loading stale fast")
def cmd_publish(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``PUBLISH channel message``: the number of subscriptions that received it."""
    receivers, own = d.pubsub.publish(args[1], args[2], publisher=c)
    return own + resp.integer(receivers)


#: Redis 7.0's ``PUBSUB HELP``, the subcommands the store has.
_PUBSUB_HELP = (
    "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CHANNELS [<pattern>]",
    "    Return the currently active channels matching a <pattern> (default: '*').",
    "NUMPAT",
    "    Return number of subscriptions to patterns.",
    "NUMSUB [<channel> ...]",
    "    Return the number of subscribers for the specified channels, excluding",
    "    pattern subscriptions(default: no channels).",
    "HELP",
    "    Prints this help.",
)


@command("pubsub", -2, "")
def cmd_pubsub(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``PUBSUB CHANNELS [pattern] | NUMSUB [channel ...] | NUMPAT | HELP``."""
    sub = args[1].upper()
    hub = d.pubsub
    if sub == b"HELP":
        return help_reply(_PUBSUB_HELP) if len(args) == 2 else wrong_args("pubsub|help")
    if sub == b"CHANNELS" and len(args) <= 3:
        if len(args) == 3 and len(args[2]) > MAX_PATTERN:
            return ERR_PATTERN_TOO_LONG
        return c.bulk_array(hub.channels(args[2] if len(args) == 3 else None))
    if sub == b"NUMSUB":
        return b"*%d\r\n%b" % (
            2 * (len(args) - 2),
            b"".join(resp.bulk(name) + resp.integer(hub.numsub(name)) for name in args[2:]),
        )
    if sub == b"NUMPAT":
        if len(args) != 2:
            return wrong_args("pubsub|numpat")
        return resp.integer(hub.numpat())
    if sub == b"CHANNELS":
        return resp.error(
            f"ERR unknown subcommand or wrong number of arguments for "
            f"'{args[1].decode('utf-8', 'replace')}'. Try PUBSUB HELP."
        )
    return unknown_subcommand(args)
