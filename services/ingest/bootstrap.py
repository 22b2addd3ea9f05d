"""Composition root of ingest.

In: HTTP ``POST /v1/tenants/{tenant}/events`` and the topic ``cms.events``.
Out: ``cms.accepted`` (AcceptedEvent), ``gate.decisions`` (``accepted`` and
``rejected``) and ``cms.events.dlq`` (refused records, original bytes, reason
in headers). Table: ``ingest-seen``, the idempotency keys, so a redelivered
``webhook-id`` stays a duplicate across restarts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import faust
import mode
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from services.ingest import door
from services.ingest.assembly import ingest_handlers
from services.ingest.seen import EverySeen, SeenWindow
from services.runtime import topics
from services.runtime.app import inbound, is_ready, make_app
from services.runtime.config import Deployment
from services.runtime.faust_compat import changelog_topic_name
from services.runtime.kafka_link import KafkaLink
from services.runtime.kafka_probe import KafkaProbe, register_link_metric
from services.runtime.metrics import ConsumerLag
from services.runtime.mirror import TopicMirror, register_mirrors
from services.runtime.openapi import add_openapi, document, package_version
from services.runtime.outboxes import FaustOutbox
from services.runtime.ports import Clock, Outbox, TextTable, utcnow
from services.runtime.settings import Settings
from services.runtime.tables import FaustTextTable, bytes_table
from services.runtime.web import WebService, base_app

__all__ = ["IngestService", "build"]


@dataclass
class IngestService:
    app: faust.App
    services: Sequence[mode.ServiceT]
    web_app: web.Application


def build(
    settings: Settings,
    deployment: Deployment,
    registry: CollectorRegistry,
    clock: Clock = utcnow,
    *,
    outbox: Outbox | None = None,
    seen: TextTable | None = None,
) -> IngestService:
    app = make_app("ingest", settings)
    registry.register(ConsumerLag(app))
    cms_events = app.topic(topics.CMS_EVENTS, key_type=bytes, value_type=bytes)
    mirror: TopicMirror | None = None
    window = SeenWindow(settings.webhook_id_retention_ms / 1000, settings.webhook_ids_max_bytes)
    if seen is None:
        # the changelog keeps an id as long as the window does, then Kafka drops it
        kept = {"cleanup.policy": "compact,delete", "retention.ms": str(window.retention_ms)}
        table = bytes_table(app, "ingest-seen", settings.partitions, topic_configs=kept)
        every = EverySeen(FaustTextTable(table), window)
        # every process reads every process's ids: a redelivery to another is a duplicate
        mirror = TopicMirror(settings, changelog_topic_name(table), every.apply)
        seen = every

        @app.timer(interval=min(60.0, window.retention_s / 4))  # type: ignore[untyped-decorator]
        async def forget_old_ids() -> None:
            swept = every.sweep(clock().timestamp())
            if swept.expired or swept.evicted:
                log = structlog.get_logger("gatekeeper.ingest")
                event = "ingest.seen_ids_evicted" if swept.evicted else "ingest.seen_ids_expired"
                (log.warning if swept.evicted else log.info)(
                    event,
                    expired=swept.expired,
                    evicted=swept.evicted,
                    kept=swept.kept,
                    kept_bytes=swept.bytes,
                )

    outbox = outbox or FaustOutbox(app, settings.kafka_write_timeout)
    link = KafkaLink()
    register_link_metric(registry, link)
    handlers = ingest_handlers(
        deployment,
        seen=seen,
        window=window,
        outbox=outbox,
        registry=registry,
        clock=clock,
        ready=lambda: is_ready(app),
        link=link,
    )

    @app.agent(cms_events)
    async def validate(stream: Any) -> None:
        async for event in stream.events():
            await handlers.records.handle(inbound(event))

    limit = deployment.ingest.max_body_bytes
    web_app = base_app(
        registry, lambda: is_ready(app), client_max_size=limit + 1, unavailable=link.reason
    )
    handlers.door.add_routes(web_app)
    add_openapi(
        web_app,
        document(
            "gatekeeper ingest",
            package_version(),
            "The CMS's door for signed events, and the webhooks channels receive.",
            door.OPERATIONS,
            tenants=sorted(deployment.tenants),
            webhooks=door.WEBHOOKS,
        ),
    )
    web_service = WebService(web_app, settings.host, settings.ingest_port)
    probe = KafkaProbe(settings, link)
    if mirror is not None:
        register_mirrors(registry, [mirror])
    services: list[mode.ServiceT] = [web_service, probe, *([mirror] if mirror else [])]
    return IngestService(app=app, services=services, web_app=web_app)
