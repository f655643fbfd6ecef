"""Blocking pops: callers of ``BLPOP``, ``BRPOP``, ``BLMOVE``, ``BZPOPMIN``, ``BZPOPMAX`` and
``XREAD BLOCK`` parked on keys.

A caller whose keys are all empty is parked here, in arrival order for each key (the order
Redis serves them in), not polling: a push onto one of its keys (``ready``) serves the parked
callers of that key, first come first served, while the list has items. A caller is answered
exactly once: served, timed out (``expire``, from the store's 100 ms timer), ended by its
own ``check`` on that timer (an XREADGROUP whose stream was deleted) or dropped with its
connection (``client_gone``). A connection has at most one parked request, since it holds
the requests pipelined after it.

No I/O and no clock here: the caller passes ``now_ms`` and the closures that pop and answer.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from blinkstore_gunicorn.engine import WrongType

__all__ = ["BlockedPops"]

_NEVER: Final = 2**63


@dataclass(slots=True, eq=False)
class _Parked:
    """One parked request."""

    owner: int
    keys: list[bytes]
    deadline_ms: int
    #: Pops from the key that became ready: the reply, or None when it had nothing.
    serve: Callable[[bytes], bytes | None]
    #: Delivers a reply to the parked connection.
    deliver: Callable[[bytes], None]
    timeout_reply: bytes
    #: Whether serving takes what it serves (a pop): once one finds nothing, so do the
    #: others. XREAD only reads, and each reader wants entries after its own ID.
    consumes: bool
    #: On each timer tick: the reply that ends the request early, or None to keep waiting.
    check: Callable[[], bytes | None] | None
    #: Told of a value moved onto one of its keys (:meth:`BlockedPops.replaced`).
    moved: Callable[[bytes], None] | None


class BlockedPops:
    """The parked blocking pops, by key and by owner (a client id)."""

    __slots__ = ("_by_key", "_by_owner", "_held", "_watched")

    def __init__(self) -> None:
        self._by_key: dict[bytes, deque[_Parked]] = {}
        self._by_owner: dict[int, _Parked] = {}
        self._watched: set[int] = set()
        #: Keys made ready inside :meth:`held` (in order), None outside it.
        self._held: dict[bytes, None] | None = None

    def __len__(self) -> int:
        """Requests parked now."""
        return len(self._by_owner)

    def __contains__(self, owner: object) -> bool:
        """Whether ``owner`` (a client id) has a request parked."""
        return owner in self._by_owner

    def park(
        self,
        owner: int,
        keys: list[bytes],
        deadline_ms: int | None,
        *,
        serve: Callable[[bytes], bytes | None],
        deliver: Callable[[bytes], None],
        timeout_reply: bytes,
        consumes: bool = True,
        check: Callable[[], bytes | None] | None = None,
        moved: Callable[[bytes], None] | None = None,
    ) -> None:
        """Park a request on ``keys`` until one is ready or ``deadline_ms`` (None: no limit),
        or until ``check`` answers for it."""
        deadline = _NEVER if deadline_ms is None else deadline_ms
        parked = _Parked(
            owner, keys, deadline, serve, deliver, timeout_reply, consumes, check, moved
        )
        self._by_owner[owner] = parked
        for key in dict.fromkeys(keys):
            self._by_key.setdefault(key, deque()).append(parked)

    def serve_or_park(
        self,
        owner: int,
        keys: list[bytes],
        deadline_ms: int | None,
        *,
        serve: Callable[[bytes], bytes | None],
        deliver: Callable[[bytes], None],
        timeout_reply: bytes,
        on_close: list[Callable[[], None]],
        may_park: bool = True,
    ) -> bytes | None:
        """The reply from the first of ``keys`` that ``serve`` answers for, or None once the
        request is parked (``on_close``: its connection's callbacks, see :meth:`watch`).
        Inside MULTI/EXEC (``may_park`` False) the request is never parked: it gets its
        timeout reply at once, as Redis answers there."""
        for key in keys:
            reply = serve(key)
            if reply is not None:
                return reply
        if not may_park:
            return timeout_reply
        self.park(
            owner, keys, deadline_ms, serve=serve, deliver=deliver, timeout_reply=timeout_reply
        )
        self.watch(owner, on_close)
        return None

    def ready(self, key: bytes) -> None:
        """Items landed on ``key``: serve its parked requests in order while it has some.
        A request waiting for another type of value (a BLPOP on a key now holding a stream)
        stays parked, as in Redis."""
        queue = self._by_key.get(key)
        if not queue:
            return
        if self._held is not None:
            self._held[key] = None
            return
        # A key a serve makes ready (BLMOVE's destination) is served once this key is done,
        # as Redis does: within the serve, the caller being served would still be parked.
        with self.held():
            for parked in list(queue):
                if self._by_owner.get(parked.owner) is not parked:
                    continue  # answered meanwhile (a serve or a delivery ran other commands)
                try:
                    reply = parked.serve(key)
                except WrongType:
                    continue
                if reply is None:
                    if parked.consumes:
                        return
                    continue
                self._forget(parked)
                parked.deliver(reply)

    def replaced(self, key: bytes) -> None:
        """A value was moved, copied or restored onto ``key`` (RENAME, COPY, RESTORE):
        requests that tell a replaced value from their own (XREADGROUP) are told it is no
        deletion, as Redis judges only what the key holds when it is signalled; then the key
        is ready."""
        for parked in list(self._by_key.get(key, ())):
            if parked.moved is not None:
                parked.moved(key)
        self.ready(key)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Serve nobody until the block ends, then serve the keys made ready meanwhile, in
        that order: parked callers see only the end state of an EXEC or a script, as in
        Redis (an LPUSH then a DEL in one transaction wakes nobody)."""
        if self._held is not None:  # nested (a script inside EXEC): the outer block serves
            yield
            return
        self._held = {}
        try:
            yield
        finally:
            keys, self._held = self._held, None
            for key in keys:
                self.ready(key)

    def unblock(self, owner: int, reply: bytes | None) -> bool:
        """CLIENT UNBLOCK: answer ``owner``'s parked request with ``reply`` (None: its
        timeout reply); False when it has none."""
        parked = self._by_owner.get(owner)
        if parked is None:
            return False
        self._forget(parked)
        parked.deliver(parked.timeout_reply if reply is None else reply)
        return True

    def expire(self, now_ms: int) -> None:
        """Answer the requests whose timeout passed with their timeout reply, and those their
        ``check`` ends with its reply."""
        for parked in list(self._by_owner.values()):
            if parked.deadline_ms <= now_ms:
                reply: bytes | None = parked.timeout_reply
            else:
                reply = None if parked.check is None else parked.check()
            if reply is not None:
                self._forget(parked)
                parked.deliver(reply)

    def watch(self, owner: int, on_close: list[Callable[[], None]]) -> None:
        """Make sure :meth:`client_gone` runs when ``owner``'s connection closes, adding it
        once to the connection's ``on_close`` callbacks."""
        if owner not in self._watched:
            self._watched.add(owner)
            on_close.append(lambda: self.client_gone(owner))

    def client_gone(self, owner: int) -> None:
        """The owner's connection closed: forget its parked request, if any."""
        self._watched.discard(owner)
        parked = self._by_owner.get(owner)
        if parked is not None:
            self._forget(parked)

    def _forget(self, parked: _Parked) -> None:
        del self._by_owner[parked.owner]
        for key in dict.fromkeys(parked.keys):
            queue = self._by_key[key]
            queue.remove(parked)
            if not queue:
                del self._by_key[key]
