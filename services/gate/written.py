"""What the gate writes for an item it decided: its releases and decisions, the
notifications it asks for, and what the CMS's status webhook is told.

A pure core: records as values, for the handler to send in one batch.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime

from schemas.events import Notification
from services.gate import status, wording
from services.gate.state import Effects, ItemState, Notify
from services.runtime import topics
from services.runtime.identity_numbers import mask_identity_numbers
from services.runtime.keys import path_segment
from services.runtime.ports import OutboundRecord

__all__ = ["Written"]


class Written:
    """The records of decided items, with links into the console at *console_url*;
    status records only for *status_tenants* (those with a status webhook)."""

    def __init__(self, console_url: str, status_tenants: Collection[str]) -> None:
        self._console_url = console_url.rstrip("/")
        self._status_tenants = frozenset(status_tenants)

    def outbound(
        self, raw_key: bytes, state: ItemState, effects: Effects, now: datetime
    ) -> list[OutboundRecord]:
        return [
            *(
                OutboundRecord(topics.RELEASES, raw_key, o.model_dump_json().encode())
                for o in effects.releases
            ),
            *(
                OutboundRecord(topics.DECISIONS, raw_key, d.model_dump_json().encode())
                for d in effects.decisions
            ),
            *(
                OutboundRecord(
                    topics.NOTIFICATIONS,
                    raw_key,
                    self.notification(state, n, now).model_dump_json().encode(),
                )
                for n in effects.notifications
            ),
            *self._statuses(raw_key, state, effects),
        ]

    def _statuses(
        self, raw_key: bytes, state: ItemState, effects: Effects
    ) -> Iterable[OutboundRecord]:
        if state.tenant not in self._status_tenants:
            return
        for decision in effects.decisions:
            held = state.held.get(decision.audience) if decision.audience else None
            if held is not None and held.event.version != decision.version:
                held = None
            told = status.status_of(decision, held, self.item_url(state))
            if told is not None:
                yield OutboundRecord(topics.STATUS, raw_key, told.model_dump_json().encode())

    def item_url(self, state: ItemState) -> str:
        """The item's page in the console."""
        return (
            f"{self._console_url}/items/{path_segment(state.tenant)}/{path_segment(state.item_id)}"
        )

    def notification(self, state: ItemState, due: Notify, now: datetime) -> Notification:
        held, event = due.held, due.held.event
        return Notification(
            notification_id=due.notification_id,
            kind=due.kind,
            tenant=state.tenant,
            item_id=state.item_id,
            version=event.version,
            audience=due.audience,
            # an e-mail to the desk is kept in mailboxes: no identity number in it
            title=mask_identity_numbers(event.title),
            unit=mask_identity_numbers(event.unit),
            reasons=[wording.reason_text(r) for r in held.reasons],
            held_since=held.held_since,
            publish_at=event.publish_at,
            contact_email=event.contact.email if event.contact else None,
            console_url=self.item_url(state),
            decided_at=now,
        )
