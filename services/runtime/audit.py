"""The audit record of an accepted event, which ingest writes and the gate's history shows.

Pure and derived from the accepted event alone, so the gate adds the same
decision (same id) to an item's history as ingest writes to ``gate.decisions``,
without reading that topic back.
"""

from __future__ import annotations

import uuid

from schemas.events import AcceptedEvent, Decision

__all__ = ["AUDIT_NAMESPACE", "acceptance"]

#: the namespace of ingest's decision ids (accepted, rejected)
AUDIT_NAMESPACE = uuid.UUID("0c7d5a43-2f55-4f4e-a7a8-5b1b8f0b9e21")


def acceptance(accepted: AcceptedEvent) -> Decision:
    """The audit record of an event that passed the contract check.

    Ingest decides acceptance as it decides rejection, so both are audited here;
    what the gate then does with the event (hold, release, stale) follows it.
    The id is derived from the event id, so a replayed record repeats it.
    """
    event = accepted.event
    return Decision(
        decision_id=str(
            uuid.uuid5(AUDIT_NAMESPACE, f"{accepted.tenant}:{accepted.event_id}:accepted")
        ),
        kind="accepted",
        reason=f"valid event received ({accepted.source})",
        rule="contract_v1",
        tenant=accepted.tenant,
        item_id=accepted.item_id,
        version=event.version,
        audience=event.audience,
        channels=list(event.channels),
        event_id=accepted.event_id,
        crisis=event.crisis,
        decided_at=accepted.received_at,
        publish_at=event.publish_at,
    )
