"""Webhook and SMTP deliveries attempted in the background, with backoff and jitter.

A slow or failing receiver never holds back another channel or item. What an
attempt loop learns goes back through ``publish.outcomes`` to the handler, the
only writer of the delivery records.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from services.publish import delivery
from services.publish.channels import DeliveryFailed, Transports
from services.publish.delivery import Delivery, Outcome
from services.publish.telemetry import PublishTelemetry
from services.runtime import topics
from services.runtime.keys import ItemKey
from services.runtime.ports import Clock, OutboundRecord, Outbox

__all__ = ["Attempts", "Backoff"]


class Backoff:
    """Exponential backoff with full jitter between attempts."""

    def __init__(self, base: float, cap: float, rng: Callable[[], float] | None = None) -> None:
        self.base = base
        self.cap = cap
        self._rng = rng or random.Random().random  # noqa: S311  (jitter, not security)

    def delay(self, attempt: int, max_attempts: int) -> float | None:
        return delivery.retry_delay(attempt, max_attempts, self.base, self.cap, self._rng())


class Attempts:
    """The running attempt loops, one per delivery key at most."""

    def __init__(
        self,
        *,
        transports: Transports,
        outbox: Outbox,
        telemetry: PublishTelemetry,
        clock: Clock,
        backoff: Backoff,
    ) -> None:
        self._transports = transports
        self._outbox = outbox
        self._telemetry = telemetry
        self._clock = clock
        self._backoff = backoff
        self._running: dict[str, asyncio.Task[None]] = {}
        #: Set when a loop ended without reporting: its record is still pending and
        #: the next scan must take it up again.
        self.lost = False

    def running(self, key: str) -> bool:
        return key in self._running

    def start(self, record: Delivery) -> None:
        if record.key not in self._running:
            self._running[record.key] = asyncio.ensure_future(self._loop(record))

    def finished(self, key: str) -> None:
        """The handler recorded this delivery's outcome; a new loop may start for it."""
        self._running.pop(key, None)

    async def wait(self) -> None:
        """Until every loop running now has reported (for tests and orderly stops)."""
        await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def _loop(self, record: Delivery) -> None:
        """Try a delivery until it succeeds or runs out of attempts, then report."""
        order = record.order
        payload = delivery.notice_for(order, record.channel).model_dump_json().encode()
        now = self._clock()
        outcome = Outcome(
            kind="failed",
            key=record.key,
            attempts=1,
            error="channel is no longer configured",
            at=now,
        )
        transport = self._transports.get(order.tenant, record.channel)
        self._telemetry.in_flight.inc()
        try:
            attempt = 0
            while transport is not None:
                attempt += 1
                try:
                    sent = await transport.deliver(record, payload)
                except DeliveryFailed as exc:
                    self._telemetry.attempted(record, "failed", attempt, str(exc))
                    outcome = Outcome(
                        kind="failed",
                        key=record.key,
                        attempts=attempt,
                        error=str(exc),
                        at=self._clock(),
                    )
                    pause = self._backoff.delay(attempt, transport.max_attempts)
                    if pause is None:
                        break
                    await asyncio.sleep(pause)
                    continue
                self._telemetry.attempted(record, "delivered", attempt)
                outcome = Outcome(
                    kind="delivered",
                    key=record.key,
                    attempts=attempt,
                    payload=sent.decode("utf-8", "replace"),
                    at=self._clock(),
                )
                break
            key = ItemKey(order.tenant, order.item_id).encode()
            await self._outbox.send_all(
                [OutboundRecord(topics.PUBLISH_OUTCOMES, key, outcome.model_dump_json().encode())]
            )
            # The key stays running until the handler has recorded this outcome,
            # so a scan does not start the same delivery again meanwhile.
        except BaseException:
            self._running.pop(record.key, None)
            self.lost = True
            raise
        finally:
            self._telemetry.in_flight.dec()
