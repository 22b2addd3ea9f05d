"""A CMS told what happens to its items, as deliveries publish makes once each.

Pure: an :class:`~schemas.events.ItemStatus` from the gate becomes a delivery on
the tenant's status channel, keyed by the status itself (one version is held,
then released), so the delivery rules that keep publications to one each keep
each status call to one, with the channels' retries and dead letters.
"""

from __future__ import annotations

from schemas.events import ItemStatus, ReleaseOrder, Sender
from services.runtime.config import STATUS_CHANNEL

__all__ = ["delivery_key", "order_for", "payload_of"]

_TITLES = {
    "held": "Väntar",
    "released": "Släppt",
    "rejected": "Stoppad",
    "escalated": "Eskalerad",
}


def delivery_key(status: ItemStatus) -> str:
    """One delivery per status: (tenant, item, version, status channel, status id)."""
    return f"{status.tenant}:{status.item_id}:{status.version}:{STATUS_CHANNEL}:{status.status_id}"


def payload_of(status: ItemStatus) -> str:
    """What the CMS's endpoint receives: the status as the gate wrote it."""
    return status.model_dump_json()


def order_for(status: ItemStatus, sender: Sender) -> ReleaseOrder:
    """The status as a delivery order, so a dead status letter reads like any other."""
    return ReleaseOrder(
        decision_id=status.status_id,
        event_id=status.event_id,
        tenant=status.tenant,
        item_id=status.item_id,
        version=status.version,
        action="publish",
        audience=status.audience,
        channels=[STATUS_CHANNEL],
        title=_TITLES[status.status],
        body="",
        recipients="",
        sender=sender,
        released_at=status.decided_at,
    )
