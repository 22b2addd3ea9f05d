"""Failed logins: a few are fine, many from one address wait, the wait ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.runtime.throttle import Throttle

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def test_the_eleventh_failure_within_five_minutes_waits_until_the_first_is_old() -> None:
    throttle = Throttle(limit=10, window=timedelta(minutes=5))
    for n in range(10):
        assert throttle.wait("10.0.0.9", T0 + timedelta(seconds=n)) is None
        throttle.failed("10.0.0.9", T0 + timedelta(seconds=n))
    assert throttle.wait("10.0.0.9", T0 + timedelta(seconds=60)) == 240.0
    assert throttle.wait("10.0.0.8", T0 + timedelta(seconds=60)) is None, "others go on"
    assert throttle.wait("10.0.0.9", T0 + timedelta(minutes=5)) is None


@given(st.integers(1, 500))
def test_memory_holds_at_most_the_newest_keys(addresses: int) -> None:
    throttle = Throttle(limit=1, keys=100)
    for n in range(addresses):
        throttle.failed(f"10.0.{n // 256}.{n % 256}", T0)
    last = f"10.0.{(addresses - 1) // 256}.{(addresses - 1) % 256}"
    assert throttle.wait(last, T0) is not None
    assert len(throttle._failures) == min(addresses, 100)
