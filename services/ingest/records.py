"""The Kafka path: every event, whether the HTTP door wrote it or a producer did.

Valid events go to ``cms.accepted`` with their ``accepted`` audit record; the
rest go to ``cms.events.dlq`` with the original bytes and the reason in
headers, and are audited as ``rejected``. Nothing is dropped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from schemas.events import AcceptedEvent, Recorded
from services.ingest import dedupe
from services.ingest.normalize import (
    Invalid,
    TenantChannels,
    check_event,
    rejection,
)
from services.ingest.telemetry import IngestTelemetry, Source
from services.runtime import topics
from services.runtime.audit import acceptance
from services.runtime.keys import ItemKey
from services.runtime.ports import Clock, InboundRecord, OutboundRecord, Outbox, TextTable

__all__ = ["RecordHandler", "audit_rejection"]


def _body_tenant(value: bytes | None) -> str:
    try:
        raw = json.loads(value or b"")
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return "unknown"
    tenant = raw.get("tenant") if isinstance(raw, Mapping) else None
    return tenant if isinstance(tenant, str) and tenant else "unknown"


async def audit_rejection(
    outbox: Outbox,
    telemetry: IngestTelemetry,
    clock: Clock,
    body: bytes,
    invalid: Invalid,
    *,
    tenant: str,
    item_id: str | None,
    event_id: str,
    known_tenant: bool,
) -> None:
    """Write the ``rejected`` decision of a refused event to the audit trail.

    When it names a known tenant's item, the gate gets it too, for the item's
    history in the console.
    """
    decision = rejection(
        body, invalid, tenant=tenant, item_id=item_id, event_id=event_id, now=clock()
    )
    key = ItemKey(decision.tenant, decision.item_id).encode()
    records = [OutboundRecord(topics.DECISIONS, key, decision.model_dump_json().encode())]
    if known_tenant and decision.item_id != "unknown":
        # On cms.accepted, in the item's order: ingest writes nothing to gate.commands,
        # which only the gate's own principal may write (see topics.RECORDED_HEADER).
        note = Recorded(tenant=decision.tenant, item_id=decision.item_id, decision=decision)
        records.append(
            OutboundRecord(
                topics.ACCEPTED,
                key,
                note.model_dump_json().encode(),
                headers=(topics.RECORDED_HEADER,),
            )
        )
    await outbox.send_all(records)
    telemetry.rejected(decision)


class RecordHandler:
    """Validates, deduplicates and accepts or dead-letters each ``cms.events`` record."""

    def __init__(
        self,
        *,
        channels: TenantChannels,
        seen: TextTable,
        outbox: Outbox,
        telemetry: IngestTelemetry,
        clock: Clock,
    ) -> None:
        self._channels = channels
        self._seen = seen
        self._outbox = outbox
        self._telemetry = telemetry
        self._clock = clock

    async def handle(self, record: InboundRecord) -> None:
        source: Source = "http" if record.header("gatekeeper-source") == "http" else "kafka"
        key = ItemKey.parse(record.key)
        result = check_event(
            record.value or b"",
            self._channels,
            tenant=key.tenant if key else None,
            item_id=key.item_id if key else None,
        )
        if isinstance(result, Invalid):
            await self._dead_letter(record, result, source)
            return
        event = result
        delivery = dedupe.dedupe_id(
            record.header("webhook-id"), record.topic, record.partition, record.offset
        )
        seen_key = dedupe.seen_key(event.tenant, delivery)
        # The door's id when it wrote the record; the event is serialized only if not.
        event_id = record.header("gatekeeper-event-id") or dedupe.event_id_for(
            seen_key, event.model_dump_json()
        )
        if self._seen.get(seen_key) is not None:
            self._telemetry.duplicate(source, event.tenant, event.item_id, event_id, delivery)
            return
        accepted = AcceptedEvent(
            event_id=event_id,
            tenant=event.tenant,
            item_id=event.item_id,
            source=source,
            received_at=self._clock(),
            event=event,
        )
        decision = acceptance(accepted)
        item_key = ItemKey(event.tenant, event.item_id).encode()
        # The audit record is sent first, so it lands no later than the event the
        # gate decides on; both are awaited together, one round trip for the two.
        await self._outbox.send_all(
            [
                OutboundRecord(topics.DECISIONS, item_key, decision.model_dump_json().encode()),
                OutboundRecord(topics.ACCEPTED, item_key, accepted.model_dump_json().encode()),
            ]
        )
        self._seen.put(seen_key, event_id)
        self._telemetry.accepted(decision, source, event.action)

    async def _dead_letter(self, record: InboundRecord, invalid: Invalid, source: Source) -> None:
        problems = json.dumps([e.as_dict() for e in invalid.errors], ensure_ascii=False)
        headers = [
            *record.headers,
            ("dlq-reason", invalid.reason.encode()),
            ("dlq-errors", problems.encode()),
            ("dlq-source-topic", record.topic.encode()),
            ("dlq-source-partition", str(record.partition).encode()),
            ("dlq-source-offset", str(record.offset).encode()),
        ]
        await self._outbox.send_all(
            [OutboundRecord(topics.CMS_EVENTS_DLQ, record.key, record.value, headers)]
        )
        key = ItemKey.parse(record.key)
        delivery = dedupe.dedupe_id(
            record.header("webhook-id"), record.topic, record.partition, record.offset
        )
        await audit_rejection(
            self._outbox,
            self._telemetry,
            self._clock,
            record.value or b"",
            invalid,
            tenant=key.tenant if key else _body_tenant(record.value),
            item_id=key.item_id if key else None,
            event_id=delivery,
            known_tenant=key is not None and key.tenant in self._channels,
        )
        self._telemetry.dead_lettered(
            source,
            invalid.reason,
            [e.field for e in invalid.errors],
            record.partition,
            record.offset,
        )
