"""What a CMS's status webhook is told about a decision, as a pure function.

An editor wants to see in the CMS what happened to what they published: held
(and why, in Swedish, with the console link), released (where and when),
rejected (by whom and why) and escalated. Other decisions (accepted, stale,
retracted, notified) are the gate's own bookkeeping and tell the editor nothing new.
"""

from __future__ import annotations

from schemas.events import Decision, ItemStatus, StatusKind, StatusReason
from services.gate import wording
from services.gate.state import Held
from services.runtime.identity_numbers import mask_identity_numbers

__all__ = ["status_of"]

_KINDS: dict[str, StatusKind] = {
    "held": "held",
    "escalated": "escalated",
    "released": "released",
    "overridden": "released",
    "rejected_by_operator": "rejected",
}


def _reasons(decision: Decision, held: Held | None) -> list[StatusReason]:
    codes = held.reasons if held is not None else tuple(decision.reason.split(", "))
    return [StatusReason(code=code, text=wording.reason_text(code)) for code in codes if code]


def status_of(decision: Decision, held: Held | None, console_url: str) -> ItemStatus | None:
    """The status *decision* tells the CMS, or None when it tells the editor nothing.

    *held* is what waits for the decision's audience after it (for the reasons),
    *console_url* the item's page in the console.
    """
    kind = _KINDS.get(decision.kind)
    if kind is None or decision.audience is None or decision.version < 1:
        return None
    waiting = kind in ("held", "escalated")
    reason = decision.operator_reason
    return ItemStatus(
        status_id=decision.decision_id,
        status=kind,
        tenant=decision.tenant,
        item_id=decision.item_id,
        version=decision.version,
        audience=decision.audience,
        event_id=decision.event_id,
        decided_at=decision.decided_at,
        reasons=_reasons(decision, held) if waiting else [],
        console_url=console_url if waiting else None,
        channels=decision.channels if kind == "released" else [],
        released_at=decision.decided_at if kind == "released" else None,
        publish_at=decision.publish_at,
        operator=decision.operator,
        # free text an operator wrote leaves the municipality: no identity number in it
        operator_reason=mask_identity_numbers(reason) if reason else None,
    )
