"""The gate's policy as a pure function: (state, input, now, policy) -> (state, effects).

"Vi informerar inåt innan vi informerar utåt." An external publication of an
item is released only after an internal notice for the same item was
*delivered* (its receipt came back from publish), plus the tenant's
``internal_lead``, and never before ``publish_at``. What waits is held with its
reasons, escalated when it waits too long, and never dropped or auto-released.

Nothing here reads the clock, logs, or touches Kafka: time comes in as ``now``,
and effects go out as values for the shell to write.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
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
    DecisionKind,
    DeliveryReceipt,
    ManualReject,
    ManualRelease,
    ReleaseOrder,
    Sender,
    Tick,
)
from services.runtime.identity_numbers import mask_identity_numbers

__all__ = [
    "AWAITING_INTERNAL_LEAD",
    "AWAITING_INTERNAL_NOTICE",
    "AWAITING_PUBLISH_AT",
    "INTERNAL_NOTICE_RETRACTED",
    "Accepted",
    "Effects",
    "GatePolicy",
    "Held",
    "ItemState",
    "ManualRelease",
    "Receipt",
    "Tick",
    "decide",
    "sender_for",
]

AWAITING_INTERNAL_NOTICE = "awaiting_internal_notice"
AWAITING_INTERNAL_LEAD = "awaiting_internal_lead"
AWAITING_PUBLISH_AT = "awaiting_publish_at"
#: CONTRACT 3.7: staff were told the information is withdrawn; not told any more.
INTERNAL_NOTICE_RETRACTED = "internal_notice_retracted"
_NS = uuid.UUID("2f0f3f76-5a4e-4b6c-8f1e-0d9b8a7c6e5f")
_SEEN_LIMIT = 64
_AUDIENCES: tuple[Audience, ...] = ("internal", "external")


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


@dataclass
class _Out:
    decisions: list[Decision] = field(default_factory=list)
    releases: list[ReleaseOrder] = field(default_factory=list)
    notifications: list[Notify] = field(default_factory=list)


def _id(*parts: object) -> str:
    return str(uuid.uuid5(_NS, ":".join(str(p) for p in parts)))


def _decision(
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
    held: Held | None = None,
    crisis: bool = False,
    operator_reason: str | None = None,
    operator: str | None = None,
    operator_email: str | None = None,
    internal_lead_s: float | None = None,
) -> Decision:
    return Decision(
        decision_id=_id(trigger, kind, audience, version),
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
        warnings=list(held.warnings) if held else [],
        findings=list(held.findings) if held else [],
        decided_at=now,
        held_since=held.held_since if held else None,
        publish_at=held.event.publish_at if held else None,
        operator_reason=operator_reason,
        operator=operator,
        operator_email=operator_email,
        unit=mask_identity_numbers(held.event.unit) if held else None,
        internal_lead_s=internal_lead_s,
        lix=held.lix if held else None,
    )


def sender_for(policy: GatePolicy, event: ContentEvent) -> Sender:
    """The sender block an item goes out with: the tenant, and the event's unit and contact."""
    return Sender(
        organization=policy.organization,
        unit=event.unit,
        contact=event.contact or policy.contact,
        logo_url=policy.logo_url,
        website=policy.website,
    )


def _order(
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


def _reasons(
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


def _wake_at(state: ItemState, policy: GatePolicy, now: datetime) -> datetime | None:
    """The next moment after *now* at which time alone could change a decision here."""
    times: list[datetime] = []
    for audience, held in state.held.items():
        times.append(held.event.publish_at)
        if audience == "external" and state.internal_delivered_at is not None:
            times.append(state.internal_delivered_at + policy.internal_lead)
        if not held.escalated:
            times.append(_escalation_due(held, policy))
        if policy.notify_after is not None and not held.notified:
            times.append(_notification_due(held, policy.notify_after))
    future = [t for t in times if t > now]
    return min(future) if future else None


def _notification_due(held: Held, notify_after: timedelta) -> datetime:
    return max(held.held_since, held.event.publish_at) + notify_after


def _notify(
    state: ItemState,
    out: _Out,
    held: Held,
    audience: Audience,
    now: datetime,
    kind: Literal["held", "escalated"],
) -> None:
    """Ask for an e-mail about *held*, audited as a ``notified`` decision."""
    trigger = f"{held.event_id}:notify:{kind}"
    out.notifications.append(Notify(_id(trigger, "notification"), kind, audience, held))
    out.decisions.append(
        _decision(
            "notified",
            state,
            now,
            trigger=trigger,
            reason=f"e-mail to the contact and the communications desk: {kind}",
            rule="notify_after" if kind == "held" else "notify_on_escalation",
            version=held.event.version,
            audience=audience,
            channels=held.event.channels,
            event_id=held.event_id,
            held=held,
        )
    )


def _escalation_due(held: Held, policy: GatePolicy) -> datetime:
    # A notice scheduled for later is not late: the escalation clock starts when
    # the item could first have gone out.
    return max(held.held_since, held.event.publish_at) + policy.escalate_after


def _release(
    state: ItemState,
    out: _Out,
    held: Held,
    audience: Audience,
    now: datetime,
    policy: GatePolicy,
    *,
    trigger: str,
    kind: DecisionKind = "released",
    rule: str,
    reason: str,
    operator_reason: str | None = None,
    operator: str | None = None,
    operator_email: str | None = None,
) -> ItemState:
    event = held.event
    told = state.internal_delivered_at
    decision = _decision(
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
        held=held,
        crisis=event.crisis,
        operator_reason=operator_reason,
        operator=operator,
        operator_email=operator_email,
        internal_lead_s=(
            (now - told).total_seconds()
            if audience == "external" and event.action == "publish" and told is not None
            else None
        ),
    )
    out.decisions.append(decision)
    out.releases.append(_order(decision, event, event.channels, policy, now, audience))
    held_now = {a: h for a, h in state.held.items() if a != audience}
    return state.model_copy(
        update={"held": held_now, "released": {**state.released, audience: event.version}}
    )


def _evaluate(
    state: ItemState, out: _Out, now: datetime, policy: GatePolicy, trigger: str
) -> ItemState:
    """Release what may go now; re-state or escalate what must keep waiting."""
    for audience in _AUDIENCES:
        held = state.held.get(audience)
        if held is None:
            continue
        reasons = _reasons(state, held, audience, now, policy)
        if not reasons:
            rule = "internal_notice" if audience == "internal" else "internal_before_external"
            why = (
                "internal notice due"
                if audience == "internal"
                else "internal notice delivered; lead time and publish_at passed"
            )
            state = _release(
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
            and now >= _notification_due(held, notify_after)
        ):
            held = held.model_copy(update={"notified": True})
            state = state.model_copy(update={"held": {**state.held, audience: held}})
            _notify(state, out, held, audience, now, "held")
        if (
            not held.escalated
            and waiting_on_more_than_time
            and now >= _escalation_due(held, policy)
        ):
            held = held.model_copy(update={"escalated": True})
            state = state.model_copy(update={"held": {**state.held, audience: held}})
            out.decisions.append(
                _decision(
                    "escalated",
                    state,
                    now,
                    trigger=f"{held.event_id}:escalate",
                    reason=f"held longer than {policy.escalate_after}: {', '.join(reasons)}",
                    rule="escalate_after",
                    version=held.event.version,
                    audience=audience,
                    channels=held.event.channels,
                    event_id=held.event_id,
                    held=held,
                )
            )
            if notify_after is not None:
                _notify(state, out, held, audience, now, "escalated")
    return state.model_copy(update={"wake_at": _wake_at(state, policy, now)})


def _on_accepted(
    state: ItemState, inp: Accepted, now: datetime, policy: GatePolicy, out: _Out
) -> ItemState:
    event = inp.event
    audience: Audience = event.audience
    if inp.event_id in state.seen_events:
        return state  # a redelivered record: already decided
    state = state.model_copy(
        update={"seen_events": (*state.seen_events, inp.event_id)[-_SEEN_LIMIT:]}
    )
    if event.action == "retract" and audience == "internal":
        return _retract_internal(state, inp, now, policy, out)
    if event.action == "retract":
        return _retract(state, inp, now, policy, out)

    def note(kind: DecisionKind, reason: str, rule: str, held: Held | None = None) -> None:
        out.decisions.append(
            _decision(
                kind,
                state,
                now,
                trigger=inp.event_id,
                reason=reason,
                rule=rule,
                version=event.version,
                audience=audience,
                channels=event.channels,
                event_id=inp.event_id,
                held=held,
                crisis=event.crisis,
            )
        )

    newest = state.latest.get(audience, 0)
    released = state.released.get(audience, 0)
    rejected = state.rejected.get(audience, 0)
    if event.version < newest or event.version <= released or event.version <= rejected:
        if event.version < newest:
            why = f"version {event.version} is older than version {newest} already seen"
        elif event.version <= released:
            why = f"version {event.version} was already released"
        else:
            why = f"version {event.version} was rejected by an operator; send a newer version"
        note("stale", why, "newest_version_wins")
        return state
    state = state.model_copy(update={"latest": {**state.latest, audience: event.version}})

    blocks = tuple(
        dict.fromkeys(f"content_check:{f.rule}" for f in inp.findings if f.action == "block")
    )
    warnings = tuple(
        dict.fromkeys(f"content_check:{f.rule}" for f in inp.findings if f.action == "warn")
    )
    held = Held(
        event_id=inp.event_id,
        event=event,
        held_since=now,
        reasons=blocks,
        warnings=warnings,
        findings=inp.findings,
        lix=inp.lix,
    )
    superseded = state.held.get(audience)
    state = state.model_copy(update={"held": {**state.held, audience: held}})
    if superseded is not None:
        out.decisions.append(
            _decision(
                "stale",
                state,
                now,
                trigger=f"{inp.event_id}:supersedes",
                reason=f"superseded by version {event.version}",
                rule="newest_version_wins",
                version=superseded.event.version,
                audience=audience,
                channels=superseded.event.channels,
                event_id=superseded.event_id,
            )
        )

    if event.crisis and audience == "external" and policy.crisis_lane and not blocks:
        return _crisis(state, held, now, policy, out, inp.event_id)

    state = _evaluate(state, out, now, policy, inp.event_id)
    still = state.held.get(audience)
    if still is not None and still.event_id == inp.event_id:
        note("held", ", ".join(still.reasons), _rule_of(still.reasons), still)
    return state


def _rule_of(reasons: Sequence[str]) -> str:
    if AWAITING_INTERNAL_NOTICE in reasons or AWAITING_INTERNAL_LEAD in reasons:
        return "internal_before_external"
    if any(r.startswith("content_check:") for r in reasons):
        return "content_check"
    return "publish_at"


def _crisis(
    state: ItemState, held: Held, now: datetime, policy: GatePolicy, out: _Out, trigger: str
) -> ItemState:
    """Crisis lane: the internal notice and the external release go out together."""
    event = held.event
    if "internal" not in state.released:
        # Staff hear it at the same moment: the held notice if there is one,
        # else the external text itself, on the tenant's internal channels.
        notice = state.held.get("internal") or Held(
            event_id=held.event_id,
            event=event.model_copy(
                update={"audience": "internal", "channels": list(policy.internal_channels)}
            ),
            held_since=now,
            reasons=(),
        )
        state = state.model_copy(update={"held": {**state.held, "internal": notice}})
        state = _release(
            state,
            out,
            notice,
            "internal",
            now,
            policy,
            trigger=f"{trigger}:crisis",
            rule="crisis_lane",
            reason="crisis: internal notice at the same moment",
        )
    state = _release(
        state,
        out,
        held,
        "external",
        now,
        policy,
        trigger=trigger,
        rule="crisis_lane",
        reason="crisis release without waiting",
    )
    return state.model_copy(update={"wake_at": _wake_at(state, policy, now)})


def _retract(
    state: ItemState, inp: Accepted, now: datetime, policy: GatePolicy, out: _Out
) -> ItemState:
    event = inp.event
    cancelled = [h for h in state.held.values() if h.event.version <= event.version]
    keep = {a: h for a, h in state.held.items() if h.event.version > event.version}
    published = sorted(state.published)
    reason = f"retracted; cancelled {len(cancelled)} held, forwarded to {len(published)} channel(s)"
    decision = _decision(
        "retracted",
        state,
        now,
        trigger=inp.event_id,
        reason=reason,
        rule="retract",
        version=event.version,
        audience=event.audience,
        channels=published,
        event_id=inp.event_id,
    )
    out.decisions.append(decision)
    if published:
        out.releases.append(_order(decision, event, published, policy, now, event.audience))
    state = state.model_copy(
        update={
            "held": keep,
            "latest": {
                a: max(v, event.version) for a, v in {**state.latest, event.audience: 0}.items()
            },
        }
    )
    return state.model_copy(update={"wake_at": _wake_at(state, policy, now)})


def _retract_internal(
    state: ItemState, inp: Accepted, now: datetime, policy: GatePolicy, out: _Out
) -> ItemState:
    """Staff are told the information is withdrawn: what the internal channels carried
    is retracted there, a held internal version is cancelled, and the item counts as
    not told until a newer internal notice is delivered. A held external version stays
    held (reason ``internal_notice_retracted``); what was released stays released."""
    event = inp.event
    internal = state.held.get("internal")
    cancelled = internal is not None and internal.event.version <= event.version
    published = sorted(c for c in state.published if c in policy.internal_channels)
    reason = (
        f"internal notice retracted; cancelled {int(cancelled)} held, forwarded to "
        f"{len(published)} channel(s); the item counts as not told"
    )
    decision = _decision(
        "retracted",
        state,
        now,
        trigger=inp.event_id,
        reason=reason,
        rule="retract",
        version=event.version,
        audience="internal",
        channels=published,
        event_id=inp.event_id,
    )
    out.decisions.append(decision)
    if published:
        out.releases.append(_order(decision, event, published, policy, now, "internal"))
    held = {a: h for a, h in state.held.items() if not (a == "internal" and cancelled)}
    v = event.version
    # Every internal version staff were sent or are waiting for is withdrawn; not
    # ``latest``, which an external retract raises for both audiences without any
    # internal notice, so a notice that came after would count as withdrawn too.
    held_internal = internal.event.version if internal is not None else 0
    retracted = max(state.internal_retracted, v, state.released.get("internal", 0), held_internal)
    state = state.model_copy(
        update={
            "held": held,
            "internal_delivered_at": None,
            "internal_retracted": retracted,
            "latest": {
                **state.latest,
                "internal": max(state.latest.get("internal", 0), event.version),
            },
        }
    )
    state = _evaluate(state, out, now, policy, f"{inp.event_id}:retracted")
    external = state.held.get("external")
    if external is not None:  # held again, visibly, on the audit trail
        out.decisions.append(
            _decision(
                "held",
                state,
                now,
                trigger=f"{inp.event_id}:held-again",
                reason="internal notice retracted; held until a newer one is delivered",
                rule="internal_before_external",
                version=external.event.version,
                audience="external",
                channels=external.event.channels,
                event_id=external.event_id,
                held=external,
            )
        )
    return state


def _on_receipt(
    state: ItemState, inp: Receipt, now: datetime, policy: GatePolicy, out: _Out
) -> ItemState:
    r = inp.receipt
    if r.action != "publish":
        return state
    published = {**state.published, r.channel: max(state.published.get(r.channel, 0), r.version)}
    state = state.model_copy(update={"published": published})
    if (
        r.audience == "internal"
        and state.internal_delivered_at is None
        and r.version > state.internal_retracted  # a retracted notice tells nobody
    ):
        state = state.model_copy(update={"internal_delivered_at": r.delivered_at})
    return _evaluate(state, out, now, policy, f"{r.decision_id}:{r.channel}")


def _on_manual_release(
    state: ItemState, inp: ManualRelease, now: datetime, policy: GatePolicy, out: _Out
) -> ItemState:
    for audience in _AUDIENCES:
        held = state.held.get(audience)
        if held is None:
            continue
        state = _release(
            state,
            out,
            held,
            audience,
            now,
            policy,
            trigger=inp.request_id,
            kind="overridden",
            rule="manual_release",
            reason=f"released by an operator while {', '.join(held.reasons)}",
            operator_reason=inp.reason,
            operator=inp.operator,
            operator_email=inp.operator_email,
        )
    return state.model_copy(update={"wake_at": _wake_at(state, policy, now)})


def _on_manual_reject(
    state: ItemState, inp: ManualReject, now: datetime, policy: GatePolicy, out: _Out
) -> ItemState:
    """What is held is not published; that version stays rejected until a newer one."""
    for audience in _AUDIENCES:
        held = state.held.get(audience)
        if held is None:
            continue
        out.decisions.append(
            _decision(
                "rejected_by_operator",
                state,
                now,
                trigger=inp.request_id,
                reason=f"rejected by an operator while {', '.join(held.reasons) or 'held'}",
                rule="manual_reject",
                version=held.event.version,
                audience=audience,
                channels=held.event.channels,
                event_id=held.event_id,
                held=held,
                operator_reason=inp.reason,
                operator=inp.operator,
                operator_email=inp.operator_email,
            )
        )
        state = state.model_copy(
            update={
                "held": {a: h for a, h in state.held.items() if a != audience},
                "rejected": {**state.rejected, audience: held.event.version},
            }
        )
    return state.model_copy(update={"wake_at": _wake_at(state, policy, now)})


def decide(
    state: ItemState, inp: Input, now: datetime, policy: GatePolicy
) -> tuple[ItemState, Effects]:
    """Feed one input to one item's state; return the new state and what to write."""
    out = _Out()
    match inp:
        case Accepted():
            state = _on_accepted(state, inp, now, policy, out)
        case Receipt():
            state = _on_receipt(state, inp, now, policy, out)
        case Tick():
            state = _evaluate(state, out, now, policy, f"wake:{now.isoformat()}")
        case ManualRelease():
            state = _on_manual_release(state, inp, now, policy, out)
        case ManualReject():
            state = _on_manual_reject(state, inp, now, policy, out)
    return state, Effects(tuple(out.decisions), tuple(out.releases), tuple(out.notifications))
