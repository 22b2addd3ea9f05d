"""When to try a delivery again, and which answers end it: pure, the clock and the dice
come in as arguments."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

__all__ = ["RetryPolicy", "retry_after_seconds"]


@dataclass(frozen=True)
class RetryPolicy:
    """The waits before each attempt (the first usually 0), their jitter and the 4xx
    answers worth another try."""

    waits: tuple[float, ...]
    jitter: float = 0.1
    retry_statuses: frozenset[int] = frozenset({408, 429})

    @classmethod
    def of(
        cls,
        schedule: tuple[timedelta, ...],
        jitter: float,
        retry_statuses: tuple[int, ...],
        max_attempts: int | None = None,
    ) -> RetryPolicy:
        waits = [step.total_seconds() for step in schedule]
        if max_attempts is not None:
            waits = (waits + [waits[-1]] * max_attempts)[:max_attempts]
        return cls(tuple(waits), jitter, frozenset(retry_statuses))

    @property
    def attempts(self) -> int:
        return len(self.waits)

    def ends(self, status: int | None) -> str | None:
        """Why an answer ends the delivery at once; None when it is worth another try.

        No answer at all (a timeout, a refused connection) and 5xx are retried.
        """
        if status == 410:
            return "410 Gone: the receiver says this address is gone for good"
        if status is not None and 400 <= status < 500 and status not in self.retry_statuses:
            return f"{status}: the receiver refused the request; another try would too"
        return None

    def next_attempt_at(
        self, attempt: int, failed_at: datetime, retry_after: float | None, unit: float
    ) -> datetime | None:
        """When attempt number *attempt* + 1 is due, after attempt *attempt* failed;
        None when the schedule has no more. *unit* is a number in [0, 1) for jitter;
        a receiver's Retry-After lengthens the wait, never shortens it."""
        if attempt >= self.attempts:
            return None
        wait = self.waits[attempt] * (1 + self.jitter * (2 * unit - 1))
        if retry_after is not None:
            wait = max(wait, retry_after)
        return failed_at + timedelta(seconds=max(wait, 0.0))


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """A ``Retry-After`` header as seconds from *now*: delta-seconds or an HTTP date."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max((when - now).total_seconds(), 0.0)
