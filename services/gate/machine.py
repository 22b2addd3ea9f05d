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

from collections.abc import Sequence
from datetime import datetime

from schemas.events import (
    Audience,
    DecisionKind,
    ManualReject,
    ManualRelease,
    Tick,
)
from services.gate import holding
from services.gate.state import (
    AUDIENCES,
    AWAITING_INTERNAL_LEAD,
    AWAITING_INTERNAL_NOTICE,
    Accepted,
    Effects,
    GatePolicy,
    Held,
    Input,
    ItemState,
    Receipt,
)

__all__ = ["decide"]

_SEEN_LIMIT = 64


def _on_accepted(
    state: ItemState, inp: Accepted, now: datetime, policy: GatePolicy, out: holding.Out
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
        trigger, crisis = inp.event_id, event.crisis
        if held is not None:
            made = holding.decision_on(
                kind, state, held, audience, now,
                trigger=trigger, reason=reason, rule=rule, crisis=crisis,
            )  # fmt: skip
        else:
            made = holding.decision(
                kind, state, now,
                trigger=trigger, reason=reason, rule=rule, crisis=crisis,
                version=event.version, audience=audience, channels=event.channels,
                event_id=inp.event_id,
            )  # fmt: skip
        out.decisions.append(made)

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
            holding.decision(
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

    state = holding.evaluate(state, out, now, policy, inp.event_id)
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
    state: ItemState, held: Held, now: datetime, policy: GatePolicy, out: holding.Out, trigger: str
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
        state = holding.release(
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
    state = holding.release(
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
    return state.model_copy(update={"wake_at": holding.wake_at(state, policy, now)})


def _retract(
    state: ItemState, inp: Accepted, now: datetime, policy: GatePolicy, out: holding.Out
) -> ItemState:
    event = inp.event
    cancelled = [h for h in state.held.values() if h.event.version <= event.version]
    keep = {a: h for a, h in state.held.items() if h.event.version > event.version}
    published = sorted(state.published)
    reason = f"retracted; cancelled {len(cancelled)} held, forwarded to {len(published)} channel(s)"
    decision = holding.decision(
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
        out.releases.append(
            holding.release_order(decision, event, published, policy, now, event.audience)
        )
    state = state.model_copy(
        update={
            "held": keep,
            "latest": {
                a: max(v, event.version) for a, v in {**state.latest, event.audience: 0}.items()
            },
        }
    )
    return state.model_copy(update={"wake_at": holding.wake_at(state, policy, now)})


def _retract_internal(
    state: ItemState, inp: Accepted, now: datetime, policy: GatePolicy, out: holding.Out
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
    decision = holding.decision(
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
        out.releases.append(
            holding.release_order(decision, event, published, policy, now, "internal")
        )
    held = {a: h for a, h in state.held.items() if not (a == "internal" and cancelled)}
    v = event.version
    # This version and every internal version staff were sent are withdrawn. A held
    # version newer than the retract is a newer notice: once delivered, staff are
    # told again. Not ``latest``, which an external retract raises for both
    # audiences without any internal notice, so a notice that came after would
    # count as withdrawn too.
    retracted = max(state.internal_retracted, v, state.released.get("internal", 0))
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
    state = holding.evaluate(state, out, now, policy, f"{inp.event_id}:retracted")
    external = state.held.get("external")
    if external is not None:  # held again, visibly, on the audit trail
        out.decisions.append(
            holding.decision_on(
                "held",
                state,
                external,
                "external",
                now,
                trigger=f"{inp.event_id}:held-again",
                reason="internal notice retracted; held until a newer one is delivered",
                rule="internal_before_external",
            )
        )
    return state


def _on_receipt(
    state: ItemState, inp: Receipt, now: datetime, policy: GatePolicy, out: holding.Out
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
    return holding.evaluate(state, out, now, policy, f"{r.decision_id}:{r.channel}")


def _on_manual_release(
    state: ItemState, inp: ManualRelease, now: datetime, policy: GatePolicy, out: holding.Out
) -> ItemState:
    for audience in AUDIENCES:
        held = state.held.get(audience)
        if held is None:
            continue
        state = holding.release(
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
            by=inp,
        )
    return state.model_copy(update={"wake_at": holding.wake_at(state, policy, now)})


def _on_manual_reject(
    state: ItemState, inp: ManualReject, now: datetime, policy: GatePolicy, out: holding.Out
) -> ItemState:
    """What is held is not published; that version stays rejected until a newer one."""
    for audience in AUDIENCES:
        held = state.held.get(audience)
        if held is None:
            continue
        out.decisions.append(
            holding.decision_on(
                "rejected_by_operator",
                state,
                held,
                audience,
                now,
                trigger=inp.request_id,
                reason=f"rejected by an operator while {', '.join(held.reasons) or 'held'}",
                rule="manual_reject",
                by=inp,
            )
        )
        state = state.model_copy(
            update={
                "held": {a: h for a, h in state.held.items() if a != audience},
                "rejected": {**state.rejected, audience: held.event.version},
            }
        )
    return state.model_copy(update={"wake_at": holding.wake_at(state, policy, now)})


def decide(
    state: ItemState, inp: Input, now: datetime, policy: GatePolicy
) -> tuple[ItemState, Effects]:
    """Feed one input to one item's state; return the new state and what to write."""
    out = holding.Out()
    match inp:
        case Accepted():
            state = _on_accepted(state, inp, now, policy, out)
        case Receipt():
            state = _on_receipt(state, inp, now, policy, out)
        case Tick():
            state = holding.evaluate(state, out, now, policy, f"wake:{now.isoformat()}")
        case ManualRelease():
            state = _on_manual_release(state, inp, now, policy, out)
        case ManualReject():
            state = _on_manual_reject(state, inp, now, policy, out)
    return state, Effects(tuple(out.decisions), tuple(out.releases), tuple(out.notifications))
