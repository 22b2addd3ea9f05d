"""Composition root of the gate.

In: ``cms.accepted`` (AcceptedEvent), ``publish.receipts`` (DeliveryReceipt) and
``gate.commands`` (Tick, ManualRelease), all keyed ``{tenant}:{item_id}`` and
co-partitioned, consumed by one agent so that one item's inputs are decided in
order. Table: ``gate-items`` (ItemState per item). Out: ``gate.releases``
(ReleaseOrder) and ``gate.decisions`` (Decision, the audit trail).
HTTP: ``GET /v1/held`` and ``POST /v1/held/{tenant}/{item_id}/release``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import faust
import mode
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import TypeAdapter, ValidationError

from schemas.events import (
    AcceptedEvent,
    Contact,
    Decision,
    DeliveryReceipt,
    GateCommand,
    ManualRelease,
    Tick,
)
from services.gate import checks
from services.gate.machine import (
    AWAITING_INTERNAL_LEAD,
    AWAITING_INTERNAL_NOTICE,
    AWAITING_PUBLISH_AT,
    Accepted,
    GatePolicy,
    Input,
    ItemState,
    ManualOverride,
    Receipt,
    Wake,
    decide,
)
from services.gate.views import ItemViews
from services.runtime import topics
from services.runtime.config import Deployment, Tenant
from services.runtime.metrics import ConsumerLag
from services.runtime.settings import Settings
from services.runtime.streams import KeyLanes, bytes_table, is_ready, make_app
from services.runtime.web import WebService, base_app, bearer_matches, problem

__all__ = ["Gate", "build"]

log = structlog.get_logger("gatekeeper.gate")
Clock = Callable[[], datetime]
_COMMAND: TypeAdapter[Tick | ManualRelease] = TypeAdapter(GateCommand)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.decisions = Counter(
            "gatekeeper_gate_decisions_total",
            "Gate decisions by tenant, kind and rule.",
            ["tenant", "kind", "rule"],
            registry=registry,
        )
        self.held = Gauge(
            "gatekeeper_gate_held_items",
            "Items held now, by tenant and reason.",
            ["tenant", "reason"],
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
        self.manual_releases = Counter(
            "gatekeeper_gate_manual_releases_total",
            "Items released by an operator.",
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


def _policy(tenant: Tenant) -> GatePolicy:
    sender = tenant.sender
    return GatePolicy(
        organization=sender.organization,
        logo_url=sender.logo_url,
        website=sender.website,
        contact=Contact(
            name=sender.contact.name, email=sender.contact.email, phone=sender.contact.phone
        ),
        internal_lead=tenant.policy.internal_lead,
        escalate_after=tenant.policy.escalate_after,
        crisis_lane=tenant.policy.crisis_lane,
        internal_channels=tuple(c.name for c in tenant.channels if c.audience == "internal"),
    )


def _rules(tenant: Tenant) -> tuple[checks.Rule, ...]:
    return tuple((c.rule, c.action, c.words, c.limit) for c in tenant.policy.content_checks)


@dataclass
class Gate:
    app: faust.App
    services: Sequence[mode.ServiceT]
    web_app: web.Application


def held_view(state: ItemState) -> list[dict[str, Any]]:
    """What ``GET /v1/held`` shows of one item: one row per held audience."""
    return [
        {
            "tenant": state.tenant,
            "item_id": state.item_id,
            "version": held.event.version,
            "audience": audience,
            "channels": list(held.event.channels),
            "reasons": list(held.reasons),
            "held_since": held.held_since.isoformat(),
            "publish_at": held.event.publish_at.isoformat(),
            "escalated": held.escalated,
            "event_id": held.event_id,
            "title": held.event.title,
            "warnings": list(held.warnings),
        }
        for audience, held in sorted(state.held.items())
    ]


def build(
    settings: Settings,
    deployment: Deployment,
    registry: CollectorRegistry,
    clock: Clock = _utcnow,
) -> Gate:
    app = make_app("gate", settings)
    metrics = _Metrics(registry)
    registry.register(ConsumerLag(app))
    policies = {name: _policy(t) for name, t in deployment.tenants.items()}
    for name, tenant in deployment.tenants.items():
        metrics.escalate_after.labels(name).set(tenant.policy.escalate_after.total_seconds())
        metrics.escalations.labels(name)
        metrics.manual_releases.labels(name)
        metrics.latency.labels(name)
        for audience in ("internal", "external"):
            metrics.releases.labels(name, audience)
    rules = {name: _rules(t) for name, t in deployment.tenants.items()}
    operator_token = settings.operator_token.get_secret_value() if settings.operator_token else None

    inputs = app.topic(
        topics.ACCEPTED, topics.RECEIPTS, topics.GATE_COMMANDS, key_type=bytes, value_type=bytes
    )
    items = bytes_table(app, "gate-items", settings.partitions, settings.gate_store)
    # In-memory views of the table, kept where state is written and built once
    # from the recovered table after start (see ``scan``).
    views = ItemViews()
    scanned = False

    def load(key: bytes) -> ItemState | None:
        raw = items.get(key)
        return ItemState.model_validate_json(raw) if raw is not None else None

    def to_input(topic: str, value: bytes) -> Input:
        if topic == topics.ACCEPTED:
            accepted = AcceptedEvent.model_validate_json(value)
            return Accepted(
                accepted.event_id,
                accepted.event,
                checks.findings(accepted.event, rules.get(accepted.tenant, ())),
            )
        if topic == topics.RECEIPTS:
            return Receipt(DeliveryReceipt.model_validate_json(value))
        command = _COMMAND.validate_json(value)
        if isinstance(command, ManualRelease):
            return ManualOverride(command.request_id, command.reason)
        return Wake()

    async def send(topic: str, key: bytes, value: bytes) -> None:
        await app.producer.send_and_wait(topic, key, value, None, None, None)

    def record(decision: Decision) -> None:
        metrics.decisions.labels(decision.tenant, decision.kind, decision.rule).inc()
        if decision.kind == "escalated":
            metrics.escalations.labels(decision.tenant).inc()
        elif decision.kind == "overridden":
            metrics.manual_releases.labels(decision.tenant).inc()
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
        )

    async def handle(topic: str, key: bytes, value: bytes) -> None:
        tenant, _, item_id = key.decode().partition(":")
        policy = policies.get(tenant)
        try:
            inp = to_input(topic, value)
        except ValidationError as exc:
            metrics.undecodable.labels(topic).inc()
            log.error(
                "input.undecodable",
                topic=topic,
                tenant=tenant,
                item_id=item_id,
                errors=exc.error_count(),
            )
            return
        if policy is None:
            log.error("input.unknown_tenant", topic=topic, tenant=tenant, item_id=item_id)
            return
        state = load(key) or ItemState(tenant=tenant, item_id=item_id)
        now = clock()
        new_state, effects = decide(state, inp, now, policy)
        # Effects before state: a crash between them replays the input, and a
        # repeated release is caught downstream, while a lost one could not be.
        # The sends are pipelined and awaited together: one round trip per input.
        sent = [
            await app.producer.send(
                topics.RELEASES, key, o.model_dump_json().encode(), None, None, None
            )
            for o in effects.releases
        ] + [
            await app.producer.send(
                topics.DECISIONS, key, d.model_dump_json().encode(), None, None, None
            )
            for d in effects.decisions
        ]
        if sent:
            await asyncio.gather(*sent)
        for order in effects.releases:
            metrics.releases.labels(tenant, order.audience).inc()
            if (
                order.audience == "external"
                and order.action == "publish"
                and new_state.internal_delivered_at is not None
            ):
                lag = (now - new_state.internal_delivered_at).total_seconds()
                metrics.latency.labels(tenant).observe(max(lag, 0.0))
        for decision in effects.decisions:
            record(decision)
        # Written even when unchanged: an input replayed after a crash finds the
        # state it made already in a local store, decides nothing new, and this
        # write is what puts that state on the changelog, if the crash kept it off.
        items[key] = new_state.model_dump_json().encode()
        index(key, new_state)

    def index(key: bytes, state: ItemState) -> None:
        holds = tuple((h.reasons, h.held_since) for h in state.held.values())
        views.update(key, state.tenant, state.wake_at, holds)

    def scan() -> None:
        """Build the views from the recovered table, once the service is ready."""
        nonlocal scanned
        if not scanned and is_ready(app):
            for key, raw in list(items.items()):
                index(key, ItemState.model_validate_json(raw))
            scanned = True

    async def on_event(event: Any) -> None:
        msg = event.message
        if msg.key is None or msg.value is None:
            log.error("input.unkeyed", topic=msg.topic, offset=msg.offset)
            return
        await handle(msg.topic, msg.key, msg.value)

    # One item's inputs are decided in order; different items side by side.
    lanes = KeyLanes(app, on_event)

    @app.agent(inputs)
    async def gate(stream: Any) -> None:
        async for event in stream.noack().events():
            await lanes.feed(event)

    @app.timer(interval=settings.tick_seconds)  # type: ignore[untyped-decorator]
    async def wake_due() -> None:
        scan()
        if not scanned or not is_ready(app):
            return
        now = clock()
        for key, _ in views.due(now):
            tenant, _, item_id = key.decode().partition(":")
            tick = Tick(tenant=tenant, item_id=item_id, at=now)
            await send(topics.GATE_COMMANDS, key, tick.model_dump_json().encode())
        refresh_gauges(now)

    def held_states() -> list[ItemState]:
        scan()
        if scanned:
            states = (load(key) for key in views.held())
        else:  # still recovering: what the table has so far
            states = (ItemState.model_validate_json(raw) for raw in list(items.values()))
        return [s for s in states if s is not None and s.is_held()]

    def refresh_gauges(now: datetime) -> None:
        counts: dict[tuple[str, str], int] = {
            (tenant, reason): 0
            for tenant in deployment.tenants
            for reason in (AWAITING_INTERNAL_NOTICE, AWAITING_INTERNAL_LEAD, AWAITING_PUBLISH_AT)
        }
        counts.update(views.counts())
        metrics.held.clear()
        for (tenant, reason), n in counts.items():
            metrics.held.labels(tenant, reason).set(n)
        for tenant in deployment.tenants:
            since = views.oldest(tenant)
            metrics.oldest.labels(tenant).set((now - since).total_seconds() if since else 0.0)

    # ---- operator API -------------------------------------------------------------

    async def list_held(request: web.Request) -> web.Response:
        tenant = request.query.get("tenant")
        if tenant is not None and tenant not in deployment.tenants:
            return problem(
                404,
                "Unknown tenant",
                f"No tenant {tenant!r}.",
                slug="unknown-tenant",
                instance=request.path_qs,
            )
        rows = [
            row
            for state in held_states()
            if tenant is None or state.tenant == tenant
            for row in held_view(state)
        ]
        rows.sort(key=lambda r: (r["held_since"], r["tenant"], r["item_id"]))
        return web.json_response({"held": rows, "count": len(rows)})

    async def release(request: web.Request) -> web.Response:
        path = request.path
        if not bearer_matches(request, operator_token):
            return problem(
                401,
                "Unauthorized",
                "A valid operator bearer token is required.",
                slug="unauthorized",
                instance=path,
            )
        tenant = request.match_info["tenant"]
        item_id = request.match_info["item_id"]
        try:
            payload = await request.json()
        except ValueError:
            payload = None
        reason = payload.get("reason") if isinstance(payload, dict) else None
        if not isinstance(reason, str) or not reason.strip():
            return problem(
                422,
                "Reason required",
                "Give the release a reason.",
                slug="schema-violation",
                instance=path,
                extra={
                    "errors": [
                        {
                            "field": "reason",
                            "pointer": "#/reason",
                            "detail": "a non-empty string is required",
                        }
                    ]
                },
            )
        key = f"{tenant}:{item_id}".encode()
        state = load(key)
        if tenant not in deployment.tenants or state is None or not state.is_held():
            return problem(
                404,
                "Not held",
                f"Nothing is held for {tenant}/{item_id}.",
                slug="not-held",
                instance=path,
            )
        request_id = str(uuid.uuid4())
        command = ManualRelease(
            tenant=tenant, item_id=item_id, reason=reason.strip(), at=clock(), request_id=request_id
        )
        await send(topics.GATE_COMMANDS, key, command.model_dump_json().encode())
        log.info(
            "operator.release_requested", tenant=tenant, item_id=item_id, request_id=request_id
        )
        for _ in range(100):
            current = load(key)
            if current is not None and not current.is_held():
                return web.json_response(
                    {
                        "status": "released",
                        "request_id": request_id,
                        "tenant": tenant,
                        "item_id": item_id,
                    }
                )
            await asyncio.sleep(0.05)
        return web.json_response(
            {"status": "requested", "request_id": request_id, "tenant": tenant, "item_id": item_id},
            status=202,
        )

    web_app = base_app(registry, lambda: is_ready(app))
    web_app.router.add_get("/v1/held", list_held)
    web_app.router.add_post("/v1/held/{tenant}/{item_id}/release", release)
    web_service = WebService(web_app, settings.host, settings.gate_port)
    return Gate(app=app, services=[web_service], web_app=web_app)
