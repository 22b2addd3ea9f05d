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

from schemas.events import FollowUpReport, Notification, ReleaseOrder, Sender
from services.runtime.swedish import month_name

__all__ = ["REPORT_CHANNEL", "channel_of", "order_for", "report_order"]

_PREFIX = "notify-"
#: The monthly follow-up e-mail's channel.
REPORT_CHANNEL = "notify-report"
_ZONE = ZoneInfo("Europe/Stockholm")


def channel_of(kind: str) -> str:
    return f"{_PREFIX}{kind}"


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


def _lead(seconds: float | None) -> str:
    if seconds is None:
        return "ingen extern publicering efter intern information"
    hours = seconds / 3600
    return f"{hours:.1f} timmar".replace(".", ",") if hours < 48 else f"{hours / 24:.0f} dygn"


def report_order(
    report: FollowUpReport, organization: Sender, recipients: Sequence[str]
) -> ReleaseOrder:
    """The monthly follow-up e-mail as a delivery order: one per (tenant, month)."""
    period = month_name(report.month)
    lines = ["Hej!", "", f"Så här levde {organization.organization} policyn i {period}:", ""]
    for unit in report.units:
        lines += [
            f"{unit.unit}:",
            f"- Externt publicerade: {unit.external_released}",
            f"- Intern framförhållning (median): {_lead(unit.internal_lead_median_s)}",
            f"- Kvarhållna: {unit.held}, varav eskalerade: {unit.escalated}",
            f"- Släppta av en person: {unit.overridden}, stoppade: {unit.rejected_by_operator}",
            "",
        ]
    lines += ["Hela uppföljningen, med diagram och CSV för Excel:", report.console_url]
    return ReleaseOrder(
        decision_id=report.report_id,
        event_id=None,
        tenant=report.tenant,
        item_id=f"uppfoljning-{report.month}",
        version=1,
        action="publish",
        audience="internal",
        channels=[REPORT_CHANNEL],
        title=f"Uppföljning av kommunikationspolicyn, {period}",
        body="\n".join(lines),
        summary=None,
        recipients=", ".join(recipients),
        sender=organization,
        released_at=report.decided_at,
    )
