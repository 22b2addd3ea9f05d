"""When a delivery is tried again, and which answers end it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.publish.retry import RetryPolicy, retry_after_seconds
from services.runtime.config import DEFAULT_RETRY_SCHEDULE, Retries

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
DEFAULT = RetryPolicy.of(DEFAULT_RETRY_SCHEDULE, 0.1, (408, 429))


def test_the_default_schedule_spans_more_than_a_day() -> None:
    assert DEFAULT.attempts == 8
    assert DEFAULT.waits[0] == 0, "the first attempt is made at once"
    assert sum(DEFAULT.waits) * 0.9 >= 24 * 3600, "even with all jitter down"


@given(st.integers(1, 7), st.floats(0, 1, exclude_max=True))
def test_each_retry_waits_its_scheduled_time_give_or_take_the_jitter(
    attempt: int, unit: float
) -> None:
    due = DEFAULT.next_attempt_at(attempt, T0, None, unit)
    assert due is not None
    planned = DEFAULT.waits[attempt]
    assert planned * 0.9 <= (due - T0).total_seconds() <= planned * 1.1


def test_after_the_last_attempt_there_is_no_other() -> None:
    assert DEFAULT.next_attempt_at(8, T0, None, 0.5) is None


@pytest.mark.parametrize(("retry_after", "wait"), [(3600.0, 3600.0), (1.0, 5.0)])
def test_retry_after_lengthens_a_wait_and_never_shortens_it(
    retry_after: float, wait: float
) -> None:
    exact = RetryPolicy.of(DEFAULT_RETRY_SCHEDULE, 0.0, (408, 429))
    assert exact.next_attempt_at(1, T0, retry_after, 0.5) == T0 + timedelta(seconds=wait)


@pytest.mark.parametrize(
    ("status", "ends"),
    [(None, False), (500, False), (503, False), (408, False), (429, False), (410, True),
     (400, True), (401, True), (404, True), (422, True)],
)  # fmt: skip
def test_which_answers_end_a_delivery_at_once(status: int | None, ends: bool) -> None:
    assert (DEFAULT.ends(status) is not None) == ends


def test_gone_says_so() -> None:
    assert DEFAULT.ends(410) == "410 Gone: the receiver says this address is gone for good"


def test_a_channel_may_retry_more_client_errors_but_never_gone() -> None:
    assert RetryPolicy.of(DEFAULT_RETRY_SCHEDULE, 0.1, (404,)).ends(404) is None
    with pytest.raises(ValueError, match="410"):
        Retries(retry_statuses=(410,))


def test_max_attempts_cuts_or_stretches_the_schedule() -> None:
    schedule = (timedelta(0), timedelta(seconds=1))
    assert RetryPolicy.of(schedule, 0, (), max_attempts=1).waits == (0.0,)
    assert RetryPolicy.of(schedule, 0, (), max_attempts=4).waits == (0.0, 1.0, 1.0, 1.0)


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after_seconds("120", T0) == 120.0
    assert retry_after_seconds("Mon, 02 Mar 2026 08:10:00 GMT", T0) == 600.0
    assert retry_after_seconds("Mon, 02 Mar 2026 07:00:00 GMT", T0) == 0.0
    assert retry_after_seconds("soon", T0) is None
    assert retry_after_seconds(None, T0) is None
