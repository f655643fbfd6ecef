"""``ClientBudget``: one bound for the memory all client connections hold together.

Each connection is bounded on its own (request size, write high-water mark), but ten thousand
bounded connections are not a bound. The budget adds up what connections hold (partial
requests, parked requests, replies the peer has not read) and, past the limit, closes the
connection holding the most until the total fits again, logging who it was: Redis's
``maxmemory-clients``.

Measuring every connection on every read would cost the hot path, so a connection reports
(:meth:`ClientBudget.charge`) only when it may hold much: a partial request of at least
:data:`CHARGE_MIN` bytes, parked requests, a write buffer over its high-water mark, and again
when that ends. Below those marks a connection holds little (less than the kernel keeps for its
socket); :meth:`ClientBudget.audit`, run every second, measures them all anyway.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import Protocol

from blinkstore_gunicorn.server.commands import ServerStats

__all__ = ["CHARGE_MIN", "ClientBudget", "Holder"]

log = logging.getLogger("blinkstore.server")

#: A partial request at least this large is reported to the budget.
CHARGE_MIN = 64 * 1024


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

    def shed(self) -> None:
        """Drop the connection now, discarding what it holds."""


class ClientBudget:
    """Tracks the bytes charged by every connection; sheds the largest when over ``limit``."""

    __slots__ = ("_holders", "_shed_pending", "_stats", "limit")

    def __init__(self, limit: int, holders: Collection[Holder], stats: ServerStats) -> None:
        self.limit = limit
        #: The connections to measure (the server's live set).
        self._holders = holders
        #: Holds the total (``INFO``'s ``mem_clients_normal``) and counts the connections shed
        #: (``evicted_clients``).
        self._stats = stats
        self._shed_pending = False

    @property
    def total(self) -> int:
        """Sum of the connections' ``charged`` bytes."""
        return self._stats.client_buffers

    @total.setter
    def total(self, value: int) -> None:
        self._stats.client_buffers = value

    def charge(self, holder: Holder) -> None:
        """Record what ``holder`` holds now; schedule shedding when the total is over."""
        requests, replies = holder.held()
        held = requests + replies
        self.total += held - holder.charged
        holder.charged = held
        if self.total > self.limit and not self._shed_pending:
            # Not now: the caller may be inside that very connection's write.
            self._shed_pending = True
            asyncio.get_running_loop().call_soon(self._shed)

    def release(self, holder: Holder) -> None:
        """Forget a closed connection's charge."""
        self.total -= holder.charged
        holder.charged = 0

    def audit(self) -> None:
        """Measure every connection (also the ones below the reporting marks), shed if over."""
        self._shed()

    def _shed(self) -> None:
        self._shed_pending = False
        measured = []
        total = 0
        for holder in self._holders:
            requests, replies = holder.held()
            held = requests + replies
            holder.charged = held
            total += held
            if held:
                measured.append((held, requests, replies, holder))
        self.total = total
        if total <= self.limit:
            return
        measured.sort(key=lambda entry: entry[0], reverse=True)
        for held, requests, replies, holder in measured:
            if self.total <= self.limit:
                break
            log.warning(
                "client buffers over the limit (%d > %d bytes): closing client %d (%s) holding"
                " %d bytes (%d in requests, %d in unread replies)",
                self.total,
                self.limit,
                holder.client_id,
                holder.peer,
                held,
                requests,
                replies,
            )
            self.release(holder)
            self._stats.evicted_clients += 1
            holder.shed()
