"""What the gate knows and is told: a tenant's policy, an item's state and what it
holds, the inputs the policy function takes and the effects it answers.

A pure core, as :mod:`services.gate.machine`, whose values these are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pydantic import Field

from schemas._base import Immutable
from schemas.events import (
    Audience,
    Contact,
    ContentEvent,
    ContentFinding,
    Decision,
    DeliveryReceipt,
    ManualReject,
    ManualRelease,
    ReleaseOrder,
    Sender,
    Tick,
)

__all__ = [
    "AUDIENCES",
    "AWAITING_INTERNAL_LEAD",
    "AWAITING_INTERNAL_NOTICE",
    "AWAITING_PUBLISH_AT",
    "INTERNAL_NOTICE_RETRACTED",
    "Accepted",
    "Effects",
    "GatePolicy",
    "Held",
    "Input",
    "ItemState",
    "Notify",
    "Receipt",
    "sender_for",
]

#: Each audience, internal first: what staff are told is looked at before the rest.
AUDIENCES: tuple[Audience, ...] = ("internal", "external")
AWAITING_INTERNAL_NOTICE = "awaiting_internal_notice"


AWAITING_INTERNAL_LEAD = "awaiting_internal_lead"


AWAITING_PUBLISH_AT = "awaiting_publish_at"


#: CONTRACT 3.7: staff were told the information is withdrawn; not told any more.
INTERNAL_NOTICE_RETRACTED = "internal_notice_retracted"


@dataclass(frozen=True)
class GatePolicy:
    """What the gate needs to know of one tenant."""

    organization: str
    logo_url: str
    website: str
    contact: Contact
    internal_lead: timedelta = timedelta(0)
    escalate_after: timedelta = timedelta(hours=4)
    crisis_lane: bool = False
    internal_channels: tuple[str, ...] = ("intranet",)
    #: When a hold waiting on a person is told by e-mail; None: the tenant has no notifications.
    notify_after: timedelta | None = None


class Held(Immutable):
    """One version waiting for release, with everything needed to release it later."""

    event_id: str
    event: ContentEvent
    held_since: datetime
    reasons: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    findings: tuple[ContentFinding, ...] = ()
    escalated: bool = False
    notified: bool = False
    #: An external text's LIX, for follow-up.
    lix: float | None = None


class ItemState(Immutable):
    """Everything the gate remembers of one (tenant, item)."""

    tenant: str
    item_id: str
    latest: dict[str, int] = Field(default_factory=dict)  # audience -> newest version seen
    released: dict[str, int] = Field(default_factory=dict)  # audience -> newest version released
    internal_delivered_at: datetime | None = None
    #: the newest internal version retracted: only a newer internal notice tells again
    internal_retracted: int = 0
    published: dict[str, int] = Field(default_factory=dict)  # channel -> version delivered
    held: dict[str, Held] = Field(default_factory=dict)  # audience -> what waits
    rejected: dict[str, int] = Field(
        default_factory=dict
    )  # audience -> version an operator rejected
    seen_events: tuple[str, ...] = ()
    wake_at: datetime | None = None

    def is_held(self) -> bool:
        return bool(self.held)


@dataclass(frozen=True)
class Accepted:
    event_id: str
    event: ContentEvent
    findings: tuple[ContentFinding, ...] = ()  # what the content checks found
    lix: float | None = None  # an external text's readability, for follow-up


@dataclass(frozen=True)
class Receipt:
    receipt: DeliveryReceipt


#: Besides these two, the gate's own commands are inputs as they are: a
#: :class:`~schemas.events.Tick` (time moved on: publish_at, lead or escalation
#: may be due), and an operator's :class:`~schemas.events.ManualRelease` or
#: :class:`~schemas.events.ManualReject`.
Input = Accepted | Receipt | Tick | ManualRelease | ManualReject


@dataclass(frozen=True)
class Notify:
    """An e-mail about a hold is due: ``held`` after notify_after, ``escalated`` at escalation."""

    notification_id: str
    kind: Literal["held", "escalated"]
    audience: Audience
    held: Held


@dataclass(frozen=True)
class Effects:
    decisions: tuple[Decision, ...] = ()
    releases: tuple[ReleaseOrder, ...] = ()
    notifications: tuple[Notify, ...] = ()


def sender_for(policy: GatePolicy, event: ContentEvent) -> Sender:
    """The sender block an item goes out with: the tenant, and the event's unit and contact."""
    return Sender(
        organization=policy.organization,
        unit=event.unit,
        contact=event.contact or policy.contact,
        logo_url=policy.logo_url,
        website=policy.website,
    )
