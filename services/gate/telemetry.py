"""What the gate reports of its work: one metric and one log line per decision, from here."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from schemas.events import Decision, ManualReject, ManualRelease, ReleaseOrder
from services.gate.followup import FollowUp
from services.gate.state import (
    AWAITING_INTERNAL_LEAD,
    AWAITING_INTERNAL_NOTICE,
    AWAITING_PUBLISH_AT,
)
from services.runtime.ports import Clock, InboundRecord

__all__ = ["FollowUpCollector", "GateTelemetry"]

log = structlog.get_logger("gatekeeper.gate")
_REASONS = (AWAITING_INTERNAL_NOTICE, AWAITING_INTERNAL_LEAD, AWAITING_PUBLISH_AT)
_STOCKHOLM = ZoneInfo("Europe/Stockholm")


class GateTelemetry:
    """The gate's metrics, labelled for every configured tenant from the start."""

    def __init__(
        self, registry: CollectorRegistry, escalate_after: Mapping[str, timedelta]
    ) -> None:
        self._tenants = tuple(escalate_after)
        self.decisions = Counter(
            "gatekeeper_gate_decisions_total",
            "Gate decisions by tenant, kind and rule.",
            ["tenant", "kind", "rule"],
            registry=registry,
        )
        self.held = Gauge(
            "gatekeeper_gate_held_items",
            "Items that hold something now, by tenant.",
            ["tenant"],
            registry=registry,
        )
        self.by_reason = Gauge(
            "gatekeeper_gate_holds_by_reason",
            "Holds now by tenant and reason; a hold with several reasons counts under each.",
            ["tenant", "reason"],
            registry=registry,
        )
        self.escalated = Gauge(
            "gatekeeper_gate_escalated_holds",
            "Holds the gate escalated (waiting past escalate_after on a person), by tenant.",
            ["tenant"],
            registry=registry,
        )
        self.oldest = Gauge(
            "gatekeeper_gate_oldest_hold_age_seconds",
            "Age of the oldest hold, by tenant.",
            ["tenant"],
            registry=registry,
        )
        self.latency = Histogram(
            "gatekeeper_gate_release_latency_seconds",
            "From the internal notice's delivery to the external release.",
            ["tenant"],
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.escalations = Counter(
            "gatekeeper_gate_escalations_total",
            "Holds that passed the tenant's escalate_after.",
            ["tenant"],
            registry=registry,
        )
        self.overridden = Counter(
            "gatekeeper_gate_overridden_total",
            "Held items a person released (decision overridden).",
            ["tenant"],
            registry=registry,
        )
        self.rejected_by_operator = Counter(
            "gatekeeper_gate_rejected_by_operator_total",
            "Held items a person stopped (decision rejected_by_operator).",
            ["tenant"],
            registry=registry,
        )
        self.releases = Counter(
            "gatekeeper_gate_releases_total",
            "Release orders sent to publish, by tenant and audience.",
            ["tenant", "audience"],
            registry=registry,
        )
        self.escalate_after = Gauge(
            "gatekeeper_gate_escalate_after_seconds",
            "The tenant's escalate_after, for alerting on holds older than it.",
            ["tenant"],
            registry=registry,
        )
        self.undecodable = Counter(
            "gatekeeper_gate_undecodable_total",
            "Records on the gate's inputs that could not be decoded.",
            ["topic"],
            registry=registry,
        )
        for tenant, after in escalate_after.items():
            self.escalate_after.labels(tenant).set(after.total_seconds())
            self.escalations.labels(tenant)
            self.overridden.labels(tenant)
            self.rejected_by_operator.labels(tenant)
            self.latency.labels(tenant)
            for audience in ("internal", "external"):
                self.releases.labels(tenant, audience)

    def decided(self, decision: Decision) -> None:
        """The metric and the log line of one decision."""
        self.decisions.labels(decision.tenant, decision.kind, decision.rule).inc()
        if decision.kind == "escalated":
            self.escalations.labels(decision.tenant).inc()
        elif decision.kind == "overridden":
            self.overridden.labels(decision.tenant).inc()
        elif decision.kind == "rejected_by_operator":
            self.rejected_by_operator.labels(decision.tenant).inc()
        log.info(
            f"decision.{decision.kind}",
            tenant=decision.tenant,
            item_id=decision.item_id,
            event_id=decision.event_id,
            decision_id=decision.decision_id,
            version=decision.version,
            audience=decision.audience,
            rule=decision.rule,
            reason=decision.reason,
            channels=decision.channels,
            operator=decision.operator,
        )

    def released(self, order: ReleaseOrder, latency: float | None) -> None:
        """A release order sent; *latency* since the internal notice's delivery, if external."""
        self.releases.labels(order.tenant, order.audience).inc()
        if latency is not None:
            self.latency.labels(order.tenant).observe(max(latency, 0.0))

    def undecodable_input(self, record: InboundRecord, errors: int) -> None:
        self.undecodable.labels(record.topic).inc()
        tenant, _, item_id = (record.key or b"").decode("utf-8", "replace").partition(":")
        log.error(
            "input.undecodable", topic=record.topic, tenant=tenant, item_id=item_id, errors=errors
        )

    def unknown_tenant(self, record: InboundRecord, tenant: str, item_id: str) -> None:
        log.error("input.unknown_tenant", topic=record.topic, tenant=tenant, item_id=item_id)

    def unkeyed_input(self, record: InboundRecord) -> None:
        log.error("input.unkeyed", topic=record.topic, offset=record.offset)

    def operator_requested(self, command: ManualRelease | ManualReject) -> None:
        what = "release" if isinstance(command, ManualRelease) else "reject"
        log.info(
            f"operator.{what}_requested",
            tenant=command.tenant,
            item_id=command.item_id,
            request_id=command.request_id,
            operator=command.operator,
        )

    def holds(
        self,
        counts: Mapping[tuple[str, str], int],
        tenants: Mapping[str, tuple[int, int, datetime | None]],
        now: datetime,
    ) -> None:
        """Set the hold gauges: every tenant and reason, zero where nothing is held.

        *tenants* maps each tenant to (items held, holds escalated, oldest hold's start).
        """
        values = {(t, r): 0 for t in self._tenants for r in _REASONS}
        values.update(counts)
        self.by_reason.clear()
        for (tenant, reason), n in values.items():
            self.by_reason.labels(tenant, reason).set(n)
        for tenant, (items, escalated, since) in tenants.items():
            self.held.labels(tenant).set(items)
            self.escalated.labels(tenant).set(escalated)
            self.oldest.labels(tenant).set((now - since).total_seconds() if since else 0.0)


class FollowUpCollector(Collector):
    """The follow-up figures of the current month (Europe/Stockholm), per tenant and unit,
    for a Grafana row beside the operational ones."""

    _COUNTS = (
        "external_released",
        "held",
        "escalated",
        "overridden",
        "rejected_by_operator",
        "crisis",
        "retracted",
    )

    def __init__(self, followup: FollowUp, tenants: Sequence[str], clock: Clock) -> None:
        self._followup = followup
        self._tenants = tuple(tenants)
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        versions = GaugeMetricFamily(
            "gatekeeper_followup_versions",
            "This month's item versions per tenant, unit and figure (follow-up).",
            labels=["tenant", "unit", "figure"],
        )
        lead = GaugeMetricFamily(
            "gatekeeper_followup_internal_lead_seconds",
            "This month's internal lead given before external releases, per unit.",
            labels=["tenant", "unit", "quantile"],
        )
        month = self._clock().astimezone(_STOCKHOLM).strftime("%Y-%m")
        for tenant in self._tenants:
            for row in self._followup.figures(tenant, month):
                figures = row.model_dump()
                for name in self._COUNTS:
                    versions.add_metric([tenant, row.unit, name], figures[name])
                for quantile, value in (
                    ("0.5", row.internal_lead_median_s),
                    ("0.9", row.internal_lead_p90_s),
                ):
                    if value is not None:
                        lead.add_metric([tenant, row.unit, quantile], value)
        yield versions
        yield lead
