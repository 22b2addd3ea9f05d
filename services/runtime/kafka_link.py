"""Whether a service can reach Kafka now, and since when it could not.

A pure core: whoever talks to Kafka tells :meth:`KafkaLink.reached` after a
success and :meth:`KafkaLink.lost` after a failure; ``/readyz``, ingest's door
and the metric read it. A service that only waits for Kafka stays alive (its
``/healthz`` answers 200) and says so on ``/readyz``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["KafkaLink"]


class KafkaLink:
    def __init__(self, clock: Callable[[], float] = time.monotonic, try_every: float = 1.0) -> None:
        self._clock = clock
        self._try_every = try_every
        self._last_contact = clock()
        self._lost_since: float | None = None
        self._last_try = float("-inf")
        self._why = ""

    def reached(self) -> None:
        self._last_contact = self._clock()
        self._lost_since = None

    def lost(self, why: str) -> None:
        if self._lost_since is None:
            self._lost_since = self._clock()
        self._why = why

    @property
    def down(self) -> bool:
        return self._lost_since is not None

    def may_try(self) -> bool:
        """Whether a write should be tried now: always while Kafka is reached; while
        it is lost, one write a second (so a service without a probe finds it back),
        and every other one is refused at once rather than queued."""
        if self._lost_since is None:
            return True
        now = self._clock()
        if now - self._last_try >= self._try_every:
            self._last_try = now
            return True
        return False

    def seconds_since_contact(self) -> float:
        return max(self._clock() - self._last_contact, 0.0)

    def reason(self) -> str | None:
        """Why the service cannot do its work now, for ``/readyz``; None when it can."""
        if self._lost_since is None:
            return None
        away = self._clock() - self._lost_since
        return f"Kafka unreachable for {away:.0f} s ({self._why})"
