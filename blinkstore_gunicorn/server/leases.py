"""Single-flight leases: one caller computes a missing key, the others wait in the store.

A *lease* says "this connection is computing this key". While it is held, other callers
asking for the key are parked here (not polling) and woken when the value lands, when the
lease ends without a value (the first waiter then takes the lease over), or when their own
wait times out. A lease ends when its holder fills the key, releases it, disconnects, or
its timeout passes.

This module does no I/O and reads no clock: callers pass ``now_ms`` and deliver outcomes
through the :class:`Waiter` they parked, so the rules are testable without sockets.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["LeaseTable", "Waiter"]


class Waiter(Protocol):
    """A parked caller; exactly one of these methods is called, once."""

    def value_landed(self, value: bytes) -> None:
        """The key was written while waiting."""

    def lease_granted(self, token: int) -> None:
        """The previous holder gave up: this caller computes now."""

    def timed_out(self) -> None:
        """Nothing happened within the caller's wait timeout."""


@dataclass(slots=True)
class _Parked:
    waiter: Waiter
    owner: Hashable
    lease_ms: int
    deadline_ms: int


@dataclass(slots=True)
class _Lease:
    token: int
    owner: Hashable
    deadline_ms: int
    parked: deque[_Parked] = field(default_factory=deque)


class LeaseTable:
    """Leases and parked waiters for every key being computed."""

    def __init__(self) -> None:
        self._leases: dict[bytes, _Lease] = {}
        self._owned: dict[Hashable, set[bytes]] = {}
        self._tokens = itertools.count(1)
        self._tracked: set[Hashable] = set()

    def __len__(self) -> int:
        return len(self._leases)

    def __contains__(self, key: bytes) -> bool:
        return key in self._leases

    def token(self, key: bytes) -> int | None:
        """The current lease token on ``key``, if any."""
        lease = self._leases.get(key)
        return None if lease is None else lease.token

    def waiting(self) -> int:
        """Callers parked on all keys."""
        return sum(len(lease.parked) for lease in self._leases.values())

    def holder(self, key: bytes) -> Hashable | None:
        """The owner holding ``key``'s lease, if any."""
        lease = self._leases.get(key)
        return None if lease is None else lease.owner

    def try_acquire(self, key: bytes, owner: Hashable, lease_ms: int, now_ms: int) -> int | None:
        """Grant the lease on ``key`` to ``owner`` and return its token, or ``None`` if another
        caller holds it (a holder asking again gets a fresh token: it restarted its work)."""
        lease = self._leases.get(key)
        if lease is not None and lease.owner != owner:
            return None
        return self._grant(key, owner, lease_ms, now_ms, lease)

    def park(
        self,
        key: bytes,
        waiter: Waiter,
        *,
        owner: Hashable,
        lease_ms: int,
        wait_ms: int,
        now_ms: int,
    ) -> None:
        """Park ``waiter`` until ``key``'s lease ends; call only after ``try_acquire`` failed."""
        self._leases[key].parked.append(_Parked(waiter, owner, lease_ms, now_ms + wait_ms))

    def fill(self, key: bytes, value: bytes, token: int | None = None) -> bool:
        """``key`` was written: wake every waiter with ``value`` and end the lease.

        Returns whether ``token`` was the current lease (``None`` matches nothing: a plain
        write by anyone also ends the lease, because the value the lease was for is there).
        """
        lease = self._leases.pop(key, None)
        if lease is None:
            return False
        self._disown(lease.owner, key)
        for parked in lease.parked:
            parked.waiter.value_landed(value)
        return token is not None and token == lease.token

    def release(self, key: bytes, token: int, now_ms: int) -> bool:
        """The holder gives up without a value; the first waiter takes over. Returns whether
        ``token`` was the current lease."""
        lease = self._leases.get(key)
        if lease is None or lease.token != token:
            return False
        self._hand_over(key, lease, now_ms)
        return True

    def track(self, owner: Hashable) -> bool:
        """True the first time ``owner`` is seen (until :meth:`owner_gone`): the moment to
        arrange for ``owner_gone`` to be called when its connection closes."""
        if owner in self._tracked:
            return False
        self._tracked.add(owner)
        return True

    def owner_gone(self, owner: Hashable, now_ms: int) -> None:
        """``owner``'s connection closed: end its leases and forget its parked callers."""
        self._tracked.discard(owner)
        for key in list(self._owned.pop(owner, ())):
            lease = self._leases.get(key)
            if lease is not None and lease.owner == owner:
                self._hand_over(key, lease, now_ms)
        for lease in self._leases.values():
            if any(parked.owner == owner for parked in lease.parked):
                lease.parked = deque(p for p in lease.parked if p.owner != owner)

    def expire(self, now_ms: int) -> None:
        """End leases and waits whose time has come (call it from a timer)."""
        for key, lease in list(self._leases.items()):
            if lease.parked and any(p.deadline_ms <= now_ms for p in lease.parked):
                still = deque[_Parked]()
                for parked in lease.parked:
                    if parked.deadline_ms <= now_ms:
                        parked.waiter.timed_out()
                    else:
                        still.append(parked)
                lease.parked = still
            if lease.deadline_ms <= now_ms and self._leases.get(key) is lease:
                self._hand_over(key, lease, now_ms)

    def next_deadline(self) -> int | None:
        """The earliest lease or wait deadline, for scheduling the next :meth:`expire`."""
        deadlines = [lease.deadline_ms for lease in self._leases.values()]
        deadlines.extend(p.deadline_ms for lease in self._leases.values() for p in lease.parked)
        return min(deadlines, default=None)

    def _grant(
        self,
        key: bytes,
        owner: Hashable,
        lease_ms: int,
        now_ms: int,
        previous: _Lease | None,
    ) -> int:
        token = next(self._tokens)
        parked = previous.parked if previous is not None else deque[_Parked]()
        if previous is not None:
            self._disown(previous.owner, key)
        self._leases[key] = _Lease(token, owner, now_ms + lease_ms, parked)
        self._owned.setdefault(owner, set()).add(key)
        return token

    def _hand_over(self, key: bytes, lease: _Lease, now_ms: int) -> None:
        self._disown(lease.owner, key)
        if not lease.parked:
            del self._leases[key]
            return
        heir = lease.parked.popleft()
        token = self._grant(key, heir.owner, heir.lease_ms, now_ms, lease)
        heir.waiter.lease_granted(token)

    def _disown(self, owner: Hashable, key: bytes) -> None:
        keys = self._owned.get(owner)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._owned[owner]
