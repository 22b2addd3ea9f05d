"""Composition root of publish.

In: ``gate.releases`` (ReleaseOrder) and ``publish.outcomes`` (attempt outcomes
and redelivery requests), co-partitioned by ``{tenant}:{item_id}`` and read by
one agent in batches (one partition's inputs in order, partitions side by side),
the only writer of the table ``publish-deliveries``: one record per
(tenant, item, version, channel, action), ``pending``, ``delivered`` or
``dead``, checked before anything is sent.

Out: the channels (Kafka topics at once; webhooks and SMTP attempted in the
background); ``publish.receipts`` (DeliveryReceipt, for the gate),
``publish.archive`` (every publication exactly as sent) and ``publish.dlq``
(DeadLetter). HTTP: ``GET /v1/dead-letters`` and
``POST /v1/dead-letters/{delivery_id}/redeliver``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import faust
import mode
from aiohttp import web
from prometheus_client import CollectorRegistry

from services.publish import operator_api
from services.publish.assembly import publish_handler
from services.publish.channels import Transports
from services.publish.dead import DeadLetters
from services.publish.delivery import Delivery
from services.publish.handler import PublishHandler
from services.publish.operator_api import OperatorApi
from services.publish.transports import transports_of
from services.runtime import topics
from services.runtime.app import inbound, is_ready, make_app
from services.runtime.batches import PartitionBatches
from services.runtime.config import Deployment
from services.runtime.kafka_link import KafkaLink
from services.runtime.kafka_probe import KafkaProbe, register_link_metric
from services.runtime.metrics import ConsumerLag
from services.runtime.mirror import TopicMirror, register_mirrors
from services.runtime.openapi import add_openapi, document, package_version
from services.runtime.operators import OperatorDirectory, operators_from
from services.runtime.outboxes import ProducerOutbox
from services.runtime.ports import Clock, ModelTable, Outbox, utcnow
from services.runtime.settings import Settings
from services.runtime.tables import OutboxModelTable, bytes_table
from services.runtime.web import LoginGuard, WebService, base_app

__all__ = ["PublishService", "build"]


@dataclass
class PublishService:
    app: faust.App
    services: Sequence[mode.ServiceT]
    web_app: web.Application
    handler: PublishHandler


def build(
    settings: Settings,
    deployment: Deployment,
    registry: CollectorRegistry,
    clock: Clock = utcnow,
    *,
    operators: OperatorDirectory | None = None,
    outbox: Outbox | None = None,
    records: ModelTable[Delivery] | None = None,
    transports: Transports | None = None,
) -> PublishService:
    app = make_app("publish", settings)
    registry.register(ConsumerLag(app))
    inputs = app.topic(
        topics.RELEASES,
        topics.PUBLISH_OUTCOMES,
        topics.NOTIFICATIONS,
        topics.STATUS,
        key_type=bytes,
        value_type=bytes,
    )
    table = bytes_table(app, "publish-deliveries", settings.partitions)
    # Outputs and the table's changelog go out on one producer that batches.
    producer = ProducerOutbox(settings, settings.kafka_write_timeout)
    outbox = outbox or producer
    transports = transports or transports_of(deployment, clock)
    # Dead letters every publish process lists: publish.dead, read whole by each.
    dead = DeadLetters()
    letters = TopicMirror(settings, topics.DEAD, dead.apply)
    register_mirrors(registry, [letters])
    handler = publish_handler(
        deployment,
        records=records or OutboxModelTable(table, Delivery, producer),
        outbox=outbox,
        transports=transports,
        registry=registry,
        clock=clock,
        ready=lambda: is_ready(app),
        dead=dead,
    )

    async def decide(events: Sequence[Any], enter: Callable[[int], None]) -> Awaitable[None]:
        return await handler.decide_batch([inbound(e) for e in events], enter)

    # One item's inputs in order; partitions side by side, in batches.
    batches = PartitionBatches(app, decide)

    @app.agent(inputs)
    async def publish(stream: Any) -> None:
        async for event in stream.noack().events():
            await batches.feed(event)

    @app.timer(interval=1.0)  # type: ignore[untyped-decorator]
    async def resume_pending() -> None:
        await handler.resume_pending()

    operators = operators or operators_from(settings)
    link = KafkaLink()
    register_link_metric(registry, link)
    web_app = base_app(
        registry,
        lambda: is_ready(app) and letters.caught_up,
        guard=LoginGuard(operators),
        unavailable=link.reason,
    )
    OperatorApi(handler, operators).add_routes(web_app)

    async def close_transports(_: web.Application) -> None:
        # Webhook connections close with the HTTP server, on the way out.
        await transports.close()

    web_app.on_cleanup.append(close_transports)
    add_openapi(
        web_app,
        document(
            "gatekeeper publish",
            package_version(),
            "Publish's dead letters: what failed its last attempt, and redelivery (CONTRACT 4, 5).",
            operator_api.OPERATIONS,
            tenants=sorted(deployment.tenants),
        ),
    )
    web_service = WebService(web_app, settings.host, settings.publish_port)
    probe = KafkaProbe(settings, link)
    services = [web_service, producer, probe, letters]
    return PublishService(app=app, services=services, web_app=web_app, handler=handler)
