"""Webhook and SMTP deliveries attempted in the background, one attempt at a time.

A slow or failing receiver never holds back another channel or item. Each
attempt waits for the time its durable record says, is made, and what it
learned (delivered, retry at a time, or failed for good) goes back through
``publish.outcomes`` to the handler, the only writer of the delivery records;
so a restart resumes every delivery at its next due time. A publication's
receipt goes to the gate with its outcome, not after the handler read it back.
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

__all__ = ["Attempts", "Jitter"]


class Jitter:
    """The dice of the retry waits: a number in [0, 1) each time."""

    def __init__(self, rng: Callable[[], float] | None = None) -> None:
        self._rng = rng or random.Random().random  # noqa: S311  (jitter, not security)

    def __call__(self) -> float:
        return self._rng()


class Attempts:
    """The running attempt loops, one per delivery key at most."""

    def __init__(
        self,
        *,
        transports: Transports,
        outbox: Outbox,
        telemetry: PublishTelemetry,
        clock: Clock,
        jitter: Jitter,
    ) -> None:
        self._transports = transports
        self._outbox = outbox
        self._telemetry = telemetry
        self._clock = clock
        self._jitter = jitter
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
        """Until no attempt is running or waiting (for tests and orderly stops)."""
        while tasks := [t for t in self._running.values() if not t.done()]:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _loop(self, record: Delivery) -> None:
        """Wait for the record's next attempt, make it, and report what it learned."""
        order = record.order
        due = record.next_attempt_at
        if due is not None:
            await asyncio.sleep(max((due - self._clock()).total_seconds(), 0.0))
        self._telemetry.in_flight.inc()
        try:
            outcome = await self._attempt(record)
            key = ItemKey(order.tenant, order.item_id).encode()
            written = [
                OutboundRecord(topics.PUBLISH_OUTCOMES, key, outcome.model_dump_json().encode())
            ]
            if outcome.receipted:
                # The gate learns of the delivery now, not one hop later when the
                # outcome is recorded. Should the outcome be lost in a crash, the
                # next attempt is a repeat to the receiver and sends it again;
                # the gate takes a repeated receipt for what it is.
                receipt = delivery.receipt_for(order, record.channel, outcome.at)
                value = receipt.model_dump_json().encode()
                written.insert(0, OutboundRecord(topics.RECEIPTS, key, value))
            await self._outbox.send_all(written)
            # The key stays running until the handler has recorded this outcome,
            # so a scan does not start the same delivery again meanwhile.
        except BaseException:
            self._running.pop(record.key, None)
            self.lost = True
            raise
        finally:
            self._telemetry.in_flight.dec()

    async def _attempt(self, record: Delivery) -> Outcome:
        attempt = record.attempts + 1
        transport = self._transports.get(record.order.tenant, record.channel)
        if transport is None:
            return Outcome(
                kind="failed",
                key=record.key,
                attempts=attempt,
                error="channel is no longer configured",
                at=self._clock(),
            )
        if record.payload is not None:
            payload = record.payload.encode()
        else:
            payload = delivery.notice_for(record.order, record.channel).model_dump_json().encode()
        try:
            sent = await transport.deliver(record, payload)
        except DeliveryFailed as exc:
            now = self._clock()
            policy = transport.retries
            ended = exc.final or policy.ends(exc.status)
            retry_at = (
                None
                if ended
                else policy.next_attempt_at(attempt, now, exc.retry_after, self._jitter())
            )
            self._telemetry.attempted(record, "failed", attempt, str(exc), retry_at)
            if retry_at is None:
                why = (
                    f"{exc}: {ended}"
                    if ended
                    else f"{exc} (attempt {attempt} of {policy.attempts})"
                )
                return Outcome(kind="failed", key=record.key, attempts=attempt, error=why, at=now)
            return Outcome(
                kind="retry",
                key=record.key,
                attempts=attempt,
                error=str(exc),
                retry_at=retry_at,
                at=now,
            )
        self._telemetry.attempted(record, "delivered", attempt)
        return Outcome(
            kind="delivered",
            key=record.key,
            attempts=attempt,
            payload=sent.decode("utf-8", "replace"),
            at=self._clock(),
            receipted=record.kind == "publication",
        )
