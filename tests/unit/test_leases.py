"""Single-flight lease rules, without sockets or clocks."""

from __future__ import annotations

from blinkstore_gunicorn.server.leases import LeaseTable


class Recorder:
    """A parked caller that remembers what happened to it."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def value_landed(self, value: bytes) -> None:
        self.events.append(("value", value))

    def lease_granted(self, token: int) -> None:
        self.events.append(("lease", token))

    def timed_out(self) -> None:
        self.events.append(("timeout", None))


def test_first_caller_gets_the_lease_and_others_cannot() -> None:
    table = LeaseTable()
    token = table.try_acquire(b"k", "a", 1000, now_ms=0)
    assert token is not None
    assert table.try_acquire(b"k", "b", 1000, now_ms=0) is None
    assert table.holder(b"k") == "a"


def test_fill_wakes_every_waiter_with_the_value_and_ends_the_lease() -> None:
    table = LeaseTable()
    token = table.try_acquire(b"k", "a", 1000, 0)
    waiters = [Recorder() for _ in range(3)]
    for i, waiter in enumerate(waiters):
        table.park(b"k", waiter, owner=f"w{i}", lease_ms=1000, wait_ms=5000, now_ms=0)
    assert table.waiting() == 3
    assert table.fill(b"k", b"v", token) is True
    assert all(w.events == [("value", b"v")] for w in waiters)
    assert len(table) == 0
    assert table.try_acquire(b"k", "c", 1000, 1) is not None


def test_plain_write_ends_the_lease_but_the_stale_token_is_reported() -> None:
    table = LeaseTable()
    token = table.try_acquire(b"k", "a", 1000, 0)
    waiter = Recorder()
    table.park(b"k", waiter, owner="b", lease_ms=1000, wait_ms=5000, now_ms=0)
    assert table.fill(b"k", b"other", None) is False
    assert waiter.events == [("value", b"other")]
    assert table.fill(b"k", b"late", token) is False


def test_release_hands_the_lease_to_the_first_waiter_only() -> None:
    table = LeaseTable()
    token = table.try_acquire(b"k", "a", 1000, 0)
    assert token is not None
    first, second = Recorder(), Recorder()
    table.park(b"k", first, owner="b", lease_ms=700, wait_ms=5000, now_ms=0)
    table.park(b"k", second, owner="c", lease_ms=700, wait_ms=5000, now_ms=0)
    assert table.release(b"k", 999, 10) is False
    assert table.release(b"k", token, 10) is True
    assert first.events and first.events[0][0] == "lease"
    assert second.events == []
    assert table.holder(b"k") == "b"
    new_token = first.events[0][1]
    assert isinstance(new_token, int)
    table.fill(b"k", b"v", new_token)
    assert second.events == [("value", b"v")]


def test_holder_disconnecting_hands_over_and_its_own_waits_vanish() -> None:
    table = LeaseTable()
    table.try_acquire(b"k", "a", 1000, 0)
    table.try_acquire(b"other", "b", 1000, 0)
    own_wait, heir = Recorder(), Recorder()
    table.park(b"other", own_wait, owner="a", lease_ms=1000, wait_ms=5000, now_ms=0)
    table.park(b"k", heir, owner="c", lease_ms=1000, wait_ms=5000, now_ms=0)
    table.owner_gone("a", 5)
    assert heir.events[0][0] == "lease"
    assert table.holder(b"k") == "c"
    table.fill(b"other", b"v", None)
    assert own_wait.events == []


def test_lease_timeout_hands_over_and_wait_timeout_gives_up() -> None:
    table = LeaseTable()
    table.try_acquire(b"k", "a", 100, 0)
    patient, impatient = Recorder(), Recorder()
    table.park(b"k", impatient, owner="b", lease_ms=100, wait_ms=50, now_ms=0)
    table.park(b"k", patient, owner="c", lease_ms=100, wait_ms=1000, now_ms=0)
    assert table.next_deadline() == 50
    table.expire(60)
    assert impatient.events == [("timeout", None)]
    assert patient.events == []
    table.expire(100)
    assert patient.events[0][0] == "lease"
    assert table.holder(b"k") == "c"
    assert table.next_deadline() == 200
    table.expire(200)
    assert len(table) == 0
    assert table.next_deadline() is None


def test_holder_asking_again_gets_a_fresh_token() -> None:
    table = LeaseTable()
    first = table.try_acquire(b"k", "a", 100, 0)
    second = table.try_acquire(b"k", "a", 100, 50)
    assert first is not None and second is not None and second != first
    assert table.release(b"k", first, 60) is False
    assert table.release(b"k", second, 60) is True
