"""Composition root of publish.

In: ``gate.releases`` (ReleaseOrder). Table: ``publish-delivered``, the
deliveries already made, checked before sending so a redelivered order never
reaches a receiver twice. Out: the channels' topics, webhooks and SMTP servers;
``publish.receipts`` (DeliveryReceipt, for the gate), ``publish.archive`` (every
publication exactly as sent) and ``publish.dlq`` (deliveries that failed their
last attempt).
"""

from __future__ import annotations

import asyncio
import json
import random
import smtplib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import aiohttp
import faust
import mode
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter
from pydantic import ValidationError
from standardwebhooks import Webhook

from schemas.events import ReleaseOrder
from services.publish import delivery
from services.runtime import topics
from services.runtime.config import (
    Channel,
    Deployment,
    KafkaTransport,
    SmtpTransport,
    WebhookTransport,
)
from services.runtime.settings import Settings
from services.runtime.streams import bytes_table, is_ready, make_app
from services.runtime.web import WebService, base_app

__all__ = ["Publish", "build"]

log = structlog.get_logger("gatekeeper.publish")
Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class DeliveryFailed(Exception):
    """A receiver did not take the delivery; the message says why."""


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.deliveries = Counter(
            "gatekeeper_publish_deliveries_total",
            "Deliveries by tenant, channel and outcome.",
            ["tenant", "channel", "outcome"],
            registry=registry,
        )
        self.attempts = Counter(
            "gatekeeper_publish_delivery_attempts_total",
            "Delivery attempts by tenant and channel.",
            ["tenant", "channel"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "gatekeeper_publish_dead_letters_total",
            "Deliveries sent to the dead-letter topic after their last attempt.",
            ["tenant", "channel"],
            registry=registry,
        )


@dataclass
class Publish:
    app: faust.App
    services: Sequence[mode.ServiceT]
    web_app: web.Application


def build(
    settings: Settings,
    deployment: Deployment,
    registry: CollectorRegistry,
    clock: Clock = _utcnow,
) -> Publish:
    app = make_app("publish", settings)
    metrics = _Metrics(registry)
    signers = {name: Webhook(deployment.outbound_secret(name)) for name in deployment.tenants}
    releases = app.topic(topics.RELEASES, key_type=bytes, value_type=bytes)
    delivered = bytes_table(app, "publish-delivered", settings.partitions)
    jitter = random.Random()  # noqa: S311  (backoff jitter, not security)
    session: aiohttp.ClientSession | None = None

    async def send(topic: str, key: bytes, value: bytes) -> None:
        await app.producer.send_and_wait(topic, key, value, None, None, None)

    async def to_kafka(transport: KafkaTransport, key: bytes, payload: bytes) -> None:
        await send(transport.topic, key, payload)

    async def to_webhook(
        transport: WebhookTransport, order: ReleaseOrder, channel: str, payload: bytes
    ) -> None:
        nonlocal session
        if session is None:
            session = aiohttp.ClientSession()
        msg_id = delivery.webhook_id(order, channel)
        now = clock()
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signers[order.tenant].sign(msg_id, now, payload.decode()),
        }
        try:
            async with session.post(
                transport.url,
                data=payload,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=transport.timeout_seconds),
            ) as response:
                if not 200 <= response.status < 300:
                    raise DeliveryFailed(f"HTTP {response.status} from {transport.url}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryFailed(f"{type(exc).__name__} from {transport.url}") from exc

    async def to_smtp(transport: SmtpTransport, order: ReleaseOrder) -> None:
        subject, text = delivery.render_email(order)
        message = EmailMessage()
        message["From"] = transport.from_
        message["To"] = ", ".join(transport.recipients)
        message["Subject"] = subject
        message.set_content(text)

        def deliver() -> None:
            with smtplib.SMTP(transport.host, transport.port, timeout=30) as smtp:
                smtp.send_message(message)

        try:
            await asyncio.to_thread(deliver)
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryFailed(f"{type(exc).__name__} from {transport.host}") from exc

    async def attempt(order: ReleaseOrder, channel: Channel, payload: bytes) -> None:
        transport = channel.transport
        key = f"{order.tenant}:{order.item_id}".encode()
        match transport:
            case KafkaTransport():
                await to_kafka(transport, key, payload)
            case WebhookTransport():
                await to_webhook(transport, order, channel.name, payload)
            case SmtpTransport():
                await to_smtp(transport, order)

    def max_attempts(channel: Channel) -> int:
        transport = channel.transport
        return 1 if isinstance(transport, KafkaTransport) else transport.max_attempts

    async def deliver(order: ReleaseOrder, channel: Channel) -> None:
        key = delivery.delivery_key(order, channel.name)
        bound = log.bind(
            tenant=order.tenant,
            item_id=order.item_id,
            channel=channel.name,
            version=order.version,
            decision_id=order.decision_id,
        )
        item_key = f"{order.tenant}:{order.item_id}".encode()
        if delivered.get(key.encode()) is not None:
            # Delivered before a crash or redelivery: never again, but the
            # receipt may not have been written, so write it (it is idempotent).
            receipt = delivery.receipt_for(order, channel.name, clock())
            await send(topics.RECEIPTS, item_key, receipt.model_dump_json().encode())
            metrics.deliveries.labels(order.tenant, channel.name, "duplicate").inc()
            bound.info("delivery.duplicate")
            return
        payload = delivery.notice_for(order, channel.name).model_dump_json().encode()
        error = ""
        attempts = max_attempts(channel)
        for n in range(1, attempts + 1):
            metrics.attempts.labels(order.tenant, channel.name).inc()
            try:
                await attempt(order, channel, payload)
                break
            except DeliveryFailed as exc:
                error = str(exc)
                bound.warning("delivery.retry", attempt=n, error=error)
                if n < attempts:
                    await asyncio.sleep(delivery.backoff_seconds(n, 0.5, 30.0, jitter.random()))
        else:
            record = {
                "delivery_key": key,
                "reason": error,
                "attempts": attempts,
                "order": json.loads(order.model_dump_json()),
                "channel": channel.name,
                "failed_at": clock().isoformat(),
            }
            await send(topics.PUBLISH_DLQ, item_key, json.dumps(record).encode())
            metrics.dead_letters.labels(order.tenant, channel.name).inc()
            metrics.deliveries.labels(order.tenant, channel.name, "dead_lettered").inc()
            bound.error("delivery.dead_lettered", attempts=attempts, error=error)
            return
        now = clock()
        delivered[key.encode()] = now.isoformat().encode()
        archived = delivery.archive_record(channel.name, payload, now)
        await send(topics.PUBLISH_ARCHIVE, item_key, json.dumps(archived).encode())
        receipt = delivery.receipt_for(order, channel.name, now)
        await send(topics.RECEIPTS, item_key, receipt.model_dump_json().encode())
        metrics.deliveries.labels(order.tenant, channel.name, "delivered").inc()
        bound.info("delivery.delivered", action=order.action)

    async def handle(value: bytes) -> None:
        try:
            order = ReleaseOrder.model_validate_json(value)
        except ValidationError as exc:
            log.error("release.undecodable", errors=exc.error_count())
            return
        tenant = deployment.tenants.get(order.tenant)
        if tenant is None:
            log.error("release.unknown_tenant", tenant=order.tenant, item_id=order.item_id)
            return
        work = []
        for name in order.channels:
            channel = tenant.channel(name)
            if channel is None:
                log.error(
                    "release.unknown_channel",
                    tenant=order.tenant,
                    item_id=order.item_id,
                    channel=name,
                )
                continue
            work.append(deliver(order, channel))
        # Channels are independent: a slow webhook must not hold back the intranet.
        await asyncio.gather(*work)

    @app.agent(releases)
    async def publish(stream: Any) -> None:
        async for event in stream.events():
            if event.message.value is not None:
                await handle(event.message.value)

    web_app = base_app(registry, lambda: is_ready(app))
    web_service = WebService(web_app, settings.host, settings.publish_port)
    return Publish(app=app, services=[web_service], web_app=web_app)
