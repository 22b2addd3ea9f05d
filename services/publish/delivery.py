"""Pure delivery logic: what a channel receives, how it is keyed, when to retry.

No I/O and no clock: the shell passes ``now`` and a random source in.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Literal

from schemas._base import Immutable
from schemas.events import DeadLetter, DeliveryReceipt, PublishedNotice, ReleaseOrder, Sender

__all__ = [
    "Delivery",
    "DeliveryKind",
    "DeliveryStatus",
    "Outcome",
    "archive_record",
    "dead_letter",
    "delivery_key",
    "id_of",
    "notice_for",
    "pending",
    "receipt_for",
    "render_email",
    "signature_lines",
    "webhook_id",
]


def delivery_key(order: ReleaseOrder, channel: str) -> str:
    """The identity of one delivery: (tenant, item, version, channel, action)."""
    return f"{order.tenant}:{order.item_id}:{order.version}:{channel}:{order.action}"


def webhook_id(order: ReleaseOrder, channel: str) -> str:
    """Stable across every retry and redelivery of one delivery, so receivers can deduplicate."""
    return id_of(delivery_key(order, channel))


def id_of(key: str) -> str:
    """The delivery id of the delivery keyed *key*: its ``webhook-id``."""
    return "gk_" + hashlib.sha256(key.encode()).hexdigest()[:32]


def notice_for(order: ReleaseOrder, channel: str) -> PublishedNotice:
    return PublishedNotice(
        tenant=order.tenant,
        channel=channel,
        action=order.action,
        item_id=order.item_id,
        version=order.version,
        title=order.title,
        body=order.body,
        summary=order.summary,
        recipients=order.recipients,
        sender=order.sender,
        images=order.images,
        links=order.links,
        language=order.language,
        released_at=order.released_at,
        decision_id=order.decision_id,
    )


def receipt_for(order: ReleaseOrder, channel: str, now: datetime) -> DeliveryReceipt:
    return DeliveryReceipt(
        decision_id=order.decision_id,
        tenant=order.tenant,
        item_id=order.item_id,
        version=order.version,
        action=order.action,
        audience=order.audience,
        channel=channel,
        delivered_at=now,
    )


def signature_lines(sender: Sender) -> list[str]:
    """The sender block as text: the organization is always named (avsändare)."""
    lines = ["-- ", sender.organization, sender.unit]
    contact = sender.contact
    lines.append(", ".join(p for p in (contact.name, contact.email, contact.phone) if p))
    lines.append(sender.website)
    return lines


def render_email(order: ReleaseOrder) -> tuple[str, str]:
    """Subject and plain-text body of an e-mail, the sender block as its signature."""
    prefix = "Tillbakadraget: " if order.action == "retract" else ""
    subject = f"{prefix}{order.title} ({order.sender.organization})"
    parts = [order.title, ""]
    if order.summary:
        parts += [order.summary, ""]
    parts += [order.body, "", f"Mottagare: {order.recipients}"]
    parts += [f"{link.text}: {link.url}" for link in order.links]
    parts += ["", *signature_lines(order.sender)]
    return subject, "\n".join(parts) + "\n"


def archive_record(channel: str, payload: bytes, now: datetime) -> dict[str, str]:
    """What the archive keeps of one publication, exactly as sent."""
    return {
        "channel": channel,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "sent_at": now.isoformat(),
        "payload": payload.decode("utf-8", "replace"),
    }


DeliveryStatus = Literal["pending", "delivered", "dead"]
#: A publication goes to a channel and is receipted and archived; a notification
#: is an e-mail about a held item and a status a CMS's status webhook call: neither
#: is receipted nor archived.
DeliveryKind = Literal["publication", "notification", "status"]


class Delivery(Immutable):
    """Publish's durable record of one delivery, checked before anything is sent."""

    key: str
    delivery_id: str
    status: DeliveryStatus
    order: ReleaseOrder
    channel: str
    attempts: int = 0
    error: str | None = None
    updated_at: datetime
    #: When the next attempt is due, after a failed one (None: now)
    next_attempt_at: datetime | None = None
    kind: DeliveryKind = "publication"
    #: What a status webhook receives, exactly (a publication's is made from its order).
    payload: str | None = None


class Outcome(Immutable):
    """What an attempt learned, or an operator's request to try a dead letter again.

    ``retry``: the attempt failed and another is due at ``retry_at``; ``failed``:
    it failed and no other will be made.
    """

    kind: Literal["delivered", "retry", "failed", "redeliver"]
    key: str
    attempts: int = 0
    error: str | None = None
    payload: str | None = None
    retry_at: datetime | None = None
    at: datetime
    #: ``delivered``: the attempt sent the receipt with this outcome already
    receipted: bool = False


def pending(
    order: ReleaseOrder,
    channel: str,
    now: datetime,
    kind: DeliveryKind = "publication",
    *,
    key: str | None = None,
    payload: str | None = None,
) -> Delivery:
    key = key or delivery_key(order, channel)
    return Delivery(
        kind=kind,
        payload=payload,
        key=key,
        delivery_id=id_of(key),
        status="pending",
        order=order,
        channel=channel,
        updated_at=now,
    )


def dead_letter(record: Delivery, now: datetime) -> DeadLetter:
    order = record.order
    return DeadLetter(
        delivery_id=record.delivery_id,
        tenant=order.tenant,
        item_id=order.item_id,
        version=order.version,
        action=order.action,
        channel=record.channel,
        reason=record.error or "failed",
        attempts=max(record.attempts, 1),
        failed_at=now,
        order=order,
    )
