"""Composition root of ingest.

In: HTTP ``POST /v1/tenants/{tenant}/events`` and the topic ``cms.events``.
Out: ``cms.accepted`` (AcceptedEvent) and ``cms.events.dlq`` (refused records,
original bytes, reason in headers). Table: ``ingest-seen``, the idempotency
keys, so a redelivered ``webhook-id`` stays a duplicate across restarts.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import faust
import mode
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter
from standardwebhooks import Webhook

from schemas.events import AcceptedEvent, ContentEvent
from services.ingest import signatures
from services.ingest.normalize import (
    Invalid,
    TenantChannels,
    acceptance,
    check_event,
    rejection,
    split_key,
)
from services.runtime import topics
from services.runtime.config import Deployment
from services.runtime.metrics import ConsumerLag
from services.runtime.settings import Settings
from services.runtime.streams import bytes_table, is_ready, make_app
from services.runtime.web import WebService, base_app, problem

__all__ = ["Ingest", "build"]

log = structlog.get_logger("gatekeeper.ingest")
Clock = Callable[[], datetime]
_EVENT_NS = uuid.UUID("6f1d7c1e-3c52-4f0e-9a55-2b0a3c4e5d61")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
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


class _RecentIds:
    """The idempotency keys this process answered lately, before the agent records them."""

    def __init__(self, size: int = 100_000) -> None:
        self._ids: OrderedDict[str, str] = OrderedDict()
        self._size = size

    def get(self, key: str) -> str | None:
        return self._ids.get(key)

    def put(self, key: str, event_id: str) -> None:
        self._ids[key] = event_id
        self._ids.move_to_end(key)
        while len(self._ids) > self._size:
            self._ids.popitem(last=False)


@dataclass
class Ingest:
    app: faust.App
    services: Sequence[mode.ServiceT]
    web_app: web.Application


def _header(headers: Any, name: str) -> str | None:
    for key, value in headers or ():
        if key.lower() == name and value is not None:
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return None


def _body_tenant(value: bytes | None) -> str:
    try:
        raw = json.loads(value or b"")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "unknown"
    tenant = raw.get("tenant") if isinstance(raw, dict) else None
    return tenant if isinstance(tenant, str) and tenant else "unknown"


def build(
    settings: Settings,
    deployment: Deployment,
    registry: CollectorRegistry,
    clock: Clock = _utcnow,
) -> Ingest:
    app = make_app("ingest", settings)
    metrics = _Metrics(registry)
    registry.register(ConsumerLag(app))
    channels: TenantChannels = {
        name: {c.name: c.audience for c in tenant.channels}
        for name, tenant in deployment.tenants.items()
    }
    verifiers = {name: Webhook(deployment.secret(name)) for name in deployment.tenants}
    limit = deployment.ingest.max_body_bytes

    cms_events = app.topic(topics.CMS_EVENTS, key_type=bytes, value_type=bytes)
    seen = bytes_table(app, "ingest-seen", settings.partitions)
    recent = _RecentIds()
    inflight: dict[str, asyncio.Future[str | None]] = {}

    async def write(*records: tuple[str, str, bytes, list[tuple[str, bytes]]]) -> None:
        """Write (topic, key, value, headers) *records* in this order, within the write
        timeout; they are pipelined, so several cost one round trip."""

        async def send_all() -> None:
            sent = [
                await app.producer.send(topic, key.encode(), value, None, None, headers)
                for topic, key, value, headers in records
            ]
            await asyncio.gather(*sent)

        await asyncio.wait_for(send_all(), timeout=settings.kafka_write_timeout)

    async def audit_rejection(
        body: bytes, invalid: Invalid, tenant: str, item_id: str | None, event_id: str
    ) -> None:
        decision = rejection(
            body, invalid, tenant=tenant, item_id=item_id, event_id=event_id, now=clock()
        )
        await write(
            (
                topics.DECISIONS,
                f"{decision.tenant}:{decision.item_id}",
                decision.model_dump_json().encode(),
                [],
            )
        )
        log.info(
            "decision.rejected",
            tenant=decision.tenant,
            item_id=decision.item_id,
            event_id=event_id,
            decision_id=decision.decision_id,
            rule=decision.rule,
        )

    # ---- the Kafka path: every event, from HTTP or straight from a producer --------

    async def handle_record(msg: Any) -> None:
        headers = list(msg.headers or ())
        source = "http" if _header(headers, "gatekeeper-source") == "http" else "kafka"
        key_parts = split_key(msg.key)
        result = check_event(
            msg.value or b"",
            channels,
            tenant=key_parts[0] if key_parts else None,
            item_id=key_parts[1] if key_parts else None,
        )
        if isinstance(result, Invalid):
            await dead_letter(msg, headers, result, source)
            return
        event: ContentEvent = result
        dedupe_id = _header(headers, "webhook-id") or f"{msg.topic}-{msg.partition}-{msg.offset}"
        seen_key = f"{event.tenant}:{dedupe_id}"
        event_id = _header(headers, "gatekeeper-event-id") or str(uuid.uuid5(_EVENT_NS, seen_key))
        bound = log.bind(tenant=event.tenant, item_id=event.item_id, event_id=event_id)
        if seen.get(seen_key.encode()) is not None:
            metrics.events.labels(source, "duplicate").inc()
            bound.info("event.duplicate", webhook_id=dedupe_id)
            return
        accepted = AcceptedEvent(
            event_id=event_id,
            tenant=event.tenant,
            item_id=event.item_id,
            source=source,
            received_at=clock(),
            event=event,
        )
        decision = acceptance(accepted)
        key = f"{event.tenant}:{event.item_id}"
        # The audit record is sent first, so it lands no later than the event the
        # gate decides on; both are awaited together, one round trip for the two.
        await write(
            (topics.DECISIONS, key, decision.model_dump_json().encode(), []),
            (topics.ACCEPTED, key, accepted.model_dump_json().encode(), []),
        )
        seen[seen_key.encode()] = event_id.encode()
        metrics.events.labels(source, "accepted").inc()
        bound.info(
            "decision.accepted",
            decision_id=decision.decision_id,
            source=source,
            version=event.version,
            action=event.action,
        )

    async def dead_letter(
        msg: Any, headers: list[tuple[str, bytes]], invalid: Invalid, source: str
    ) -> None:
        reason = invalid.reason
        problems = json.dumps([e.as_dict() for e in invalid.errors], ensure_ascii=False)
        dlq_headers = [
            *headers,
            ("dlq-reason", reason.encode()),
            ("dlq-errors", problems.encode()),
            ("dlq-source-topic", str(msg.topic).encode()),
            ("dlq-source-partition", str(msg.partition).encode()),
            ("dlq-source-offset", str(msg.offset).encode()),
        ]
        await asyncio.wait_for(
            app.producer.send_and_wait(
                topics.CMS_EVENTS_DLQ, msg.key, msg.value, None, None, dlq_headers
            ),
            timeout=settings.kafka_write_timeout,
        )
        metrics.events.labels(source, "dead_lettered").inc()
        key_parts = split_key(msg.key)
        tenant = key_parts[0] if key_parts else _body_tenant(msg.value)
        dedupe_id = _header(headers, "webhook-id") or f"{msg.topic}-{msg.partition}-{msg.offset}"
        await audit_rejection(
            msg.value or b"", invalid, tenant, key_parts[1] if key_parts else None, dedupe_id
        )
        log.warning(
            "event.dead_lettered",
            reason=reason,
            fields=[e.field for e in invalid.errors],
            partition=msg.partition,
            offset=msg.offset,
        )

    @app.agent(cms_events)
    async def validate(stream: Any) -> None:
        async for event in stream.events():
            await handle_record(event.message)

    # ---- the HTTP path ------------------------------------------------------------

    def ready() -> bool:
        return is_ready(app)

    def answer(tenant: str, response: web.Response) -> web.Response:
        label = tenant if tenant in deployment.tenants else "unknown"
        metrics.requests.labels(label, str(response.status)).inc()
        return response

    async def read_limited(request: web.Request) -> bytes | None:
        if request.content_length is not None and request.content_length > limit:
            return None
        body = bytearray()
        async for chunk in request.content.iter_chunked(64 * 1024):
            body.extend(chunk)
            if len(body) > limit:
                return None
        return bytes(body)

    async def post_event(request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        path = request.path
        if tenant not in deployment.tenants:
            return answer(
                tenant,
                problem(
                    404,
                    "Unknown tenant",
                    f"No tenant {tenant!r}.",
                    slug="unknown-tenant",
                    instance=path,
                ),
            )
        body = await read_limited(request)
        if body is None:
            return answer(
                tenant,
                problem(
                    413,
                    "Body too large",
                    f"The body is over the limit of {limit} bytes.",
                    slug="body-too-large",
                    instance=path,
                    extra={"max_body_bytes": limit},
                ),
            )
        if request.content_type != "application/json":
            return answer(
                tenant,
                problem(
                    415,
                    "Unsupported media type",
                    f"Content-Type must be application/json, not {request.content_type!r}.",
                    slug="unsupported-media-type",
                    instance=path,
                ),
            )
        try:
            webhook_id = signatures.verify(verifiers[tenant], body, request.headers)
        except signatures.NotText:
            return answer(
                tenant,
                problem(
                    400,
                    "Body is not JSON",
                    "The body is not UTF-8 text.",
                    slug="not-json",
                    instance=path,
                ),
            )
        except signatures.SignatureRefused as exc:
            return answer(
                tenant,
                problem(
                    401,
                    "Signature refused",
                    f"Standard Webhooks verification failed: {exc}",
                    slug="bad-signature",
                    instance=path,
                ),
            )
        key = f"{tenant}:{webhook_id}"
        if not ready():
            return answer(
                tenant,
                problem(
                    503,
                    "Starting",
                    "The service is still starting; retry shortly.",
                    slug="unavailable",
                    instance=path,
                ),
            )
        earlier = recent.get(key) or _table_get(key)
        pending = inflight.get(key)
        if earlier is None and pending is not None:
            earlier = await asyncio.shield(pending)
            if earlier is None:
                return answer(tenant, _unavailable(path, "an earlier delivery of this id failed"))
        if earlier is not None:
            log.info("event.duplicate", tenant=tenant, event_id=earlier, webhook_id=webhook_id)
            return answer(
                tenant,
                web.json_response(
                    {"status": "duplicate", "event_id": earlier, "webhook_id": webhook_id},
                    status=200,
                ),
            )
        result = check_event(body, channels, tenant=tenant)
        if isinstance(result, Invalid):
            if result.status == 400:
                response = problem(
                    400, "Body is not JSON", result.reason, slug="not-json", instance=path
                )
            else:
                response = problem(
                    422,
                    "Schema violation",
                    f"{len(result.errors)} field(s) break ContentEvent v1.",
                    slug="schema-violation",
                    instance=path,
                    extra={"errors": [e.as_dict() for e in result.errors]},
                )
            log.info(
                "event.refused",
                tenant=tenant,
                status=result.status,
                fields=[e.field for e in result.errors],
            )
            if result.status == 422:
                try:
                    await audit_rejection(body, result, tenant, None, webhook_id)
                except Exception as exc:  # the answer stands; the log says what is missing
                    log.error(
                        "decision.audit_failed",
                        tenant=tenant,
                        webhook_id=webhook_id,
                        error=type(exc).__name__,
                    )
            return answer(tenant, response)
        event_id = str(uuid.uuid4())
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        inflight[key] = future
        try:
            await write(
                (
                    topics.CMS_EVENTS,
                    f"{tenant}:{result.item_id}",
                    body,
                    [
                        ("webhook-id", webhook_id.encode()),
                        ("gatekeeper-event-id", event_id.encode()),
                        ("gatekeeper-source", b"http"),
                    ],
                )
            )
        except Exception as exc:  # any failure to get Kafka's acknowledgement
            log.error(
                "event.write_failed",
                tenant=tenant,
                item_id=result.item_id,
                event_id=event_id,
                error=type(exc).__name__,
            )
            return answer(tenant, _unavailable(path, "Kafka did not acknowledge the write"))
        else:
            recent.put(key, event_id)
            future.set_result(event_id)
        finally:
            inflight.pop(key, None)
            if not future.done():  # failed or cancelled: a waiting twin must not hang
                future.set_result(None)
        log.info(
            "event.received",
            tenant=tenant,
            item_id=result.item_id,
            event_id=event_id,
            webhook_id=webhook_id,
        )
        return answer(
            tenant, web.json_response({"status": "accepted", "event_id": event_id}, status=202)
        )

    def _table_get(key: str) -> str | None:
        value = seen.get(key.encode())
        return value.decode() if isinstance(value, bytes) else None

    def _unavailable(path: str, why: str) -> web.Response:
        return problem(
            503,
            "Kafka unavailable",
            f"Nothing was accepted ({why}); retry later.",
            slug="unavailable",
            instance=path,
        )

    web_app = base_app(registry, ready, client_max_size=limit + 1)
    web_app.router.add_post("/v1/tenants/{tenant}/events", post_event)
    web_service = WebService(web_app, settings.host, settings.ingest_port)
    return Ingest(app=app, services=[web_service], web_app=web_app)
