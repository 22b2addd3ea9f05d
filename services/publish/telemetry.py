"""What publish reports of its deliveries: metrics and log lines, from one place."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Literal

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from services.publish.delivery import Delivery
from services.runtime.ports import InboundRecord

__all__ = ["PublishTelemetry"]

log = structlog.get_logger("gatekeeper.publish")


def ids(record: Delivery) -> dict[str, object]:
    """What every log line about one delivery carries."""
    order = record.order
    return {
        "tenant": order.tenant,
        "item_id": order.item_id,
        "event_id": order.event_id,
        "version": order.version,
        "channel": record.channel,
        "delivery_id": record.delivery_id,
    }


class PublishTelemetry:
    def __init__(self, registry: CollectorRegistry, channels: Mapping[str, Sequence[str]]) -> None:
        self.deliveries = Counter(
            "gatekeeper_publish_deliveries_total",
            "Deliveries by tenant, channel and outcome.",
            ["tenant", "channel", "outcome"],
            registry=registry,
        )
        self.attempts = Counter(
            "gatekeeper_publish_delivery_attempts_total",
            "Delivery attempts by tenant, channel and result.",
            ["tenant", "channel", "result"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "gatekeeper_publish_dead_letters_total",
            "Deliveries sent to the dead-letter topic after their last attempt.",
            ["tenant", "channel"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "gatekeeper_publish_deliveries_in_flight",
            "Webhook and SMTP deliveries being attempted now.",
            registry=registry,
        )
        for tenant, names in channels.items():
            for channel in names:
                self.dead_letters.labels(tenant, channel)
                for result in ("delivered", "failed"):
                    self.attempts.labels(tenant, channel, result)
                for outcome in ("delivered", "duplicate", "dead_lettered"):
                    self.deliveries.labels(tenant, channel, outcome)

    def attempted(
        self,
        record: Delivery,
        result: Literal["delivered", "failed"],
        attempt: int,
        error: str | None = None,
        retry_at: datetime | None = None,
    ) -> None:
        self.attempts.labels(record.order.tenant, record.channel, result).inc()
        if error is not None:
            log.warning(
                "delivery.attempt_failed",
                **ids(record),
                attempt=attempt,
                error=error,
                next_attempt_at=retry_at.isoformat() if retry_at else None,
            )

    def delivered(self, record: Delivery) -> None:
        order = record.order
        self.deliveries.labels(order.tenant, record.channel, "delivered").inc()
        log.info(
            "delivery.delivered",
            **ids(record),
            action=order.action,
            decision_id=order.decision_id,
            attempts=record.attempts,
        )

    def duplicate(self, record: Delivery) -> None:
        self.deliveries.labels(record.order.tenant, record.channel, "duplicate").inc()

    def dead_lettered(self, record: Delivery) -> None:
        tenant = record.order.tenant
        self.dead_letters.labels(tenant, record.channel).inc()
        self.deliveries.labels(tenant, record.channel, "dead_lettered").inc()
        log.error(
            "delivery.dead_lettered", **ids(record), attempts=record.attempts, error=record.error
        )

    def redelivering(self, record: Delivery) -> None:
        log.info("delivery.redeliver", **ids(record))

    def unknown_tenant(self, tenant: str, item_id: str) -> None:
        log.error("release.unknown_tenant", tenant=tenant, item_id=item_id)

    def unknown_channel(self, tenant: str, item_id: str, event_id: str | None, name: str) -> None:
        log.error(
            "release.unknown_channel",
            tenant=tenant,
            item_id=item_id,
            event_id=event_id,
            channel=name,
        )

    def unknown_delivery(self, key: str) -> None:
        log.error("outcome.unknown_delivery", key=key)

    def undecodable_input(self, record: InboundRecord, errors: int) -> None:
        log.error("input.undecodable", topic=record.topic, offset=record.offset, errors=errors)
