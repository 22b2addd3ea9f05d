"""Every event gatekeeper's services exchange, version 1.

Field names follow the external contract (CONTRACT.md) word for word. A change
that is not backwards compatible gets a new ``schema_version``; version 1 is
never edited in place.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, StringConstraints, ValidationInfo, field_validator

from schemas._base import Immutable

__all__ = [
    "ITEM_ID_PATTERN",
    "PRESS_CHANNEL",
    "AcceptedEvent",
    "Action",
    "Audience",
    "Contact",
    "ContentEvent",
    "ContentFinding",
    "DeadLetter",
    "Decision",
    "DecisionKind",
    "DeliveryReceipt",
    "FollowUpReport",
    "GateCommand",
    "Image",
    "ItemId",
    "ItemStatus",
    "Link",
    "ManualReject",
    "ManualRelease",
    "Notification",
    "PublishedNotice",
    "Recorded",
    "ReleaseOrder",
    "Sender",
    "StatusKind",
    "StatusReason",
    "Tick",
]

#: A channel of this name carries press releases; its items need a spokesperson.
PRESS_CHANNEL = "press"

#: The one pattern of an item id; its length is 1-200.
ITEM_ID_PATTERN = r"^[A-Za-z0-9._:-]+$"
ItemId = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=ITEM_ID_PATTERN)]
NonEmpty = Annotated[str, StringConstraints(min_length=1)]
#: One e-mail address: no list, no name part, no line break (it goes into mail headers).
EmailAddress = Annotated[
    str,
    StringConstraints(max_length=254, pattern=r"^[^@\s,;<>()\[\]:\\\"]+@[^@\s,;<>()\[\]:\\\"]+$"),
]
Action = Literal["publish", "retract"]
Audience = Literal["internal", "external"]


class Contact(Immutable):
    """A person the public or the press can reach (talesperson)."""

    name: NonEmpty
    email: EmailAddress | None = None
    phone: str | None = None


class Image(Immutable):
    """An image with its alternative text; an empty ``alt`` must be declared decorative."""

    url: NonEmpty
    decorative: bool = False
    alt: str

    @field_validator("alt")
    @classmethod
    def _alt_text_or_decorative(cls, alt: str, info: ValidationInfo) -> str:
        if not alt.strip() and not info.data.get("decorative", False):
            raise ValueError('may be "" only with decorative: true')
        return alt


class Link(Immutable):
    url: NonEmpty
    text: NonEmpty


class ContentEvent(Immutable):
    """What the CMS says about one version of one content item (ContentEvent v1)."""

    schema_version: Literal[1]
    tenant: NonEmpty
    item_id: ItemId
    version: int = Field(ge=1)
    action: Action
    audience: Audience
    channels: list[NonEmpty]
    title: NonEmpty
    body: NonEmpty
    summary: str | None = None
    recipients: NonEmpty
    publish_at: AwareDatetime
    unit: NonEmpty
    contact: Contact | None = None
    images: list[Image] = Field(default_factory=list)
    links: list[Link] = Field(default_factory=list)
    crisis: bool = False
    language: NonEmpty = "sv"


class AcceptedEvent(Immutable):
    """A ContentEvent that passed ingest's validation, on its way to the gate."""

    schema_version: Literal[1] = 1
    event_id: NonEmpty
    tenant: NonEmpty
    item_id: ItemId
    source: Literal["http", "kafka"]
    received_at: AwareDatetime
    event: ContentEvent


class Sender(Immutable):
    """Who speaks (avsändare): always the municipality, with its responsible unit."""

    organization: NonEmpty
    unit: NonEmpty
    contact: Contact
    logo_url: str
    website: str


class ReleaseOrder(Immutable):
    """The gate's word that one item version may go to the named channels now."""

    schema_version: Literal[1] = 1
    decision_id: NonEmpty
    tenant: NonEmpty
    item_id: ItemId
    version: int = Field(ge=1)
    action: Action
    audience: Audience
    channels: list[NonEmpty]
    event_id: str | None = None  # the CMS event this release answers, for tracing
    title: str
    body: str
    summary: str | None = None
    recipients: str
    sender: Sender
    images: list[Image] = Field(default_factory=list)
    links: list[Link] = Field(default_factory=list)
    language: str = "sv"
    crisis: bool = False
    released_at: AwareDatetime


class PublishedNotice(Immutable):
    """What a Kafka or webhook channel receives."""

    schema_version: Literal[1] = 1
    tenant: NonEmpty
    channel: NonEmpty
    action: Action
    item_id: ItemId
    version: int = Field(ge=1)
    title: str
    body: str
    summary: str | None = None
    recipients: str
    sender: Sender
    images: list[Image] = Field(default_factory=list)
    links: list[Link] = Field(default_factory=list)
    language: str = "sv"
    released_at: AwareDatetime
    decision_id: NonEmpty


class DeliveryReceipt(Immutable):
    """Publish's word that one (item, version, channel) reached its receiver."""

    schema_version: Literal[1] = 1
    decision_id: NonEmpty
    tenant: NonEmpty
    item_id: ItemId
    version: int = Field(ge=1)
    action: Action
    audience: Audience
    channel: NonEmpty
    delivered_at: AwareDatetime


class DeadLetter(Immutable):
    """A delivery that failed its last attempt, on ``publish.dlq``; ops may redeliver it."""

    schema_version: Literal[1] = 1
    delivery_id: NonEmpty
    tenant: NonEmpty
    item_id: ItemId
    version: int = Field(ge=1)
    action: Action
    channel: NonEmpty
    reason: NonEmpty
    attempts: int = Field(ge=1)
    failed_at: AwareDatetime
    order: ReleaseOrder


class ContentFinding(Immutable):
    """A content rule an item breaks: what is wrong and how to fix it, in Swedish.

    It says where (the title, link no. 2), never what: an identity number found
    is not repeated here.
    """

    rule: NonEmpty
    action: Literal["block", "warn"]
    message: NonEmpty
    fix: NonEmpty


DecisionKind = Literal[
    "accepted",
    "held",
    "released",
    "rejected",
    "escalated",
    "overridden",
    "retracted",
    "stale",
    "rejected_by_operator",
    "notified",
]


class Decision(Immutable):
    """One line of the audit trail on ``gate.decisions``."""

    schema_version: Literal[1] = 1
    decision_id: NonEmpty
    kind: DecisionKind
    reason: NonEmpty
    rule: NonEmpty
    tenant: NonEmpty
    item_id: ItemId
    version: int = Field(ge=0)
    audience: Audience | None = None
    channels: list[str] = Field(default_factory=list)
    event_id: str | None = None
    crisis: bool = False
    warnings: list[str] = Field(default_factory=list)
    decided_at: AwareDatetime
    held_since: AwareDatetime | None = None
    publish_at: AwareDatetime | None = None
    operator_reason: str | None = None
    #: The person who decided, for decisions an operator made, and their e-mail.
    operator: str | None = None
    operator_email: str | None = None
    #: The content rules the version breaks, blocking or warning, with how to fix them.
    findings: list[ContentFinding] = Field(default_factory=list)
    #: The unit of the event the decision is about (identity numbers masked): follow-up
    #: counts per unit.
    unit: str | None = None
    #: An external release: seconds since the item's internal notice was delivered.
    internal_lead_s: float | None = None
    #: An external version: the readability (LIX) of its body.
    lix: float | None = None


class Notification(Immutable):
    """An e-mail the gate asks publish to send about a held item, on ``gate.notifications``.

    At most one per (tenant, item, version, kind): ``held`` once the item has
    waited the tenant's ``notify_after``, ``escalated`` at its escalation.
    """

    schema_version: Literal[1] = 1
    notification_id: NonEmpty
    kind: Literal["held", "escalated"]
    tenant: NonEmpty
    item_id: ItemId
    version: int = Field(ge=1)
    audience: Audience
    title: str
    unit: str
    #: Why it waits, in plain Swedish.
    reasons: list[str]
    held_since: AwareDatetime
    publish_at: AwareDatetime
    #: The item's contact, who gets the e-mail besides the communications desk.
    contact_email: str | None = None
    console_url: str
    decided_at: AwareDatetime


class ReportUnit(Immutable):
    """One unit's headline figures in the monthly follow-up e-mail."""

    unit: NonEmpty
    external_released: int = Field(ge=0)
    internal_lead_median_s: float | None = None
    held: int = Field(ge=0)
    escalated: int = Field(ge=0)
    overridden: int = Field(ge=0)
    rejected_by_operator: int = Field(ge=0)


class FollowUpReport(Immutable):
    """The gate's request for the monthly follow-up e-mail to a tenant's communications
    desk, on ``gate.notifications`` (header ``gatekeeper-kind: report``); publish sends
    it at most once per (tenant, month)."""

    schema_version: Literal[1] = 1
    report_id: NonEmpty
    tenant: NonEmpty
    #: The month reported on, YYYY-MM in Europe/Stockholm.
    month: str = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")
    units: list[ReportUnit]
    #: The console's follow-up page of that month.
    console_url: str
    decided_at: AwareDatetime


#: What the CMS is told about an item version: an operator's release is ``released``
#: and an operator's rejection ``rejected``, as an editor sees them.
StatusKind = Literal["held", "released", "rejected", "escalated"]


class StatusReason(Immutable):
    """One reason an item waits: its code (CONTRACT section 3) and what it means, in Swedish."""

    code: NonEmpty
    text: NonEmpty


class ItemStatus(Immutable):
    """What the CMS's status webhook receives about one item version, on ``gate.status``.

    One per decision the editor would want to see in the CMS; ``status_id`` is
    the decision's id, so a status sent again after a crash keeps its
    ``webhook-id`` and the CMS can deduplicate it.
    """

    schema_version: Literal[1] = 1
    status_id: NonEmpty
    status: StatusKind
    tenant: NonEmpty
    item_id: ItemId
    version: int = Field(ge=1)
    audience: Audience
    #: The CMS event the status answers, when there is one.
    event_id: str | None = None
    decided_at: AwareDatetime
    #: Held and escalated: why it waits, each reason with its Swedish text.
    reasons: list[StatusReason] = Field(default_factory=list)
    #: Held and escalated: where a communicator sees the text and decides.
    console_url: str | None = None
    #: Released: the channels the version goes to, and when it was released.
    channels: list[str] = Field(default_factory=list)
    released_at: AwareDatetime | None = None
    publish_at: AwareDatetime | None = None
    #: Released or rejected by a person: who, and the reason they gave.
    operator: str | None = None
    operator_reason: str | None = None


class Tick(Immutable):
    """A wake-up for one item: its timer (publish_at, lead, escalation) may be due."""

    kind: Literal["tick"] = "tick"
    tenant: NonEmpty
    item_id: ItemId
    at: datetime


class ManualRelease(Immutable):
    """An operator's audited decision to release what is held for one item."""

    kind: Literal["manual_release"] = "manual_release"
    tenant: NonEmpty
    item_id: ItemId
    reason: NonEmpty
    at: AwareDatetime
    request_id: NonEmpty
    operator: NonEmpty = "operator"
    #: the person's e-mail, when they have one (the shared token has none)
    operator_email: str | None = None


class ManualReject(Immutable):
    """An operator's audited decision that what is held for one item is not published."""

    kind: Literal["manual_reject"] = "manual_reject"
    tenant: NonEmpty
    item_id: ItemId
    reason: NonEmpty
    at: AwareDatetime
    request_id: NonEmpty
    operator: NonEmpty
    operator_email: str | None = None


class Recorded(Immutable):
    """A decision made before the gate (ingest refusing a version), for the item's history."""

    kind: Literal["recorded"] = "recorded"
    tenant: NonEmpty
    item_id: ItemId
    decision: Decision


GateCommand = Annotated[Tick | ManualRelease | ManualReject | Recorded, Field(discriminator="kind")]
