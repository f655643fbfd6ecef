"""LogThrottle: one line per interval, counting the events it stands for."""

from __future__ import annotations

from blinkstore_gunicorn.server.throttle import LogThrottle


def test_first_event_is_reported_then_counted_until_the_interval_passes() -> None:
    now = [100.0]
    throttle = LogThrottle(10.0, clock=lambda: now[0])
    assert throttle.event() == 1
    assert [throttle.event() for _ in range(5)] == [0] * 5
    now[0] += 10.0
    assert throttle.event() == 6
    now[0] += 1.0
    assert throttle.event() == 0
