"""The gate's handler: load an item's state, decide, write the effects, save.

It talks only through ports (``ModelTable``, ``Outbox``, a clock and a
readiness check), so a test constructs it with in-memory fakes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from pydantic import TypeAdapter, ValidationError

from schemas.events import (
    AcceptedEvent,
    ContentFinding,
    Decision,
    DeliveryReceipt,
    GateCommand,
    ManualReject,
    ManualRelease,
    Notification,
    Tick,
)
from services.gate import content, wording
from services.gate.history import History
from services.gate.index import HoldIndex
from services.gate.machine import (
    Accepted,
    GatePolicy,
    Input,
    ItemState,
    Notify,
    Receipt,
    decide,
)
from services.gate.telemetry import GateTelemetry
from services.runtime import topics
from services.runtime.keys import ItemKey
from services.runtime.ports import Clock, InboundRecord, ModelTable, OutboundRecord, Outbox

__all__ = ["GateHandler"]

_COMMAND: TypeAdapter[Tick | ManualRelease | ManualReject] = TypeAdapter(GateCommand)


class GateHandler:
    """Decides each input for its item, ticks items whose time has come, lists holds."""

    def __init__(
        self,
        *,
        policies: Mapping[str, GatePolicy],
        rules: Mapping[str, tuple[content.ContentRule, ...]],
        items: ModelTable[ItemState],
        history: ModelTable[History],
        outbox: Outbox,
        telemetry: GateTelemetry,
        clock: Clock,
        ready: Callable[[], bool],
        console_url: str = "http://127.0.0.1:8081/console",
    ) -> None:
        self._console_url = console_url.rstrip("/")
        self._policies = policies
        self._rules = rules
        self._items = items
        self._history = history
        self._outbox = outbox
        self._telemetry = telemetry
        self._clock = clock
        self._ready = ready
        self._index = HoldIndex()
        self._indexed = False

    # -- inputs -----------------------------------------------------------------------

    def _input(self, topic: str, value: bytes) -> Input:
        if topic == topics.ACCEPTED:
            accepted = AcceptedEvent.model_validate_json(value)
            found = content.check(accepted.event, self._rules.get(accepted.tenant, ()))
            findings = tuple(
                ContentFinding(rule=f.rule, action=f.action, message=f.message, fix=f.fix)
                for f in found
            )
            return Accepted(accepted.event_id, accepted.event, findings)
        if topic == topics.RECEIPTS:
            return Receipt(DeliveryReceipt.model_validate_json(value))
        return _COMMAND.validate_json(value)

    async def handle(self, record: InboundRecord) -> None:
        """Decide one input. Effects are written before the state is saved: a crash
        between them replays the input, and a repeated release is caught downstream,
        while a lost one could not be."""
        key = ItemKey.parse(record.key)
        if key is None or record.value is None:
            self._telemetry.unkeyed_input(record)
            return
        try:
            inp = self._input(record.topic, record.value)
        except ValidationError as exc:
            self._telemetry.undecodable_input(record, exc.error_count())
            return
        policy = self._policies.get(key.tenant)
        if policy is None:
            self._telemetry.unknown_tenant(record, key.tenant, key.item_id)
            return
        state = self._items.get(key.encode()) or ItemState(tenant=key.tenant, item_id=key.item_id)
        now = self._clock()
        state, effects = decide(state, inp, now, policy)
        raw_key = key.encode()
        await self._outbox.send_all(
            [
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
                        self._notification(state, n, now).model_dump_json().encode(),
                    )
                    for n in effects.notifications
                ),
            ]
        )
        for order in effects.releases:
            latency = None
            if (
                order.audience == "external"
                and order.action == "publish"
                and state.internal_delivered_at is not None
            ):
                latency = (now - state.internal_delivered_at).total_seconds()
            self._telemetry.released(order, latency)
        for decision in effects.decisions:
            self._telemetry.decided(decision)
        # Saved even when unchanged: an input replayed after a crash finds the state
        # it made already in a local store, decides nothing new, and this write is
        # what puts that state on the changelog, if the crash kept it off.
        self._items.put(raw_key, state)
        self._note(raw_key, state)

    def _notification(self, state: ItemState, due: Notify, now: datetime) -> Notification:
        held, event = due.held, due.held.event
        return Notification(
            notification_id=due.notification_id,
            kind=due.kind,
            tenant=state.tenant,
            item_id=state.item_id,
            version=event.version,
            audience=due.audience,
            title=event.title,
            unit=event.unit,
            reasons=[wording.reason_text(r) for r in held.reasons],
            held_since=held.held_since,
            publish_at=event.publish_at,
            contact_email=event.contact.email if event.contact else None,
            console_url=f"{self._console_url}/items/{state.tenant}/{state.item_id}",
            decided_at=now,
        )

    # -- time -------------------------------------------------------------------------

    def _note(self, key: bytes, state: ItemState) -> None:
        holds = tuple((h.reasons, h.held_since) for h in state.held.values())
        escalated = sum(h.escalated for h in state.held.values())
        self._index.update(key, state.tenant, state.wake_at, holds, escalated)

    def _index_once(self) -> bool:
        """Build the index from the recovered table, once the service is ready."""
        if not self._indexed and self._ready():
            for key, state in self._items.items():
                self._note(key, state)
            self._indexed = True
        return self._indexed

    async def tick_due(self) -> None:
        """Send a tick to every item whose wake time has come; refresh the hold gauges."""
        if not self._index_once() or not self._ready():
            return
        now = self._clock()
        for raw_key, _ in self._index.due(now):
            key = ItemKey.parse(raw_key)
            if key is None:
                continue
            tick = Tick(tenant=key.tenant, item_id=key.item_id, at=now)
            await self._outbox.send_all(
                [OutboundRecord(topics.GATE_COMMANDS, raw_key, tick.model_dump_json().encode())]
            )
        index = self._index
        self._telemetry.holds(
            index.counts(),
            {
                tenant: (index.items(tenant), index.escalated(tenant), index.oldest(tenant))
                for tenant in self._policies
            },
            now,
        )

    # -- operators --------------------------------------------------------------------

    def held(self) -> list[ItemState]:
        """Every item that holds something now."""
        states: Iterable[ItemState | None]
        if self._index_once():
            states = (self._items.get(key) for key in self._index.held())
        else:  # still recovering: what the table has so far
            states = list(self._items.values())
        return [s for s in states if s is not None and s.is_held()]

    def state(self, key: ItemKey) -> ItemState | None:
        return self._items.get(key.encode())

    def policy(self, tenant: str) -> GatePolicy | None:
        return self._policies.get(tenant)

    def history(self, key: ItemKey) -> History:
        return self._history.get(key.encode()) or History()

    def record_history(self, record: InboundRecord) -> None:
        """Add a decision from ``gate.decisions`` to its item's history."""
        if record.key is None or record.value is None:
            return
        try:
            decision = Decision.model_validate_json(record.value)
        except ValidationError as exc:
            self._telemetry.undecodable_input(record, exc.error_count())
            return
        before = self._history.get(record.key) or History()
        after = before.add(decision)
        if after is not before:
            self._history.put(record.key, after)

    async def request_release(self, key: ItemKey, reason: str, operator: str) -> str | None:
        """Ask for a manual release of what *key* holds; its request id, None if nothing is."""
        return await self._request(key, reason, operator, release=True)

    async def request_reject(self, key: ItemKey, reason: str, operator: str) -> str | None:
        """Ask that what *key* holds is not published; its request id, None if nothing is."""
        return await self._request(key, reason, operator, release=False)

    async def _request(
        self, key: ItemKey, reason: str, operator: str, *, release: bool
    ) -> str | None:
        state = self.state(key)
        if key.tenant not in self._policies or state is None or not state.is_held():
            return None
        request_id = str(uuid.uuid4())
        fields = {
            "tenant": key.tenant,
            "item_id": key.item_id,
            "reason": reason,
            "at": self._clock(),
            "request_id": request_id,
            "operator": operator,
        }
        command = ManualRelease(**fields) if release else ManualReject(**fields)
        await self._outbox.send_all(
            [OutboundRecord(topics.GATE_COMMANDS, key.encode(), command.model_dump_json().encode())]
        )
        self._telemetry.operator_requested(command)
        return request_id
