"""The RESP command table: every command family registers its handlers here.

A handler is one function ``(dispatcher, client, args) -> reply bytes`` (``args[0]`` is the
command name as sent), registered with :func:`command` under its name, Redis's arity and flags,
and key positions (what ``COMMAND INFO`` reports). The :class:`~..dispatch.Dispatcher` builds
its lookup from :data:`COMMANDS`; the family modules fill it when ``server/commands/__init__.py``
imports them, which happens before anything in this package is used.

A handler that cannot answer at once (a caller parked until another one fills a key) returns
:data:`DEFERRED` and later calls ``client.deliver(reply)``; the connection holds the requests
pipelined after it, so replies stay in order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher

__all__ = ["COMMANDS", "DEFERRED", "CommandSpec", "Handler", "command"]

Handler: TypeAlias = "Callable[[Dispatcher, Client, list[bytes]], bytes]"


class _Deferred(bytes):
    """Type of :data:`DEFERRED`; a distinct object so that an identity test finds it."""


#: Returned by a handler that will answer later through ``client.deliver(reply)``. The
#: connection sends the replies before it, then holds later pipelined requests until then.
DEFERRED: bytes = _Deferred()


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """A command's handler, Redis's arity rules, the flags the store acts on (``write``,
    ``noscript``...) and its key range (``COMMAND INFO`` of the store's own commands)."""

    name: str
    handler: Handler
    arity: int
    flags: tuple[str, ...]
    first_key: int = 0
    last_key: int = 0
    step: int = 0


#: Every RESP command, by lower-case name.
COMMANDS: dict[str, CommandSpec] = {}


def command(
    name: str, arity: int, flags: str, keys: tuple[int, int, int] = (0, 0, 0)
) -> Callable[[Handler], Handler]:
    """Register a handler in :data:`COMMANDS`."""

    def register(handler: Handler) -> Handler:
        COMMANDS[name] = CommandSpec(name, handler, arity, tuple(flags.split()), *keys)
        return handler

    return register
