"""Publish's handler with in-memory ports and fake transports."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from schemas.events import (
    AcceptedEvent,
    ContentEvent,
    ManualRelease,
    Notification,
    ReleaseOrder,
)
from services.publish.assembly import publish_handler
from services.publish.channels import DeliveryFailed, Transports
from services.publish.delivery import Delivery
from services.publish.operator_api import OperatorApi
from services.publish.retry import RetryPolicy
from services.runtime import topics
from services.runtime.config import Deployment, Notifications, StatusWebhook
from services.runtime.memory import DictModelTable, MemoryOutbox
from services.runtime.operators import Identity, OperatorDirectory
from services.runtime.ports import InboundRecord, OutboundRecord
from tests.conftest import LERUM_SENDER, content_event
from tests.harness import memory_gate
from tests.service.conftest import FakeClock, sha256


class FakeTransport:
    """A receiver: answers with the given results in turn, or waits forever on None."""

    retries = RetryPolicy((0.0, 0.001))

    def __init__(self, *results: Exception | bytes | None) -> None:
        self.results = list(results)
        self.calls: list[str] = []
        self.payloads: list[bytes] = []

    async def deliver(self, record: Delivery, payload: bytes) -> bytes:
        self.calls.append(record.delivery_id)
        self.payloads.append(payload)
        result = self.results.pop(0) if self.results else payload
        if result is None:
            await asyncio.Event().wait()
        if isinstance(result, Exception):
            raise result
        return payload

    async def close(self) -> None:
        """Holds no connection."""


class Publish:
    """A publish whose outcomes come straight back to it, as through publish.outcomes."""

    def __init__(
        self,
        deployment: Deployment,
        clock: FakeClock,
        transport: FakeTransport | None = None,
        records: DictModelTable[Delivery] | None = None,
        mail: FakeTransport | None = None,
        status: FakeTransport | None = None,
        transports: Transports | None = None,
    ) -> None:
        self.outbox = MemoryOutbox(on_send=self._loop_back)
        self.records = records or DictModelTable(Delivery)
        self.registry = CollectorRegistry()
        self.handler = publish_handler(
            deployment,
            records=self.records,
            outbox=self.outbox,
            transports=transports
            or Transports(
                {
                    ("lerum", "web"): transport or FakeTransport(),
                    ("lerum", "notify-held"): mail or FakeTransport(),
                    ("lerum", "cms-status"): status or FakeTransport(),
                }
            ),
            registry=self.registry,
            clock=clock,
            ready=lambda: True,
        )
        self.attempts = self.handler.attempts

    async def _loop_back(self, records: Sequence[OutboundRecord]) -> None:
        for record in records:
            if record.topic == topics.PUBLISH_OUTCOMES:
                await self.handler.handle(
                    InboundRecord(record.topic, 0, 0, record.key, record.value)
                )

    def values(self, topic: str) -> list[dict[str, object]]:
        return [json.loads(r.value or b"") for r in self.outbox.on(topic)]


def _order(clock: FakeClock, channels: list[str], audience: str = "external") -> ReleaseOrder:
    return ReleaseOrder(
        decision_id="d-1",
        event_id="e-1",
        tenant="lerum",
        item_id="news-1",
        version=1,
        action="publish",
        audience=audience,
        channels=channels,
        title="Ny förskola",
        body="Förskolan öppnar i augusti.",
        recipients="Invånare i Lerum",
        sender=LERUM_SENDER,
        released_at=clock(),
    )


async def test_a_repeated_order_is_delivered_once_and_receipted_each_time(
    deployment: Deployment, clock: FakeClock
) -> None:
    publish = Publish(deployment, clock, FakeTransport())
    order = _order(clock, ["intranet"], audience="internal")
    await publish.handler.on_order(order)
    clock.advance(minutes=1)
    await publish.handler.on_order(order)

    [notice] = publish.outbox.on("intranet.notices")
    assert dict(notice.headers)["gatekeeper-delivery-id"].startswith(b"gk_")
    receipts = publish.values(topics.RECEIPTS)
    assert len(receipts) == 2, "a lost receipt is made good by the repeated order"
    assert receipts[0] == receipts[1], "both say the same delivery, at the same time"
    assert len(publish.outbox.on(topics.PUBLISH_ARCHIVE)) == 1
    duplicates = publish.registry.get_sample_value(
        "gatekeeper_publish_deliveries_total",
        {"tenant": "lerum", "channel": "intranet", "outcome": "duplicate"},
    )
    assert duplicates == 1.0


async def test_a_pending_delivery_is_taken_up_after_a_restart_and_delivered_once(
    webhook_deployment: Callable[[str], Deployment], clock: FakeClock
) -> None:
    deployment = webhook_deployment("https://cms.example/hook")
    stuck = FakeTransport(None)  # the receiver never answers before the crash
    before = Publish(deployment, clock, stuck)
    await before.handler.on_order(_order(clock, ["web"]))
    await asyncio.sleep(0)
    assert stuck.calls, "the attempt started"
    [pending] = list(before.records.values())
    assert pending.status == "pending"
    for task in asyncio.all_tasks():  # the crash: the attempt dies with the process
        if task is not asyncio.current_task():
            task.cancel()
    await asyncio.sleep(0)

    receiver = FakeTransport()
    after = Publish(deployment, clock, receiver, records=before.records)
    await after.handler.resume_pending()
    await after.attempts.wait()
    await after.handler.resume_pending()  # a second tick starts nothing more
    await after.attempts.wait()

    assert receiver.calls == [pending.delivery_id], "same delivery id, one attempt"
    [record] = list(after.records.values())
    assert record.status == "delivered"
    [receipt] = after.values(topics.RECEIPTS)
    assert receipt["channel"] == "web"


async def test_a_webhook_s_receipt_leaves_with_its_attempt_before_the_outcome_is_read_back(
    webhook_deployment: Callable[[str], Deployment], clock: FakeClock
) -> None:
    publish = Publish(webhook_deployment("https://cms.example/hook"), clock, FakeTransport())
    await publish.handler.on_order(_order(clock, ["web"]))
    await publish.attempts.wait()
    written = [r.topic for r in publish.outbox.sent]
    assert written.count(topics.RECEIPTS) == 1, "one receipt, not one more when recorded"
    # the receipt goes out with the outcome; the archive once publish has read it back
    assert written.index(topics.RECEIPTS) < written.index(topics.PUBLISH_OUTCOMES)
    assert written.index(topics.PUBLISH_OUTCOMES) < written.index(topics.PUBLISH_ARCHIVE)
    [record] = list(publish.records.values())
    assert record.status == "delivered"


async def test_a_failing_receiver_ends_dead_and_a_redelivery_starts_afresh(
    webhook_deployment: Callable[[str], Deployment], clock: FakeClock
) -> None:
    deployment = webhook_deployment("https://cms.example/hook")
    receiver = FakeTransport(DeliveryFailed("HTTP 503"), DeliveryFailed("HTTP 503"))
    publish = Publish(deployment, clock, receiver)
    await publish.handler.on_order(_order(clock, ["web"]))
    await publish.attempts.wait()

    [letter] = publish.values(topics.PUBLISH_DLQ)
    assert letter["reason"] == "HTTP 503 (attempt 2 of 2)"
    assert letter["attempts"] == 2
    [dead] = publish.handler.dead_letters()
    assert publish.handler.dead_letter(dead.delivery_id) == dead
    await publish.handler.request_redelivery(dead)
    await publish.attempts.wait()

    [record] = list(publish.records.values())
    assert record.status == "delivered"
    assert record.error is None
    assert receiver.calls == [dead.delivery_id] * 3
    assert len(publish.values(topics.RECEIPTS)) == 1
    assert publish.handler.dead_letter(dead.delivery_id) is None, "no longer dead"


async def test_a_notification_is_mailed_once_and_neither_receipted_nor_archived(
    webhook_deployment: Callable[[str], Deployment], clock: FakeClock
) -> None:
    deployment = webhook_deployment("https://cms.example/hook")
    lerum = deployment.tenants["lerum"].model_copy(
        update={
            "notifications": Notifications.model_validate(
                {
                    "desk": ["kommunikation@lerum.se"],
                    "smtp": {"host": "127.0.0.1", "from": "gatekeeper@lerum.se"},
                }
            )
        }
    )
    deployment = deployment.model_copy(update={"tenants": {**deployment.tenants, "lerum": lerum}})
    mail = FakeTransport()
    publish = Publish(deployment, clock, FakeTransport(), mail=mail)
    notification = Notification(
        notification_id="n-1",
        kind="held",
        tenant="lerum",
        item_id="news-1",
        version=1,
        audience="external",
        title="Ny förskola",
        unit="Sektor Lärande",
        reasons=["Väntar på intern information"],
        held_since=clock(),
        publish_at=clock(),
        contact_email="sara@lerum.se",
        console_url="https://publicering.lerum.se/console/items/lerum/news-1",
        decided_at=clock(),
    )
    await publish.handler.on_notification(notification)
    await publish.attempts.wait()
    await publish.handler.on_notification(notification)  # replayed after a crash
    await publish.attempts.wait()

    assert len(mail.calls) == 1
    [record] = list(publish.records.values())
    assert (record.kind, record.status, record.channel) == (
        "notification",
        "delivered",
        "notify-held",
    )
    assert record.order.recipients == "sara@lerum.se, kommunikation@lerum.se"
    assert "https://publicering.lerum.se/console/items/lerum/news-1" in record.order.body
    assert publish.values(topics.RECEIPTS) == [], "a notification is no internal notice"
    assert publish.values(topics.PUBLISH_ARCHIVE) == []


async def test_the_cms_is_told_held_then_released_once_each_signed_as_its_own_channel(
    deployment: Deployment, clock: FakeClock
) -> None:
    hook = StatusWebhook.model_validate(
        {"url": "https://cms.lerum.se/status", "secret_env": "GATEKEEPER_STATUS_LERUM"}
    )
    lerum = deployment.tenants["lerum"].model_copy(update={"status_webhook": hook})
    deployment = deployment.model_copy(update={"tenants": {**deployment.tenants, "lerum": lerum}})
    gate_out = MemoryOutbox()
    gate = memory_gate(deployment, outbox=gate_out, clock=clock)
    for tenant in ("lerum", "ale"):
        event = ContentEvent.model_validate(content_event(tenant=tenant, item_id="news-1"))
        accepted = AcceptedEvent(
            event_id=f"e-{tenant}",
            tenant=tenant,
            item_id="news-1",
            source="http",
            received_at=clock(),
            event=event,
        )
        key = f"{tenant}:news-1".encode()
        await gate.handle(
            InboundRecord(topics.ACCEPTED, 0, 1, key, accepted.model_dump_json().encode())
        )
    clock.advance(minutes=5)
    release = ManualRelease(
        tenant="lerum",
        item_id="news-1",
        reason="Personalen informerades muntligt",
        at=clock(),
        request_id="r-1",
        operator="Anna Andersson",
    )
    await gate.handle(
        InboundRecord(
            topics.GATE_COMMANDS, 0, 2, b"lerum:news-1", release.model_dump_json().encode()
        )
    )
    told = gate_out.on(topics.STATUS)
    assert {r.key for r in told} == {b"lerum:news-1"}, "Ale has no status webhook"

    status = FakeTransport()
    publish = Publish(deployment, clock, FakeTransport(), status=status)
    for _ in range(2):  # the second time as replayed after a crash
        for record in told:
            await publish.handler.handle(
                InboundRecord(topics.STATUS, 0, 0, record.key, record.value)
            )
            await publish.attempts.wait()

    sent = [json.loads(p) for p in status.payloads]
    assert [(s["status"], s["item_id"]) for s in sent] == [
        ("held", "news-1"),
        ("released", "news-1"),
    ]
    assert sent[0]["reasons"][0]["text"] == "Väntar på intern information"
    assert sent[0]["console_url"].endswith("/console/items/lerum/news-1")
    assert sent[1]["operator"] == "Anna Andersson"
    assert sent[1]["channels"] == ["web"]
    assert len(set(status.calls)) == 2, "each status has its own webhook-id"
    assert {(r.kind, r.channel, r.status) for r in publish.records.values()} == {
        ("status", "cms-status", "delivered")
    }
    assert publish.values(topics.RECEIPTS) == [], "a status is no internal notice"
    assert publish.values(topics.PUBLISH_ARCHIVE) == []


async def test_dead_letters_are_listed_only_to_an_operator_and_only_of_their_tenants(
    webhook_deployment: Callable[[str], Deployment], clock: FakeClock
) -> None:
    receiver = FakeTransport(DeliveryFailed("HTTP 503"), DeliveryFailed("HTTP 503"))
    publish = Publish(webhook_deployment("https://cms.example/hook"), clock, receiver)
    await publish.handler.on_order(_order(clock, ["web"]))
    await publish.attempts.wait()
    [dead] = publish.handler.dead_letters()
    operators = OperatorDirectory(
        [
            (Identity("Anna", "anna@lerum.se", frozenset({"lerum"}), "viewer"), sha256("anna")),
            (Identity("Alva", "alva@ale.se", frozenset({"ale"}), "publisher"), sha256("alva")),
        ]
    )
    app = web.Application()
    OperatorApi(publish.handler, operators).add_routes(app)
    async with TestClient(TestServer(app)) as client:
        anonymous = await client.get("/v1/dead-letters")
        assert anonymous.status == 401
        assert anonymous.content_type == "application/problem+json"

        anna = {"Authorization": "Bearer anna"}
        listed = await (await client.get("/v1/dead-letters", headers=anna)).json()
        assert [r["delivery_id"] for r in listed["dead_letters"]] == [dead.delivery_id]

        alva = {"Authorization": "Bearer alva"}
        others = await (await client.get("/v1/dead-letters", headers=alva)).json()
        assert others == {"dead_letters": [], "count": 0}
        asked = await client.get("/v1/dead-letters?tenant=lerum", headers=alva)
        assert asked.status == 404
