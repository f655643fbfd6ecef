"""``ClientBudget``: one bound for the memory all client connections hold together.

Each connection is bounded on its own (request size, write high-water mark), but ten thousand
bounded connections are not a bound. The budget adds up what connections hold (partial
requests, parked requests, replies the peer has not read) and, past the limit, closes the
connection holding the most until the total fits again, logging who it was: Redis's
``maxmemory-clients``.

Measuring every connection on every read would cost the hot path, so a connection reports
(:meth:`ClientBudget.charge`) only when it may hold much: a partial request or unsent replies
of at least :data:`CHARGE_MIN` bytes, parked requests, a write buffer over its high-water mark,
and again when that ends. Below those marks a connection holds little (less than the kernel
keeps for its socket); :meth:`ClientBudget.audit`, run every second, measures every connection
anyway.

Shedding happens at once, inside the report. But the event loop frees a dropped connection's
unsent replies only a couple of iterations later, and one iteration may serve a thousand
connections: so while shed bytes are still awaiting release and the total with them is over
the limit, the budget *freezes* reading on every connection (``hold_reading``) and thaws it
once the memory is back. Nothing new is buffered in between, which is what bounds the peak.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import Protocol

from blinkstore_gunicorn.server.dispatch import ServerStats

__all__ = ["CHARGE_MIN", "ClientBudget", "Holder"]

log = logging.getLogger("blinkstore.server")

#: A partial request or unsent replies at least this large are reported to the budget.
CHARGE_MIN = 64 * 1024
#: Once over its limit, the budget sheds down to this fraction of it: the headroom keeps the
#: next few reports from shedding (and freezing reads) again at once.
SHED_TO = 0.5


class Holder(Protocol):
    """What the budget needs from a connection."""

    #: Bytes last reported to the budget (0 when nothing is charged).
    charged: int
    peer: str

    @property
    def client_id(self) -> int:
        """The connection's client id (0 before it has one)."""

    def held(self) -> tuple[int, int]:
        """Bytes held now: (requests received but not answered, replies not yet sent)."""

    def shed(self, *, now: bool) -> None:
        """Drop the connection, discarding what it holds (``now=False``: once the callback
        running on its behalf has returned)."""

    def hold_reading(self, hold: bool) -> None:
        """Stop reading (``True``) or read again unless held for another reason."""


class ClientBudget:
    """Tracks the bytes charged by every connection; sheds the largest when over ``limit``."""

    __slots__ = ("_charged", "_freeing", "_holders", "_shed", "_stats", "frozen", "limit")

    def __init__(self, limit: int, holders: Collection[Holder], stats: ServerStats) -> None:
        self.limit = limit
        #: Every connection, for the audit (the server's live set).
        self._holders = holders
        #: The connections with a charge, the only candidates for shedding.
        self._charged: set[Holder] = set()
        #: Holds the total (``INFO``'s ``mem_clients_normal``) and counts the connections shed
        #: (``evicted_clients``).
        self._stats = stats
        #: Shed connections, by the bytes they held, until their memory is released.
        self._shed: dict[Holder, int] = {}
        self._freeing = 0
        #: Whether reading is frozen on every connection until shed memory is released.
        self.frozen = False

    @property
    def total(self) -> int:
        """Sum of the connections' ``charged`` bytes."""
        return self._stats.client_buffers

    def charge(self, holder: Holder) -> None:
        """Record what ``holder`` holds now; shed the largest holders while over the limit."""
        if holder in self._shed:
            return
        requests, replies = holder.held()
        self._set(holder, requests + replies)
        if self._stats.client_buffers > self.limit:
            self._shed_largest(current=holder)

    def release(self, holder: Holder) -> None:
        """Forget a closed connection's charge; a shed one's bytes count until the loop has
        freed them (two iterations after its ``connection_lost``)."""
        self._set(holder, 0)
        held = self._shed.pop(holder, None)
        if held is not None:
            loop = asyncio.get_running_loop()
            loop.call_soon(loop.call_soon, self._freed, held)
        else:
            self._thaw_if_fits()

    def audit(self) -> None:
        """Measure every connection (also the ones below the reporting marks), shed if over."""
        for holder in self._holders:
            if holder not in self._shed:
                requests, replies = holder.held()
                self._set(holder, requests + replies)
        if self._stats.client_buffers > self.limit:
            self._shed_largest(current=None)
        self._thaw_if_fits()

    def _freed(self, held: int) -> None:
        self._freeing -= held
        self._thaw_if_fits()

    def _thaw_if_fits(self) -> None:
        """Read again once the total with the memory still being freed fits the limit."""
        if self.frozen and self._stats.client_buffers + self._freeing <= self.limit:
            self._freeze(False)

    def _freeze(self, frozen: bool) -> None:
        self.frozen = frozen
        for holder in self._holders:
            holder.hold_reading(frozen)

    def _set(self, holder: Holder, held: int) -> None:
        self._stats.client_buffers += held - holder.charged
        holder.charged = held
        if held:
            self._charged.add(holder)
        else:
            self._charged.discard(holder)

    def _shed_largest(self, current: Holder | None) -> None:
        stats = self._stats
        target = int(self.limit * SHED_TO)
        while stats.client_buffers > target and self._charged:
            victim = max(self._charged, key=_charged_bytes)
            held = victim.charged
            log.warning(
                "client buffers over the limit (%d > %d bytes): closing client %d (%s) holding"
                " %d bytes",
                stats.client_buffers,
                self.limit,
                victim.client_id,
                victim.peer,
                held,
            )
            self._set(victim, 0)
            self._shed[victim] = held
            self._freeing += held
            stats.evicted_clients += 1
            victim.shed(now=victim is not current)
        if not self.frozen and stats.client_buffers + self._freeing > self.limit:
            self._freeze(True)


def _charged_bytes(holder: Holder) -> int:
    return holder.charged
