"""Publish's delivery rules as a pure function: (record, input, now) -> (record, effects).

One durable :class:`~services.publish.delivery.Delivery` record per (tenant,
item, version, channel, action) is checked before anything is sent: a repeated
order never reaches a receiver twice, every order ends ``delivered`` or
``dead``, and a dead letter redelivered starts a fresh attempt under the same
delivery id. Nothing here does I/O or reads the clock; the shell writes the
effects, then saves the record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from schemas.events import DeadLetter, DeliveryReceipt, ReleaseOrder
from services.publish.delivery import (
    Delivery,
    DeliveryKind,
    Outcome,
    dead_letter,
    notice_for,
    pending,
    receipt_for,
)

__all__ = [
    "DeadLettered",
    "Delivered",
    "Duplicate",
    "Effect",
    "Input",
    "Order",
    "StartAttempts",
    "WriteToTopic",
    "decide",
]


@dataclass(frozen=True)
class Order:
    """A release order for one of its channels. A Kafka channel names its *topic*,
    written at once; the others (None) are attempted in the background."""

    order: ReleaseOrder
    channel: str
    topic: str | None
    #: Not a publication (an e-mail about a held item, a status for the CMS): no
    #: receipt, no archive.
    kind: DeliveryKind = "publication"
    #: A status's own delivery key (a version has several statuses) and exact payload.
    key: str | None = None
    payload: str | None = None


Input = Order | Outcome


@dataclass(frozen=True)
class WriteToTopic:
    """Write the notice to a Kafka channel's topic."""

    record: Delivery
    topic: str
    payload: bytes


@dataclass(frozen=True)
class StartAttempts:
    """Attempt a webhook or SMTP delivery in the background, at the record's
    ``next_attempt_at`` (now when it has none): first, after a failed attempt, or
    after a redelivery."""

    record: Delivery
    redelivery: bool = False


@dataclass(frozen=True)
class Delivered:
    """The receiver has it: a publication is archived exactly as sent and the gate gets
    its receipt (unless the attempt sent it already); a notification has neither."""

    record: Delivery
    payload: bytes
    receipt: DeliveryReceipt | None


@dataclass(frozen=True)
class Duplicate:
    """An order already ended; the receipt is sent again when it was delivered, since
    a crash may have lost it and receipts are idempotent."""

    record: Delivery
    receipt: DeliveryReceipt | None


@dataclass(frozen=True)
class DeadLettered:
    record: Delivery
    letter: DeadLetter


Effect = WriteToTopic | StartAttempts | Delivered | Duplicate | DeadLettered


def _receipt(record: Delivery, now: datetime) -> DeliveryReceipt | None:
    if record.kind != "publication":
        return None
    return receipt_for(record.order, record.channel, now)


def _delivered(record: Delivery, attempts: int, now: datetime) -> Delivery:
    return record.model_copy(
        update={
            "status": "delivered",
            "attempts": attempts,
            "error": None,
            "next_attempt_at": None,
            "updated_at": now,
        }
    )


def _on_order(
    record: Delivery | None, inp: Order, now: datetime
) -> tuple[Delivery | None, tuple[Effect, ...]]:
    if record is not None and record.status != "pending":
        receipt = (
            _receipt(record.model_copy(update={"order": inp.order}), record.updated_at)
            if record.status == "delivered"
            else None
        )
        return record, (Duplicate(record, receipt),)
    # A pending record seen again means the order is replayed after a crash in
    # the middle of it: finish it, under the same delivery id.
    record = record or pending(
        inp.order, inp.channel, now, inp.kind, key=inp.key, payload=inp.payload
    )
    if inp.topic is None:
        return record, (StartAttempts(record),)
    payload = notice_for(inp.order, inp.channel).model_dump_json().encode()
    done = _delivered(record, 1, now)
    return done, (
        WriteToTopic(record, inp.topic, payload),
        Delivered(done, payload, _receipt(done, now)),
    )


def _on_outcome(
    record: Delivery | None, inp: Outcome, now: datetime
) -> tuple[Delivery | None, tuple[Effect, ...]]:
    if record is None:
        return None, ()
    if inp.kind == "delivered" and record.status == "pending":
        done = _delivered(record, inp.attempts, now)
        payload = (inp.payload or "").encode()
        receipt = None if inp.receipted else _receipt(done, now)
        return done, (Delivered(done, payload, receipt),)
    if inp.kind == "retry" and record.status == "pending" and inp.retry_at is not None:
        waiting = record.model_copy(
            update={
                "attempts": inp.attempts,
                "error": inp.error,
                "next_attempt_at": inp.retry_at,
                "updated_at": now,
            }
        )
        return waiting, (StartAttempts(waiting),)
    if inp.kind == "failed" and record.status == "pending":
        dead = record.model_copy(
            update={
                "status": "dead",
                "attempts": inp.attempts,
                "error": inp.error,
                "updated_at": now,
            }
        )
        return dead, (DeadLettered(dead, dead_letter(dead, now)),)
    if inp.kind == "redeliver" and record.status == "dead":
        fresh = record.model_copy(
            update={
                "status": "pending",
                "attempts": 0,
                "error": None,
                "next_attempt_at": None,
                "updated_at": now,
            }
        )
        return fresh, (StartAttempts(fresh, redelivery=True),)
    return record, ()


def decide(
    record: Delivery | None, inp: Input, now: datetime
) -> tuple[Delivery | None, tuple[Effect, ...]]:
    """Feed one input to one delivery's record; return the record to save and what to do."""
    if isinstance(inp, Order):
        return _on_order(record, inp, now)
    return _on_outcome(record, inp, now)
