"""What becomes of a held version: its reasons, when it wakes, its release, its
notifications and escalation, each as decisions and orders to write.

A pure core used by :mod:`services.gate.machine`: no clock, no I/O.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from schemas.events import (
    Audience,
    ContentEvent,
    Decision,
    DecisionKind,
    ManualReject,
    ManualRelease,
    ReleaseOrder,
)
from services.gate.state import (
    AUDIENCES,
    AWAITING_INTERNAL_LEAD,
    AWAITING_INTERNAL_NOTICE,
    AWAITING_PUBLISH_AT,
    INTERNAL_NOTICE_RETRACTED,
    GatePolicy,
    Held,
    ItemState,
    Notify,
    sender_for,
)
from services.runtime.identity_numbers import mask_identity_numbers

__all__ = [
    "Out",
    "Person",
    "decision",
    "decision_on",
    "escalation_due",
    "evaluate",
    "notification_due",
    "notify",
    "reasons_for",
    "release",
    "release_order",
    "stable_id",
    "wake_at",
]

_NS = uuid.UUID("2f0f3f76-5a4e-4b6c-8f1e-0d9b8a7c6e5f")


@dataclass
class Out:
    decisions: list[Decision] = field(default_factory=list)
    releases: list[ReleaseOrder] = field(default_factory=list)
    notifications: list[Notify] = field(default_factory=list)


def stable_id(*parts: object) -> str:
    return str(uuid.uuid5(_NS, ":".join(str(p) for p in parts)))


Person = ManualRelease | ManualReject


def decision(
    kind: DecisionKind,
    state: ItemState,
    now: datetime,
    *,
    trigger: str,
    reason: str,
    rule: str,
    version: int,
    audience: Audience | None = None,
    channels: Sequence[str] = (),
    event_id: str | None = None,
    crisis: bool = False,
) -> Decision:
    """A decision about no held version: a retract, a stale version, a refusal."""
    return Decision(
        decision_id=stable_id(trigger, kind, audience, version),
        kind=kind,
        reason=reason,
        rule=rule,
        tenant=state.tenant,
        item_id=state.item_id,
        version=version,
        audience=audience,
        channels=list(channels),
        event_id=event_id,
        crisis=crisis,
        decided_at=now,
    )


def decision_on(
    kind: DecisionKind,
    state: ItemState,
    held: Held,
    audience: Audience,
    now: datetime,
    *,
    trigger: str,
    reason: str,
    rule: str,
    crisis: bool = False,
    by: Person | None = None,
    internal_lead_s: float | None = None,
) -> Decision:
    """A decision about the version *held* for *audience*: its version, channels,
    event, findings and times come from it; *by* is the person who decided."""
    event = held.event
    return decision(
        kind,
        state,
        now,
        trigger=trigger,
        reason=reason,
        rule=rule,
        version=event.version,
        audience=audience,
        channels=event.channels,
        event_id=held.event_id,
        crisis=crisis,
    ).model_copy(
        update={
            "warnings": list(held.warnings),
            "findings": list(held.findings),
            "held_since": held.held_since,
            "publish_at": event.publish_at,
            "operator_reason": by.reason if by else None,
            "operator": by.operator if by else None,
            "operator_email": by.operator_email if by else None,
            "unit": mask_identity_numbers(event.unit),
            "internal_lead_s": internal_lead_s,
            "lix": held.lix,
        }
    )


def release_order(
    decision: Decision,
    event: ContentEvent,
    channels: Sequence[str],
    policy: GatePolicy,
    now: datetime,
    audience: Audience,
) -> ReleaseOrder:
    return ReleaseOrder(
        decision_id=decision.decision_id,
        event_id=decision.event_id,
        tenant=event.tenant,
        item_id=event.item_id,
        version=event.version,
        action=event.action,
        audience=audience,
        channels=list(channels),
        title=event.title,
        body=event.body,
        summary=event.summary,
        recipients=event.recipients,
        sender=sender_for(policy, event),
        images=list(event.images),
        links=list(event.links),
        language=event.language,
        crisis=event.crisis,
        released_at=now,
    )


def reasons_for(
    state: ItemState, held: Held, audience: str, now: datetime, policy: GatePolicy
) -> tuple[str, ...]:
    reasons: list[str] = [r for r in held.reasons if r.startswith("content_check:")]
    if audience == "external":
        if state.internal_delivered_at is None:
            told_then_withdrawn = state.internal_retracted > 0
            reasons.append(
                INTERNAL_NOTICE_RETRACTED if told_then_withdrawn else AWAITING_INTERNAL_NOTICE
            )
        elif now < state.internal_delivered_at + policy.internal_lead:
            reasons.append(AWAITING_INTERNAL_LEAD)
    if now < held.event.publish_at:
        reasons.append(AWAITING_PUBLISH_AT)
    return tuple(reasons)


def wake_at(state: ItemState, policy: GatePolicy, now: datetime) -> datetime | None:
    """The next moment after *now* at which time alone could change a decision here."""
    times: list[datetime] = []
    for audience, held in state.held.items():
        times.append(held.event.publish_at)
        if audience == "external" and state.internal_delivered_at is not None:
            times.append(state.internal_delivered_at + policy.internal_lead)
        if not held.escalated:
            times.append(escalation_due(held, policy))
        if policy.notify_after is not None and not held.notified:
            times.append(notification_due(held, policy.notify_after))
    future = [t for t in times if t > now]
    return min(future) if future else None


def notification_due(held: Held, notify_after: timedelta) -> datetime:
    return max(held.held_since, held.event.publish_at) + notify_after


def notify(
    state: ItemState,
    out: Out,
    held: Held,
    audience: Audience,
    now: datetime,
    kind: Literal["held", "escalated"],
) -> None:
    """Ask for an e-mail about *held*, audited as a ``notified`` decision."""
    trigger = f"{held.event_id}:notify:{kind}"
    out.notifications.append(Notify(stable_id(trigger, "notification"), kind, audience, held))
    out.decisions.append(
        decision_on(
            "notified",
            state,
            held,
            audience,
            now,
            trigger=trigger,
            reason=f"e-mail to the contact and the communications desk: {kind}",
            rule="notify_after" if kind == "held" else "notify_on_escalation",
        )
    )


def escalation_due(held: Held, policy: GatePolicy) -> datetime:
    # A notice scheduled for later is not late: the escalation clock starts when
    # the item could first have gone out.
    return max(held.held_since, held.event.publish_at) + policy.escalate_after


def release(
    state: ItemState,
    out: Out,
    held: Held,
    audience: Audience,
    now: datetime,
    policy: GatePolicy,
    *,
    trigger: str,
    kind: DecisionKind = "released",
    rule: str,
    reason: str,
    by: Person | None = None,
) -> ItemState:
    event = held.event
    told = state.internal_delivered_at
    made = decision_on(
        kind,
        state,
        held,
        audience,
        now,
        trigger=trigger,
        reason=reason,
        rule=rule,
        crisis=event.crisis,
        by=by,
        internal_lead_s=(
            (now - told).total_seconds()
            if audience == "external" and event.action == "publish" and told is not None
            else None
        ),
    )
    out.decisions.append(made)
    out.releases.append(release_order(made, event, event.channels, policy, now, audience))
    held_now = {a: h for a, h in state.held.items() if a != audience}
    return state.model_copy(
        update={"held": held_now, "released": {**state.released, audience: event.version}}
    )


def evaluate(
    state: ItemState, out: Out, now: datetime, policy: GatePolicy, trigger: str
) -> ItemState:
    """Release what may go now; re-state or escalate what must keep waiting."""
    for audience in AUDIENCES:
        held = state.held.get(audience)
        if held is None:
            continue
        reasons = reasons_for(state, held, audience, now, policy)
        if not reasons:
            rule = "internal_notice" if audience == "internal" else "internal_before_external"
            why = (
                "internal notice due"
                if audience == "internal"
                else "internal notice delivered; lead time and publish_at passed"
            )
            state = release(
                state, out, held, audience, now, policy, trigger=trigger, rule=rule, reason=why
            )
            continue
        if reasons != held.reasons:
            held = held.model_copy(update={"reasons": reasons})
            state = state.model_copy(update={"held": {**state.held, audience: held}})
        waiting_on_more_than_time = any(r != AWAITING_PUBLISH_AT for r in reasons)
        notify_after = policy.notify_after
        if (
            notify_after is not None
            and not held.notified
            and waiting_on_more_than_time
            and now >= notification_due(held, notify_after)
        ):
            held = held.model_copy(update={"notified": True})
            state = state.model_copy(update={"held": {**state.held, audience: held}})
            notify(state, out, held, audience, now, "held")
        if not held.escalated and waiting_on_more_than_time and now >= escalation_due(held, policy):
            held = held.model_copy(update={"escalated": True})
            state = state.model_copy(update={"held": {**state.held, audience: held}})
            out.decisions.append(
                decision_on(
                    "escalated",
                    state,
                    held,
                    audience,
                    now,
                    trigger=f"{held.event_id}:escalate",
                    reason=f"held longer than {policy.escalate_after}: {', '.join(reasons)}",
                    rule="escalate_after",
                )
            )
            if notify_after is not None:
                notify(state, out, held, audience, now, "escalated")
    return state.model_copy(update={"wake_at": wake_at(state, policy, now)})
