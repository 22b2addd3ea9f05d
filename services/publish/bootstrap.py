"""Composition root of publish.

In: ``gate.releases`` (ReleaseOrder) and ``publish.outcomes`` (attempt outcomes
and redelivery requests), co-partitioned by ``{tenant}:{item_id}`` and read by
one agent, the only writer of the table ``publish-deliveries``: one record per
(tenant, item, version, channel, action), ``pending``, ``delivered`` or
``dead``, checked before anything is sent.

Kafka channels are written at once. Webhook and SMTP deliveries are attempted
by background tasks with exponential backoff and jitter, so a slow or failing
receiver never holds back another channel or item; their outcomes come back
through ``publish.outcomes``. A pending delivery left by a crash is taken up
again after restart.

Out: the channels; ``publish.receipts`` (DeliveryReceipt, for the gate),
``publish.archive`` (every publication exactly as sent) and ``publish.dlq``
(DeadLetter). HTTP: ``GET /v1/dead-letters`` and
``POST /v1/dead-letters/{delivery_id}/redeliver``.
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
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import ValidationError
from standardwebhooks import Webhook

from schemas.events import ReleaseOrder
from services.publish import delivery
from services.publish.delivery import Delivery, Outcome
from services.runtime import topics
from services.runtime.config import (
    Channel,
    Deployment,
    KafkaTransport,
    SmtpTransport,
    WebhookTransport,
)
from services.runtime.metrics import ConsumerLag
from services.runtime.settings import Settings
from services.runtime.streams import bytes_table, is_ready, make_app
from services.runtime.web import WebService, base_app, bearer_matches, problem

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
    registry.register(ConsumerLag(app))
    for name, tenant in deployment.tenants.items():
        for channel in tenant.channels:
            metrics.dead_letters.labels(name, channel.name)
            for result in ("delivered", "failed"):
                metrics.attempts.labels(name, channel.name, result)
            for outcome in ("delivered", "duplicate", "dead_lettered"):
                metrics.deliveries.labels(name, channel.name, outcome)
    signers = {name: Webhook(deployment.outbound_secret(name)) for name in deployment.tenants}
    operator_token = settings.operator_token.get_secret_value() if settings.operator_token else None
    inputs = app.topic(topics.RELEASES, topics.PUBLISH_OUTCOMES, key_type=bytes, value_type=bytes)
    records = bytes_table(app, "publish-deliveries", settings.partitions)
    running: dict[str, asyncio.Task[None]] = {}
    scanned = False  # pending records without a task were looked for since ready
    jitter = random.Random()  # noqa: S311  (backoff jitter, not security)
    session: aiohttp.ClientSession | None = None

    def channel_of(record: Delivery) -> Channel | None:
        tenant = deployment.tenants.get(record.order.tenant)
        return tenant.channel(record.channel) if tenant else None

    def load(key: str) -> Delivery | None:
        raw = records.get(key.encode())
        return Delivery.model_validate_json(raw) if raw is not None else None

    def store(record: Delivery) -> None:
        records[record.key.encode()] = record.model_dump_json().encode()

    async def send(topic: str, key: bytes, value: bytes, headers: Any = None) -> None:
        await app.producer.send_and_wait(topic, key, value, None, None, headers)

    def item_key(order: ReleaseOrder) -> bytes:
        return f"{order.tenant}:{order.item_id}".encode()

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

    # ---- transports -----------------------------------------------------------------

    async def to_webhook(transport: WebhookTransport, record: Delivery, payload: bytes) -> None:
        nonlocal session
        if session is None:
            session = aiohttp.ClientSession()
        now = clock()
        headers = {
            "content-type": "application/json",
            "webhook-id": record.delivery_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signers[record.order.tenant].sign(
                record.delivery_id, now, payload.decode()
            ),
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

    async def to_smtp(transport: SmtpTransport, record: Delivery) -> bytes:
        subject, text = delivery.render_email(record.order)
        message = EmailMessage()
        message["From"] = transport.from_
        message["To"] = ", ".join(transport.recipients)
        message["Subject"] = subject
        message["Message-ID"] = f"<{record.delivery_id}@gatekeeper>"
        message.set_content(text)

        def deliver() -> None:
            with smtplib.SMTP(transport.host, transport.port, timeout=30) as smtp:
                smtp.send_message(message)

        try:
            await asyncio.to_thread(deliver)
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryFailed(f"{type(exc).__name__} from {transport.host}") from exc
        return message.as_bytes()

    async def attempt(
        transport: WebhookTransport | SmtpTransport, record: Delivery, payload: bytes
    ) -> bytes:
        """One try; returns the bytes exactly as sent."""
        if isinstance(transport, WebhookTransport):
            await to_webhook(transport, record, payload)
            return payload
        return await to_smtp(transport, record)

    async def attempt_loop(record: Delivery) -> None:
        """Try a webhook or SMTP delivery until it succeeds or runs out of attempts."""
        nonlocal scanned
        order = record.order
        bound = log.bind(**ids(record))
        channel = channel_of(record)
        payload = delivery.notice_for(order, record.channel).model_dump_json().encode()
        outcome = Outcome(
            kind="failed",
            key=record.key,
            attempts=1,
            error="channel is no longer configured",
            at=clock(),
        )
        metrics.in_flight.inc()
        try:
            transport = channel.transport if channel else None
            if isinstance(transport, WebhookTransport | SmtpTransport):
                for n in range(1, transport.max_attempts + 1):
                    try:
                        sent = await attempt(transport, record, payload)
                    except DeliveryFailed as exc:
                        metrics.attempts.labels(order.tenant, record.channel, "failed").inc()
                        bound.warning("delivery.attempt_failed", attempt=n, error=str(exc))
                        outcome = Outcome(
                            kind="failed", key=record.key, attempts=n, error=str(exc), at=clock()
                        )
                        if n < transport.max_attempts:
                            await asyncio.sleep(
                                delivery.backoff_seconds(
                                    n,
                                    settings.retry_base_seconds,
                                    settings.retry_cap_seconds,
                                    jitter.random(),
                                )
                            )
                        continue
                    metrics.attempts.labels(order.tenant, record.channel, "delivered").inc()
                    outcome = Outcome(
                        kind="delivered",
                        key=record.key,
                        attempts=n,
                        payload=sent.decode("utf-8", "replace"),
                        at=clock(),
                    )
                    break
            await send(topics.PUBLISH_OUTCOMES, item_key(order), outcome.model_dump_json().encode())
            # The key stays in `running` until the agent has recorded this outcome,
            # so the resume timer does not start the same delivery again meanwhile.
        except BaseException:
            running.pop(record.key, None)
            scanned = False  # the record is still pending: the next tick takes it up again
            raise
        finally:
            metrics.in_flight.dec()

    def start_attempts(record: Delivery) -> None:
        if record.key not in running:
            running[record.key] = asyncio.ensure_future(attempt_loop(record))

    # ---- the agent: the only writer of the delivery records ------------------------

    async def delivered(record: Delivery, payload: bytes, attempts: int) -> None:
        now = clock()
        store(
            record.model_copy(
                update={
                    "status": "delivered",
                    "attempts": attempts,
                    "error": None,
                    "updated_at": now,
                }
            )
        )
        order = record.order
        archived = delivery.archive_record(record.channel, payload, now)
        archived["delivery_id"] = record.delivery_id
        await send(topics.PUBLISH_ARCHIVE, item_key(order), json.dumps(archived).encode())
        receipt = delivery.receipt_for(order, record.channel, now)
        await send(topics.RECEIPTS, item_key(order), receipt.model_dump_json().encode())
        metrics.deliveries.labels(order.tenant, record.channel, "delivered").inc()
        log.info(
            "delivery.delivered",
            **ids(record),
            action=order.action,
            decision_id=order.decision_id,
            attempts=attempts,
        )

    async def on_order(order: ReleaseOrder) -> None:
        tenant = deployment.tenants.get(order.tenant)
        if tenant is None:
            log.error("release.unknown_tenant", tenant=order.tenant, item_id=order.item_id)
            return
        for name in order.channels:
            channel = tenant.channel(name)
            if channel is None:
                log.error(
                    "release.unknown_channel",
                    tenant=order.tenant,
                    item_id=order.item_id,
                    event_id=order.event_id,
                    channel=name,
                )
                continue
            key = delivery.delivery_key(order, name)
            known = load(key)
            if known is not None and known.status != "pending":
                if known.status == "delivered":
                    # A repeated order: never deliver again, but the receipt may
                    # have been lost in a crash, and receipts are idempotent.
                    receipt = delivery.receipt_for(order, name, known.updated_at)
                    await send(topics.RECEIPTS, item_key(order), receipt.model_dump_json().encode())
                metrics.deliveries.labels(order.tenant, name, "duplicate").inc()
                continue
            # A pending record seen again means the order is being replayed after a
            # crash in the middle of it: finish it, under the same delivery id.
            record = known or delivery.pending(order, name, clock())
            if known is None:
                store(record)
            if isinstance(channel.transport, KafkaTransport):
                payload = delivery.notice_for(order, name).model_dump_json().encode()
                await send(
                    channel.transport.topic,
                    item_key(order),
                    payload,
                    [("gatekeeper-delivery-id", record.delivery_id.encode())],
                )
                metrics.attempts.labels(order.tenant, name, "delivered").inc()
                await delivered(record, payload, 1)
            else:
                start_attempts(record)

    async def on_outcome(outcome: Outcome) -> None:
        if outcome.kind != "redeliver":
            running.pop(outcome.key, None)
        record = load(outcome.key)
        if record is None:
            log.error("outcome.unknown_delivery", key=outcome.key)
            return
        order = record.order
        if outcome.kind == "delivered" and record.status == "pending":
            await delivered(record, (outcome.payload or "").encode(), outcome.attempts)
        elif outcome.kind == "failed" and record.status == "pending":
            now = clock()
            dead = record.model_copy(
                update={
                    "status": "dead",
                    "attempts": outcome.attempts,
                    "error": outcome.error,
                    "updated_at": now,
                }
            )
            store(dead)
            letter = delivery.dead_letter(dead, now)
            await send(topics.PUBLISH_DLQ, item_key(order), letter.model_dump_json().encode())
            metrics.dead_letters.labels(order.tenant, record.channel).inc()
            metrics.deliveries.labels(order.tenant, record.channel, "dead_lettered").inc()
            log.error(
                "delivery.dead_lettered",
                **ids(record),
                attempts=outcome.attempts,
                error=outcome.error,
            )
        elif outcome.kind == "redeliver" and record.status == "dead":
            again = record.model_copy(
                update={"status": "pending", "attempts": 0, "updated_at": clock()}
            )
            store(again)
            log.info(
                "delivery.redeliver",
                **ids(record),
            )
            start_attempts(again)

    @app.agent(inputs)
    async def publish(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            if msg.value is None:
                continue
            try:
                if msg.topic == topics.RELEASES:
                    await on_order(ReleaseOrder.model_validate_json(msg.value))
                else:
                    await on_outcome(Outcome.model_validate_json(msg.value))
            except ValidationError as exc:
                log.error(
                    "input.undecodable",
                    topic=msg.topic,
                    offset=msg.offset,
                    errors=exc.error_count(),
                )

    @app.timer(interval=1.0)  # type: ignore[untyped-decorator]
    async def resume_pending() -> None:
        """Take up deliveries left pending by a crash or a rebalance.

        Only a restart or a new partition assignment leaves a pending record with
        no task behind it (the agent starts a task for every record it makes
        pending), so the table is scanned when the worker becomes ready again,
        not on every tick.
        """
        nonlocal scanned
        if not is_ready(app):
            scanned = False
            return
        if scanned:
            return
        scanned = True
        for raw in list(records.values()):
            record = Delivery.model_validate_json(raw)
            if record.status == "pending" and record.key not in running:
                channel = channel_of(record)
                if channel is not None and isinstance(channel.transport, KafkaTransport):
                    continue  # Kafka deliveries complete inside the agent
                start_attempts(record)

    # ---- operator API ---------------------------------------------------------------

    def dead_letters() -> list[Delivery]:
        found = [Delivery.model_validate_json(raw) for raw in list(records.values())]
        return sorted((r for r in found if r.status == "dead"), key=lambda r: r.updated_at)

    async def list_dead(request: web.Request) -> web.Response:
        tenant = request.query.get("tenant")
        rows = [
            {
                "delivery_id": r.delivery_id,
                "tenant": r.order.tenant,
                "item_id": r.order.item_id,
                "version": r.order.version,
                "action": r.order.action,
                "channel": r.channel,
                "reason": r.error,
                "attempts": r.attempts,
                "failed_at": r.updated_at.isoformat(),
            }
            for r in dead_letters()
            if tenant is None or r.order.tenant == tenant
        ]
        return web.json_response({"dead_letters": rows, "count": len(rows)})

    async def redeliver(request: web.Request) -> web.Response:
        if not bearer_matches(request, operator_token):
            return problem(
                401,
                "Unauthorized",
                "A valid operator bearer token is required.",
                slug="unauthorized",
                instance=request.path,
            )
        wanted = request.match_info["delivery_id"]
        record = next((r for r in dead_letters() if r.delivery_id == wanted), None)
        if record is None:
            return problem(
                404,
                "No such dead letter",
                f"No dead letter {wanted!r}.",
                slug="not-found",
                instance=request.path,
            )
        outcome = Outcome(kind="redeliver", key=record.key, at=clock())
        await send(
            topics.PUBLISH_OUTCOMES, item_key(record.order), outcome.model_dump_json().encode()
        )
        return web.json_response(
            {"status": "redelivery requested", "delivery_id": wanted}, status=202
        )

    web_app = base_app(registry, lambda: is_ready(app))
    web_app.router.add_get("/v1/dead-letters", list_dead)
    web_app.router.add_post("/v1/dead-letters/{delivery_id}/redeliver", redeliver)

    async def close_session(_: web.Application) -> None:
        # Webhook connections close with the HTTP server, on the way out.
        if session is not None:
            await session.close()

    web_app.on_cleanup.append(close_session)
    web_service = WebService(web_app, settings.host, settings.publish_port)
    return Publish(app=app, services=[web_service], web_app=web_app)
