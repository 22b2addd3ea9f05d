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
    "HeldPage",
    "HeldRow",
    "Problem",
    "Readiness",
    "Reason",
    "RedeliveryRequested",
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
