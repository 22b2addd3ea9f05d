"""Publish's handler and its attempt loops wired to their ports from the deployment:
one assembly for the service (Kafka-backed ports, real transports) and for the
tests (in-memory ports, fake transports), so the wiring is written once.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry

from services.publish.attempts import Attempts, Jitter
from services.publish.channels import Transports
from services.publish.dead import DeadLetters
from services.publish.delivery import Delivery
from services.publish.handler import PublishHandler
from services.publish.telemetry import PublishTelemetry
from services.runtime.config import STATUS_CHANNEL, Deployment
from services.runtime.ports import Clock, ModelTable, Outbox

__all__ = ["publish_handler"]


def publish_handler(
    deployment: Deployment,
    *,
    records: ModelTable[Delivery],
    outbox: Outbox,
    transports: Transports,
    registry: CollectorRegistry,
    clock: Clock,
    ready: Callable[[], bool],
    dead: DeadLetters | None = None,
) -> PublishHandler:
    """The handler and its background attempts, with metrics for every channel of
    every tenant (the CMS's status webhook counted as the channel ``cms-status``)."""
    telemetry = PublishTelemetry(
        registry,
        {
            name: [c.name for c in t.channels] + ([STATUS_CHANNEL] if t.status_webhook else [])
            for name, t in deployment.tenants.items()
        },
    )
    attempts = Attempts(
        transports=transports, outbox=outbox, telemetry=telemetry, clock=clock, jitter=Jitter()
    )
    return PublishHandler(
        deployment=deployment,
        records=records,
        outbox=outbox,
        attempts=attempts,
        telemetry=telemetry,
        clock=clock,
        ready=ready,
        dead=dead,
    )
