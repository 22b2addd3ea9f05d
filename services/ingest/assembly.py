"""Ingest's door and its ``cms.events`` path wired to their ports from the deployment:
one assembly for the service (Kafka-backed ports) and for the tests (in-memory
ports), so the wiring is written once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from standardwebhooks import Webhook

from services.ingest.door import EventDoor
from services.ingest.normalize import TenantChannels
from services.ingest.records import RecordHandler
from services.ingest.seen import SeenIds, SeenWindow
from services.ingest.telemetry import IngestTelemetry
from services.runtime.config import Deployment
from services.runtime.kafka_link import KafkaLink
from services.runtime.ports import Clock, Outbox, TextTable

__all__ = ["IngestHandlers", "ingest_handlers"]


@dataclass(frozen=True)
class IngestHandlers:
    door: EventDoor
    records: RecordHandler


def ingest_handlers(
    deployment: Deployment,
    *,
    seen: TextTable,
    window: SeenWindow,
    outbox: Outbox,
    registry: CollectorRegistry,
    clock: Clock,
    ready: Callable[[], bool],
    link: KafkaLink | None = None,
) -> IngestHandlers:
    """The HTTP door (each tenant's signing secret, the body limit) and the record
    path, sharing the ids seen (kept for *window*), the outbox, the metrics and the
    tenants' channels."""
    seen = SeenIds(seen, window, clock)
    telemetry = IngestTelemetry(registry, deployment.tenants)
    channels: TenantChannels = {
        name: {c.name: c.audience for c in tenant.channels}
        for name, tenant in deployment.tenants.items()
    }
    records = RecordHandler(
        channels=channels, seen=seen, outbox=outbox, telemetry=telemetry, clock=clock
    )
    door = EventDoor(
        verifiers={name: Webhook(deployment.secret(name)) for name in deployment.tenants},
        channels=channels,
        max_body_bytes=deployment.ingest.max_body_bytes,
        seen=seen,
        window=window,
        outbox=outbox,
        telemetry=telemetry,
        clock=clock,
        ready=ready,
        link=link,
    )
    return IngestHandlers(door, records)
