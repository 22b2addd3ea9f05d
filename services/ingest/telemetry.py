"""What ingest reports: request and event counts, and a log line per outcome."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Literal

import structlog
from prometheus_client import CollectorRegistry, Counter

from schemas.events import Decision

__all__ = ["IngestTelemetry", "Source"]

log = structlog.get_logger("gatekeeper.ingest")
Source = Literal["http", "kafka"]


class IngestTelemetry:
    def __init__(self, registry: CollectorRegistry, tenants: Collection[str]) -> None:
        self._tenants = tenants
        self.requests = Counter(
            "gatekeeper_ingest_requests_total",
            "HTTP event submissions by tenant and answer status.",
            ["tenant", "status"],
            registry=registry,
        )
        self.events = Counter(
            "gatekeeper_ingest_events_total",
            "Events handled by the cms.events agent, by source and outcome.",
            ["source", "outcome"],
            registry=registry,
        )
        for source in ("http", "kafka"):
            for outcome in ("accepted", "duplicate", "dead_lettered"):
                self.events.labels(source, outcome)

    def answered(self, tenant: str, status: int) -> None:
        label = tenant if tenant in self._tenants else "unknown"
        self.requests.labels(label, str(status)).inc()

    # -- the HTTP door ------------------------------------------------------------------

    def received(self, tenant: str, item_id: str, event_id: str, webhook_id: str) -> None:
        log.info(
            "event.received",
            tenant=tenant,
            item_id=item_id,
            event_id=event_id,
            webhook_id=webhook_id,
        )

    def answered_duplicate(self, tenant: str, event_id: str, webhook_id: str) -> None:
        log.info("event.duplicate", tenant=tenant, event_id=event_id, webhook_id=webhook_id)

    def refused(self, tenant: str, status: int, fields: Sequence[str]) -> None:
        log.info("event.refused", tenant=tenant, status=status, fields=list(fields))

    def write_failed(self, tenant: str, item_id: str, event_id: str, error: str) -> None:
        log.error(
            "event.write_failed", tenant=tenant, item_id=item_id, event_id=event_id, error=error
        )

    def audit_failed(self, tenant: str, webhook_id: str, error: str) -> None:
        log.error("decision.audit_failed", tenant=tenant, webhook_id=webhook_id, error=error)

    # -- the Kafka path -----------------------------------------------------------------

    def accepted(self, decision: Decision, source: Source, action: str) -> None:
        self.events.labels(source, "accepted").inc()
        log.info(
            "decision.accepted",
            tenant=decision.tenant,
            item_id=decision.item_id,
            event_id=decision.event_id,
            decision_id=decision.decision_id,
            source=source,
            version=decision.version,
            action=action,
        )

    def duplicate(
        self, source: Source, tenant: str, item_id: str, event_id: str, webhook_id: str
    ) -> None:
        self.events.labels(source, "duplicate").inc()
        log.info(
            "event.duplicate",
            tenant=tenant,
            item_id=item_id,
            event_id=event_id,
            webhook_id=webhook_id,
        )

    def rejected(self, decision: Decision) -> None:
        log.info(
            "decision.rejected",
            tenant=decision.tenant,
            item_id=decision.item_id,
            event_id=decision.event_id,
            decision_id=decision.decision_id,
            rule=decision.rule,
        )

    def dead_lettered(
        self, source: Source, reason: str, fields: Sequence[str], partition: int, offset: int
    ) -> None:
        self.events.labels(source, "dead_lettered").inc()
        log.warning(
            "event.dead_lettered",
            reason=reason,
            fields=list(fields),
            partition=partition,
            offset=offset,
        )
