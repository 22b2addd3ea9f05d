"""Failed logins counted per address (or person), and how long to wait once too many.

A pure core: the web shell asks :meth:`Throttle.wait` before it handles a
request and tells :meth:`Throttle.failed` after a refused one. Memory stays
bounded however many addresses try: the oldest keys are forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from datetime import datetime, timedelta

__all__ = ["Throttle"]


class Throttle:
    """At most *limit* failures per key within *window*; after that, wait."""

    def __init__(
        self, limit: int = 10, window: timedelta = timedelta(minutes=5), keys: int = 10_000
    ) -> None:
        self._limit = limit
        self._window = window
        self._keys = keys
        self._failures: OrderedDict[str, deque[datetime]] = OrderedDict()

    def _recent(self, key: str, now: datetime) -> deque[datetime]:
        times = self._failures.get(key, deque())
        while times and now - times[0] >= self._window:
            times.popleft()
        return times

    def wait(self, key: str, now: datetime) -> float | None:
        """Seconds until *key* may try again, or None when it may now."""
        times = self._recent(key, now)
        if len(times) < self._limit:
            return None
        return max((times[0] + self._window - now).total_seconds(), 1.0)

    def failed(self, key: str, now: datetime) -> None:
        times = self._recent(key, now)
        times.append(now)
        self._failures[key] = times
        self._failures.move_to_end(key)
        while len(self._failures) > self._keys:
            self._failures.popitem(last=False)
