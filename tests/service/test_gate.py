"""The gate's handler and operator API with in-memory ports."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from schemas.events import AcceptedEvent, ContentEvent
from services.gate.handler import GateHandler
from services.gate.machine import ItemState
from services.gate.operator_api import OperatorApi
from services.gate.telemetry import GateTelemetry
from services.gate.tenants import policies_of, rules_of
from services.runtime import topics
from services.runtime.auth import OperatorAuth
from services.runtime.config import Deployment
from services.runtime.memory import DictModelTable, MemoryOutbox
from services.runtime.ports import InboundRecord, OutboundRecord
from tests.conftest import OPERATOR_TOKEN, content_event
from tests.service.conftest import FakeClock


class Gate:
    """A gate whose own commands come straight back to it, as through gate.commands."""

    def __init__(self, deployment: Deployment, clock: FakeClock) -> None:
        self.outbox = MemoryOutbox(on_send=self._loop_back)
        self.items: DictModelTable[ItemState] = DictModelTable(ItemState)
        self.registry = CollectorRegistry()
        self.handler = GateHandler(
            policies=policies_of(deployment),
            rules=rules_of(deployment),
            items=self.items,
            outbox=self.outbox,
            telemetry=GateTelemetry(
                self.registry,
                {n: t.policy.escalate_after for n, t in deployment.tenants.items()},
            ),
            clock=clock,
            ready=lambda: True,
        )
        self.offset = 0

    async def _loop_back(self, records: Sequence[OutboundRecord]) -> None:
        for record in records:
            if record.topic == topics.GATE_COMMANDS:
                await self.feed(record.topic, record.key or b"", record.value or b"")

    async def feed(self, topic: str, key: bytes, value: bytes) -> None:
        self.offset += 1
        await self.handler.handle(InboundRecord(topic, 0, self.offset, key, value))

    def decisions(self) -> list[dict[str, object]]:
        return [json.loads(r.value or b"") for r in self.outbox.on(topics.DECISIONS)]


async def _hold(gate: Gate, clock: FakeClock, item_id: str) -> None:
    event = ContentEvent.model_validate(content_event(item_id=item_id))
    accepted = AcceptedEvent(
        event_id=f"e-{item_id}",
        tenant="lerum",
        item_id=item_id,
        source="http",
        received_at=clock(),
        event=event,
    )
    await gate.feed(
        topics.ACCEPTED, f"lerum:{item_id}".encode(), accepted.model_dump_json().encode()
    )


async def test_an_operator_releases_a_held_item_with_a_reason_and_it_is_audited(
    deployment: Deployment, clock: FakeClock
) -> None:
    gate = Gate(deployment, clock)
    await _hold(gate, clock, "held-1")
    assert [d["kind"] for d in gate.decisions()] == ["held"]
    app = web.Application()
    OperatorApi(gate.handler, OperatorAuth(OPERATOR_TOKEN), deployment.tenants).add_routes(app)
    async with TestClient(TestServer(app)) as client:
        listed = await (await client.get("/v1/held?tenant=lerum")).json()
        assert [r["item_id"] for r in listed["held"]] == ["held-1"]
        assert listed["held"][0]["reasons"] == ["awaiting_internal_notice"]

        refused = await client.post(
            "/v1/held/lerum/held-1/release", json={"reason": "Personalen informerades muntligt"}
        )
        assert refused.status == 401
        assert gate.outbox.on(topics.GATE_COMMANDS) == [], "nothing is asked without the token"

        answer = await client.post(
            "/v1/held/lerum/held-1/release",
            json={"reason": "Personalen informerades muntligt"},
            headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
        )
        assert answer.status == 200
        assert (await answer.json())["status"] == "released"
        listed = await (await client.get("/v1/held")).json()
        assert listed["count"] == 0

    [release] = [json.loads(r.value or b"") for r in gate.outbox.on(topics.RELEASES)]
    assert release["item_id"] == "held-1"
    assert release["audience"] == "external"
    manual = gate.decisions()[-1]
    assert manual["kind"] == "overridden"
    assert manual["rule"] == "manual_release"
    assert manual["operator_reason"] == "Personalen informerades muntligt"
    sample = gate.registry.get_sample_value(
        "gatekeeper_gate_manual_releases_total", {"tenant": "lerum"}
    )
    assert sample == 1.0


async def test_releasing_what_is_not_held_is_404_and_a_missing_reason_422(
    deployment: Deployment, clock: FakeClock
) -> None:
    gate = Gate(deployment, clock)
    app = web.Application()
    OperatorApi(gate.handler, OperatorAuth(OPERATOR_TOKEN), deployment.tenants).add_routes(app)
    auth = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    async with TestClient(TestServer(app)) as client:
        missing = await client.post(
            "/v1/held/lerum/nothing/release", json={"reason": "x"}, headers=auth
        )
        assert missing.status == 404
        await _hold(gate, clock, "held-2")
        empty = await client.post(
            "/v1/held/lerum/held-2/release", json={"reason": " "}, headers=auth
        )
        assert empty.status == 422
        assert (await empty.json())["errors"][0]["field"] == "reason"
    assert gate.outbox.on(topics.GATE_COMMANDS) == []


async def test_a_scheduled_item_is_ticked_and_released_when_its_time_comes(
    deployment: Deployment, clock: FakeClock
) -> None:
    gate = Gate(deployment, clock)
    # An internal notice scheduled an hour ahead waits only for its time.
    later = (clock() + timedelta(hours=1)).isoformat()
    event = ContentEvent.model_validate(
        content_event(
            item_id="later",
            audience="internal",
            channels=["intranet"],
            publish_at=later,
        )
    )
    accepted = AcceptedEvent(
        event_id="e-later",
        tenant="lerum",
        item_id="later",
        source="http",
        received_at=clock(),
        event=event,
    )
    await gate.feed(topics.ACCEPTED, b"lerum:later", accepted.model_dump_json().encode())
    await gate.handler.tick_due()
    assert gate.outbox.on(topics.RELEASES) == []
    clock.advance(hours=1)
    await gate.handler.tick_due()
    assert len(gate.outbox.on(topics.GATE_COMMANDS)) == 1
    [release] = [json.loads(r.value or b"") for r in gate.outbox.on(topics.RELEASES)]
    assert release["item_id"] == "later"
