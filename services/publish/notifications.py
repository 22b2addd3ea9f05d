"""Notification e-mails about held items, as deliveries publish makes once each.

Pure: a :class:`~schemas.events.Notification` from the gate becomes a delivery
order on a channel of its own (``notify-held``, ``notify-escalated``), so the
delivery rules that keep publications to one each also keep each e-mail to
one per (item, version, kind), with retries and dead letters like any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from schemas.events import Notification, ReleaseOrder, Sender

__all__ = ["channel_of", "is_notification_channel", "order_for"]

_PREFIX = "notify-"
_ZONE = ZoneInfo("Europe/Stockholm")


def channel_of(kind: str) -> str:
    return f"{_PREFIX}{kind}"


def is_notification_channel(channel: str) -> bool:
    return channel.startswith(_PREFIX)


def _when(at: datetime) -> str:
    return at.astimezone(_ZONE).strftime("%Y-%m-%d %H:%M")


def _text(n: Notification, organization: str) -> tuple[str, str]:
    if n.kind == "held":
        subject = f"Väntar på beslut: {n.title}"
        opening = f"”{n.title}” ({n.unit}) från {organization} är inte publicerad än."
    else:
        subject = f"Eskalerat: {n.title} väntar fortfarande"
        opening = (
            f"”{n.title}” ({n.unit}) från {organization} har väntat längre än "
            "vad kommunen har bestämt och är eskalerad."
        )
    lines = ["Hej!", "", opening, "", "Varför den väntar:"]
    lines += [f"- {reason}" for reason in n.reasons] or ["- Väntar på beslut"]
    lines += [
        "",
        f"Väntat sedan: {_when(n.held_since)}",
        f"Publiceringstid: {_when(n.publish_at)}",
        "",
        "Se texten och besluta i konsolen:",
        n.console_url,
    ]
    return subject, "\n".join(lines)


def order_for(n: Notification, organization: Sender, recipients: Sequence[str]) -> ReleaseOrder:
    """The notification as a delivery order: the e-mail's subject as title, its text as
    body, signed by the tenant's *organization* sender block with the item's unit."""
    subject, text = _text(n, organization.organization)
    return ReleaseOrder(
        decision_id=n.notification_id,
        event_id=None,
        tenant=n.tenant,
        item_id=n.item_id,
        version=n.version,
        action="publish",
        audience=n.audience,
        channels=[channel_of(n.kind)],
        title=subject,
        body=text,
        summary=None,
        recipients=", ".join(recipients),
        sender=organization.model_copy(update={"unit": n.unit or organization.unit}),
        released_at=n.decided_at,
    )
