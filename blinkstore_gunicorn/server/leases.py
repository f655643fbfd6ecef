"""Leases: one holder per name, the other callers parked in the store in arrival order.

A *lease* says "this connection holds this name". While it is held, other callers asking
for the name are parked here (not polling) and woken when the lease ends: the first parked
caller then takes it over, or a caller gives up when its own wait times out. A lease ends
when its holder releases it, disconnects, or its timeout passes.

Two tables share these rules:

* :class:`LeaseTable`, the single-flight leases of ``BS.FETCH``: the holder computes a
  missing key, and a value landing on the key also wakes every parked caller with it
  (:meth:`LeaseTable.fill`). A holder asking again gets a fresh token (it restarted).
* :class:`LockTable`, the host-wide locks of ``BLINK.LOCK``: nothing but the holder's token
  ends a lock early, and a holder asking again is refused like anyone else (a lock is not
  re-entrant). Its tokens start at a random number, so a token from before a store restart
  does not match a lock granted after it.

This module does no I/O and reads no clock: callers pass ``now_ms`` and deliver outcomes
through the waiter they parked, so the rules are testable without sockets.
"""

from __future__ import annotations

import itertools
import secrets
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Final, Generic, Protocol, TypeVar

__all__ = ["NEVER", "Heir", "LeaseTable", "LockTable", "Waiter"]

#: A deadline that never comes (a lock without a timeout, a wait without a limit).
NEVER: Final = 2**63


class Heir(Protocol):
    """A parked caller; exactly one of these methods is called, once."""

    def lease_granted(self, token: int) -> None:
        """The previous holder gave up: this caller holds the lease now."""

    def timed_out(self) -> None:
        """Nothing happened within the caller's wait timeout."""


class Waiter(Heir, Protocol):
    """A parked ``BS.FETCH``, which a value landing on its key also wakes."""

    def value_landed(self, value: bytes) -> None:
        """The key was written while waiting."""


W = TypeVar("W", bound=Heir)


@dataclass(slots=True)
class _Parked(Generic[W]):
    waiter: W
    owner: Hashable
    lease_ms: int | None
    deadline_ms: int


@dataclass(slots=True)
class _Lease(Generic[W]):
    token: int
    owner: Hashable
    deadline_ms: int
    parked: deque[_Parked[W]] = field(default_factory=deque)


def _deadline(now_ms: int, ms: int | None) -> int:
    return NEVER if ms is None else now_ms + ms


class _Holders(Generic[W]):
    """Holders and parked callers by name: the rules both tables share."""

    #: Whether the holder asking again is granted a fresh token (else it is refused).
    reentrant = True

    def __init__(self, first_token: int = 1) -> None:
        #: The lease on each name held. Others may test a name's membership (the write path
        #: does on every write: a C-level dict lookup, where ``name in table`` and ``if table``
        #: are Python calls); only this class changes it.
        self.held: dict[bytes, _Lease[W]] = {}
        self._owned: dict[Hashable, set[bytes]] = {}
        self._tokens = itertools.count(first_token)
        self._tracked: set[Hashable] = set()

    def __len__(self) -> int:
        return len(self.held)

    def __contains__(self, key: bytes) -> bool:
        return key in self.held

    def token(self, key: bytes) -> int | None:
        """The current lease token on ``key``, if any."""
        lease = self.held.get(key)
        return None if lease is None else lease.token

    def waiting(self) -> int:
        """Callers parked on all keys."""
        return sum(len(lease.parked) for lease in self.held.values())

    def holder(self, key: bytes) -> Hashable | None:
        """The owner holding ``key``'s lease, if any."""
        lease = self.held.get(key)
        return None if lease is None else lease.owner

    def try_acquire(
        self, key: bytes, owner: Hashable, lease_ms: int | None, now_ms: int
    ) -> int | None:
        """Grant the lease on ``key`` to ``owner`` for ``lease_ms`` (None: until released)
        and return its token, or ``None`` if it is held (see :attr:`reentrant`)."""
        lease = self.held.get(key)
        if lease is not None and (lease.owner != owner or not self.reentrant):
            return None
        return self._grant(key, owner, lease_ms, now_ms, lease)

    def park(
        self,
        key: bytes,
        waiter: W,
        *,
        owner: Hashable,
        lease_ms: int | None,
        wait_ms: int | None,
        now_ms: int,
    ) -> None:
        """Park ``waiter`` until ``key``'s lease ends or ``wait_ms`` pass (None: no limit);
        call only after ``try_acquire`` failed. Callers are served in the order they park."""
        deadline = _deadline(now_ms, wait_ms)
        self.held[key].parked.append(_Parked(waiter, owner, lease_ms, deadline))

    def release(self, key: bytes, token: int, now_ms: int) -> bool:
        """The holder gives up; the first waiter takes over. Returns whether ``token`` was
        the current lease."""
        lease = self.held.get(key)
        if lease is None or lease.token != token:
            return False
        self._hand_over(key, lease, now_ms)
        return True

    def extend(self, key: bytes, token: int, ms: int, now_ms: int, *, replace: bool) -> bool:
        """Move the lease's deadline ``ms`` later, or with ``replace`` to ``ms`` from now.
        Returns whether ``token`` was the current lease (only then is anything changed)."""
        lease = self.held.get(key)
        if lease is None or lease.token != token:
            return False
        if replace:
            lease.deadline_ms = now_ms + ms
        elif lease.deadline_ms != NEVER:
            lease.deadline_ms += ms
        return True

    def track(self, owner: Hashable) -> bool:
        """True the first time ``owner`` is seen (until :meth:`owner_gone`): the moment to
        arrange for ``owner_gone`` to be called when its connection closes."""
        if owner in self._tracked:
            return False
        self._tracked.add(owner)
        return True

    def watch(
        self, owner: Hashable, on_close: list[Callable[[], None]], clock_ms: Callable[[], int]
    ) -> None:
        """Make sure :meth:`owner_gone` runs when ``owner``'s connection closes, by adding
        it once to the connection's ``on_close`` callbacks."""
        if self.track(owner):
            on_close.append(lambda: self.owner_gone(owner, clock_ms()))

    def owner_gone(self, owner: Hashable, now_ms: int) -> None:
        """``owner``'s connection closed: end its leases and forget its parked callers."""
        self._tracked.discard(owner)
        for key in list(self._owned.pop(owner, ())):
            lease = self.held.get(key)
            if lease is not None and lease.owner == owner:
                self._hand_over(key, lease, now_ms)
        for lease in self.held.values():
            if any(parked.owner == owner for parked in lease.parked):
                lease.parked = deque(p for p in lease.parked if p.owner != owner)

    def expire(self, now_ms: int) -> None:
        """End leases and waits whose time has come (call it from a timer)."""
        for key, lease in list(self.held.items()):
            if lease.parked and any(p.deadline_ms <= now_ms for p in lease.parked):
                still = deque[_Parked[W]]()
                for parked in lease.parked:
                    if parked.deadline_ms <= now_ms:
                        parked.waiter.timed_out()
                    else:
                        still.append(parked)
                lease.parked = still
            if lease.deadline_ms <= now_ms and self.held.get(key) is lease:
                self._hand_over(key, lease, now_ms)

    def next_deadline(self) -> int | None:
        """The earliest lease or wait deadline, for scheduling the next :meth:`expire`."""
        deadlines = [lease.deadline_ms for lease in self.held.values()]
        deadlines.extend(p.deadline_ms for lease in self.held.values() for p in lease.parked)
        deadlines = [deadline for deadline in deadlines if deadline != NEVER]
        return min(deadlines, default=None)

    def _grant(
        self,
        key: bytes,
        owner: Hashable,
        lease_ms: int | None,
        now_ms: int,
        previous: _Lease[W] | None,
    ) -> int:
        token = next(self._tokens)
        parked = previous.parked if previous is not None else deque[_Parked[W]]()
        if previous is not None:
            self._disown(previous.owner, key)
        self.held[key] = _Lease(token, owner, _deadline(now_ms, lease_ms), parked)
        self._owned.setdefault(owner, set()).add(key)
        return token

    def _hand_over(self, key: bytes, lease: _Lease[W], now_ms: int) -> None:
        self._disown(lease.owner, key)
        if not lease.parked:
            del self.held[key]
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


class LeaseTable(_Holders[Waiter]):
    """Single-flight leases and parked waiters for every key being computed."""

    def fill(self, key: bytes, value: bytes, token: int | None = None) -> bool:
        """``key`` was written: wake every waiter with ``value`` and end the lease.

        Returns whether ``token`` was the current lease (``None`` matches nothing: a plain
        write by anyone also ends the lease, because the value the lease was for is there).
        """
        lease = self.held.pop(key, None)
        if lease is None:
            return False
        self._disown(lease.owner, key)
        for parked in lease.parked:
            parked.waiter.value_landed(value)
        return token is not None and token == lease.token


class LockTable(_Holders[Heir]):
    """Host-wide locks: one holder per name, the waiters served first come, first served."""

    reentrant = False

    def __init__(self) -> None:
        # Random 62-bit start: tokens stay positive int64s (RESP integers) for ages.
        super().__init__(first_token=secrets.randbits(62) + 1)
