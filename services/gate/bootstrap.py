"""Composition root of the gate.

In: ``cms.accepted`` (AcceptedEvent), ``publish.receipts`` (DeliveryReceipt) and
``gate.commands`` (Tick, ManualRelease, ManualReject, Recorded), all keyed
``{tenant}:{item_id}`` and co-partitioned, consumed by one agent in batches so
that one item's inputs are decided in order. Tables: ``gate-items`` (ItemState
per item) and ``gate-history`` (each item's decisions, for the console). Out,
on a producer that batches: ``gate.releases`` (ReleaseOrder),
``gate.decisions`` (Decision, the audit trail), ``gate.notifications`` and
the ticks on ``gate.commands``; ``gate.sessions`` (console logouts), which
every gate process also reads whole. HTTP: the operator API and the console.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import faust
import holidays
import mode
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from schemas.events import Decision
from services.gate import followup_api, operator_api
from services.gate.assembly import gate_handler
from services.gate.board import HeldBoard
from services.gate.console import Console
from services.gate.followup import FollowUp
from services.gate.followup_api import FollowUpApi
from services.gate.handler import GateHandler
from services.gate.history import History
from services.gate.index import HoldIndex
from services.gate.monthly import MonthlyReports
from services.gate.oidc import OidcClient, OidcConfig
from services.gate.operator_api import OperatorApi
from services.gate.page_worker import PageWorker
from services.gate.sessions import KafkaRevocations, Sessions, fernet_key
from services.gate.state import ItemState
from services.gate.telemetry import FollowUpCollector
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

__all__ = ["GateService", "build"]


@dataclass
class GateService:
    app: faust.App
    services: Sequence[mode.ServiceT]
    web_app: web.Application
    handler: GateHandler


def build(
    settings: Settings,
    deployment: Deployment,
    registry: CollectorRegistry,
    clock: Clock = utcnow,
    *,
    operators: OperatorDirectory | None = None,
    outbox: Outbox | None = None,
    items: ModelTable[ItemState] | None = None,
    history: ModelTable[History] | None = None,
) -> GateService:
    app = make_app("gate", settings)
    registry.register(ConsumerLag(app))
    inputs = app.topic(
        topics.ACCEPTED, topics.RECEIPTS, topics.GATE_COMMANDS, key_type=bytes, value_type=bytes
    )
    table = bytes_table(app, "gate-items", settings.partitions, settings.gate_store)
    history_table = bytes_table(app, "gate-history", settings.partitions, settings.gate_store)
    producer = ProducerOutbox(settings, settings.kafka_write_timeout)
    handler_console_url = (
        settings.console_url or f"http://127.0.0.1:{settings.gate_port}/console"
    ).rstrip("/")
    # Every item held, whichever gate process owns it: gate.held, read whole by each.
    board_file = settings.data_dir / "gate" / "held-board.sqlite3"
    board = HeldBoard(board_file)
    # The list's pages (GET /v1/held, the console) are read by a process of their
    # own, off the deciding loop.
    pages = PageWorker(board_file)
    board.read_pages_with(pages.read)
    held_list = TopicMirror(settings, topics.HELD, board.apply, board.apply_many)
    handler = gate_handler(
        deployment,
        # Outputs and the tables' changelogs go out on one producer that batches.
        items=items or OutboxModelTable(table, ItemState, producer),
        history=history or OutboxModelTable(history_table, History, producer),
        outbox=outbox or producer,
        registry=registry,
        clock=clock,
        ready=lambda: is_ready(app),
        console_url=handler_console_url,
        index=HoldIndex(settings.data_dir / "gate" / "hold-index.sqlite3"),
        board=board,
    )

    async def decide(events: Sequence[Any], enter: Callable[[int], None]) -> Awaitable[None]:
        return await handler.decide_batch([inbound(e) for e in events], enter)

    # One item's inputs are decided in order; partitions side by side, in batches.
    batches = PartitionBatches(app, decide)

    @app.agent(inputs)
    async def gate(stream: Any) -> None:
        async for event in stream.noack().events():
            await batches.feed(event)

    operators = operators or operators_from(settings)
    link = KafkaLink()
    register_link_metric(registry, link)
    # Logouts every gate process knows: gate.sessions, read whole by each.
    revocations = KafkaRevocations(producer, clock)
    mirror = TopicMirror(settings, topics.SESSIONS, lambda k, v, _: revocations.apply(k, v))
    web_app = base_app(
        registry,
        lambda: handler.ready() and mirror.caught_up and held_list.caught_up,
        guard=LoginGuard(operators),
        unavailable=link.reason,
    )
    api = OperatorApi(handler, operators, deployment.tenants, lambda: held_list.current_at)
    api.add_routes(web_app)
    sessions = Sessions(fernet_key(session_key(settings)), revocations)
    # Follow-up: the audit trail read whole by every gate process, folded per month.
    followup = FollowUp()
    trail = TopicMirror(settings, topics.DECISIONS, lambda _, value, __: _follow(followup, value))
    registry.register(FollowUpCollector(followup, sorted(deployment.tenants), clock))
    reports = MonthlyReports(
        tenants=[n for n, t in deployment.tenants.items() if t.notifications is not None],
        followup=followup,
        ready=lambda: trail.caught_up,
        outbox=producer,
        clock=clock,
        console_url=handler_console_url,
        holidays=holidays.country_holidays("SE"),
    )

    @app.timer(interval=settings.tick_seconds)  # type: ignore[untyped-decorator]
    async def tick_due() -> None:
        await handler.tick_due()
        try:
            await reports.tick()
        except Exception as exc:  # asked again at the next tick
            structlog.get_logger("gatekeeper.gate").warning(
                "followup.report_not_asked", problem=type(exc).__name__
            )

    console = Console(
        handler,
        operators,
        deployment.tenants,
        clock,
        sessions,
        oidc_client(settings),
        followup=followup,
        followup_ready=lambda: trail.caught_up,
    )
    console.add_routes(web_app)
    FollowUpApi(followup, lambda: trail.caught_up, operators, deployment.tenants).add_routes(
        web_app
    )
    add_openapi(
        web_app,
        document(
            "gatekeeper gate",
            package_version(),
            "The operator API: what is held and why, released or rejected by a person.",
            (*operator_api.OPERATIONS, *followup_api.OPERATIONS),
            tenants=sorted(deployment.tenants),
        ),
    )
    web_service = WebService(web_app, settings.host, settings.gate_port)
    probe = KafkaProbe(settings, link)
    register_mirrors(registry, [mirror, trail, held_list])
    services = [web_service, producer, probe, mirror, trail, held_list, pages]
    return GateService(app=app, services=services, web_app=web_app, handler=handler)


def _follow(followup: FollowUp, value: bytes | None) -> None:
    """One record of the audit trail into the follow-up; one that is not a decision
    (none should be) is skipped."""
    try:
        followup.add(Decision.model_validate_json(value or b""))
    except ValidationError:
        return


def session_key(settings: Settings) -> str:
    """``GATEKEEPER_SESSION_KEY``, else a key made once and kept in the data directory
    (enough for one gate; replicas need the same key in the variable)."""
    if settings.session_key is not None:
        return settings.session_key.get_secret_value()
    path = settings.data_dir / "gate" / "session.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48), encoding="utf-8")
    return path.read_text(encoding="utf-8").strip()


def oidc_client(settings: Settings) -> OidcClient | None:
    """The provider's client, when single sign-on is configured (Settings checks that
    all of it is)."""
    secret = settings.oidc_client_secret
    if not (settings.oidc_issuer and settings.oidc_client_id and secret and settings.console_url):
        return None
    console = settings.console_url.rstrip("/")
    return OidcClient(
        OidcConfig(
            issuer=settings.oidc_issuer,
            client_id=settings.oidc_client_id,
            client_secret=secret.get_secret_value(),
            redirect_uri=f"{console}/oidc/callback",
            post_logout_uri=f"{console}/login",
            provider_name=settings.oidc_provider_name,
            roles_claim=settings.oidc_roles_claim,
        )
    )
