"""The bodies the HTTP APIs answer with, as models: what ``/openapi.json`` describes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import ContentFinding

__all__ = [
    "DeadLetterPage",
    "DeadLetterRow",
    "Decided",
    "EventAccepted",
    "EventDuplicate",
    "FieldError",
    "FollowUpAnswer",
    "HeldPage",
    "HeldRow",
    "Problem",
    "Readiness",
    "Reason",
    "RedeliveryRequested",
    "UnitFigures",
]


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


class FieldError(_Answer):
    field: str = Field(description="where: a path into the body, or a header or parameter")
    detail: str = Field(description="what is wrong with it")
    pointer: str | None = Field(default=None, description="a JSON pointer into the body")


class Problem(_Answer):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldError] | None = Field(
        default=None, description="with 400 and 422: every field and its problem"
    )


class EventAccepted(_Answer):
    status: Literal["accepted"]
    event_id: str


class EventDuplicate(_Answer):
    status: Literal["duplicate"]
    event_id: str
    webhook_id: str


class HeldRow(_Answer):
    tenant: str
    item_id: str
    version: int
    audience: Literal["internal", "external"]
    channels: list[str]
    unit: str
    title: str
    reasons: list[str]
    findings: list[ContentFinding]
    held_since: str
    publish_at: str
    escalated: bool
    event_id: str
    warnings: list[str]


class HeldPage(_Answer):
    held: list[HeldRow]
    count: int = Field(description="every row that matches, on every page")
    next_cursor: str | None = Field(description="the next page's cursor; null on the last")
    as_of: str | None = Field(
        default=None,
        description="when this gate process last had every process's holds (ISO 8601); "
        "an item held or released on another process shows well under a second later",
    )


class Decided(_Answer):
    status: Literal["released", "rejected", "requested"]
    request_id: str
    tenant: str
    item_id: str
    operator: str


class DeadLetterRow(_Answer):
    delivery_id: str
    tenant: str
    item_id: str
    version: int
    action: str
    channel: str
    reason: str | None
    attempts: int
    failed_at: str


class DeadLetterPage(_Answer):
    dead_letters: list[DeadLetterRow]
    count: int


class RedeliveryRequested(_Answer):
    status: Literal["redelivery requested"]
    delivery_id: str


class Readiness(_Answer):
    status: Literal["ready", "starting", "unavailable", "ok"]
    reason: str | None = None


class Reason(BaseModel):
    """Why a person releases or rejects, as the audit trail keeps it."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1)


class UnitFigures(_Answer):
    """One unit's figures for one month (CONTRACT 5, "Follow-up")."""

    unit: str
    #: External item versions released (by the rule, by a person or in a crisis).
    external_released: int = 0
    #: Time from the internal notice's delivery to the external release, seconds.
    internal_lead_median_s: float | None = None
    internal_lead_p90_s: float | None = None
    #: Item versions held, and by each reason.
    held: int = 0
    held_by_reason: dict[str, int] = Field(default_factory=dict)
    #: How long a hold lasted before its release, seconds.
    held_median_s: float | None = None
    escalated: int = 0
    overridden: int = 0
    rejected_by_operator: int = 0
    crisis: int = 0
    #: External item versions with a content finding, by rule.
    findings_by_rule: dict[str, int] = Field(default_factory=dict)
    retracted: int = 0
    #: The mean readability (LIX) of the external versions' texts.
    mean_lix: float | None = None


class FollowUpAnswer(_Answer):
    """``GET /v1/follow-up``: one tenant's month, per unit of the events."""

    tenant: str
    month: str = Field(description="YYYY-MM, in Europe/Stockholm")
    units: list[UnitFigures]
