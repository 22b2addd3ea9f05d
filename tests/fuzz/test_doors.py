"""The doors refuse anything at all with a 4xx and problem+json, never a 5xx, and let
nothing malformed through. Hypothesis drives ingest's door and the gate's operator
API in this process (real handlers, in-memory ports); GATEKEEPER_FUZZ_EXAMPLES sets
how many cases (1,000 by default, 10,000 on demand)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from standardwebhooks import Webhook

from schemas.events import AcceptedEvent, Recorded
from services.gate.handler import GateHandler
from services.gate.operator_api import OperatorApi
from services.ingest.assembly import ingest_handlers
from services.ingest.seen import SeenWindow
from services.runtime import topics
from services.runtime.config import DEFAULT_CONFIG_PATH, Deployment, load_deployment
from services.runtime.memory import DictTextTable, MemoryOutbox
from services.runtime.operators import load_operators
from services.runtime.ports import InboundRecord, OutboundRecord
from services.runtime.web import base_app
from tests.conftest import ALE_SECRET, LERUM_SECRET, OPERATOR_TOKEN, SECRETS_ENV, content_event
from tests.harness import memory_gate

EXAMPLES = int(os.environ.get("GATEKEEPER_FUZZ_EXAMPLES", "1000"))
DEPLOYMENT: Deployment = load_deployment(DEFAULT_CONFIG_PATH, SECRETS_ENV)
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Ingest:
    """The door and the cms.events path, wired as the service wires them."""

    def __init__(self) -> None:
        self.outbox = MemoryOutbox(on_send=self._consume)
        self.seen = DictTextTable()
        handlers = ingest_handlers(
            DEPLOYMENT,
            seen=self.seen,
            window=SeenWindow(retention_s=7 * 86400, max_bytes=64 << 20),
            outbox=self.outbox,
            registry=CollectorRegistry(),
            clock=lambda: datetime.now(UTC),
            ready=lambda: True,
        )
        self.records = handlers.records
        self.door = handlers.door
        self.offset = 0

    async def _consume(self, records: Sequence[OutboundRecord]) -> None:
        for record in records:
            if record.topic == topics.CMS_EVENTS:
                self.offset += 1
                inbound = InboundRecord(
                    record.topic, 0, self.offset, record.key, record.value, tuple(record.headers)
                )
                await self.records.handle(inbound)


def _problem(status: int, content_type: str, body: bytes) -> None:
    assert 400 <= status < 500, (status, body[:300])
    assert content_type == "application/problem+json", content_type
    problem = json.loads(body)
    assert problem["status"] == status
    assert problem["title"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
_broken_fields = st.sampled_from(
    ["schema_version", "tenant", "item_id", "version", "action", "audience", "channels",
     "title", "publish_at", "images", "links", "contact", "crisis", "recipients", "unit"]
)  # fmt: skip


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["one_field", "json", "bytes", "deep", "huge", "nul"]))
    if kind == "one_field":
        event = content_event(item_id="fuzz")
        event[draw(_broken_fields)] = draw(json_values)
        return json.dumps(event).encode()
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "deep":
        depth = draw(st.integers(50, 5000))
        return ("[" * depth + "]" * depth).encode()
    if kind == "huge":
        size = draw(st.sampled_from([10_000, 1_100_000]))
        return json.dumps(content_event(item_id="fuzz", body="å" * size)).encode()
    text = draw(st.sampled_from(["\x00", "\ud800", "a\x00b"]))
    event = content_event(item_id="fuzz", title=text)
    return json.dumps(event).encode() if text != "\ud800" else b'{"title": "\\ud800"}'


@st.composite
def headers(draw: st.DrawFn, body: bytes) -> dict[str, str]:
    kind = draw(st.sampled_from(["signed", "missing", "malformed", "stale", "other_tenant"]))
    now = datetime.now(UTC)
    secret = ALE_SECRET if kind == "other_tenant" else LERUM_SECRET
    at = now - timedelta(minutes=10) if kind == "stale" else now
    msg_id = f"msg_{draw(st.uuids()).hex}"
    try:
        signature = Webhook(secret).sign(msg_id, at, body.decode())
    except UnicodeDecodeError:
        signature = "v1,AAAA"
    sent = {
        "content-type": draw(st.sampled_from(["application/json"] * 4 + ["text/plain", ""])),
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
    }
    if kind == "missing":
        del sent[draw(st.sampled_from(["webhook-id", "webhook-timestamp", "webhook-signature"]))]
    if kind == "malformed":
        sent[draw(st.sampled_from(["webhook-timestamp", "webhook-signature"]))] = draw(
            st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=40)
        )
    return sent


async def _post(client: TestClient[Any, Any], path: str, body: bytes, sent: dict[str, str]) -> Any:
    answer = await client.post(path, data=body, headers=sent)
    return answer.status, answer.headers.get("Content-Type", "").split(";")[0], await answer.read()


@FUZZ
@given(st.data())
def test_ingest_answers_anything_with_a_4xx_or_an_acceptance_and_lets_nothing_malformed_through(
    data: st.DataObject,
) -> None:
    body = data.draw(bodies())
    sent = data.draw(headers(body))
    tenant = data.draw(st.sampled_from(["lerum", "lerum", "ale", "oslo", "%2e%2e", "a" * 300]))

    async def run() -> None:
        ingest = Ingest()
        app = base_app(
            CollectorRegistry(), lambda: True, client_max_size=DEPLOYMENT.ingest.max_body_bytes + 1
        )
        ingest.door.add_routes(app)
        async with TestClient(TestServer(app)) as client:
            status, content_type, answer = await _post(
                client, f"/v1/tenants/{tenant}/events", body, sent
            )
            if status in (200, 202):
                assert json.loads(answer)["status"] in ("accepted", "duplicate")
            else:
                _problem(status, content_type, answer)
            assert (await client.get("/readyz")).status == 200, "the service stays ready"
        for record in ingest.outbox.on(topics.ACCEPTED):
            if topics.RECORDED_HEADER in record.headers:  # a refusal, for the history
                Recorded.model_validate_json(record.value or b"")
            else:
                AcceptedEvent.model_validate_json(record.value or b"")  # only valid events pass

    asyncio.run(run())


def _gate() -> tuple[web.Application, GateHandler]:
    handler = memory_gate(DEPLOYMENT)
    app = base_app(CollectorRegistry(), lambda: True)
    OperatorApi(
        handler, load_operators(None, shared_token=OPERATOR_TOKEN), DEPLOYMENT.tenants
    ).add_routes(app)
    return app, handler


@FUZZ
@given(
    st.sampled_from(["release", "reject"]),
    st.text(min_size=1, max_size=60).filter(lambda t: "/" not in t and t not in (".", "..")),
    st.sampled_from(["lerum", "ale", "oslo"]),
    st.one_of(json_values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=200)),
    st.sampled_from([f"Bearer {OPERATOR_TOKEN}", "Bearer wrong", "Basic x", "", "Bearer "]),
)
def test_the_operator_api_refuses_anything_with_a_4xx(
    action: str, item: str, tenant: str, body: bytes, authorization: str
) -> None:
    async def run() -> None:
        app, handler = _gate()
        async with TestClient(TestServer(app)) as client:
            path = f"/v1/held/{tenant}/{item}/{action}"
            answer = await client.post(
                path, data=body, headers={"Authorization": authorization} if authorization else {}
            )
            content_type = answer.headers.get("Content-Type", "").split(";")[0]
            payload = await answer.read()
            _problem(answer.status, content_type, payload)
            listed = await client.get(
                "/v1/held", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}
            )
            assert listed.status == 200, "the gate still answers"
        assert handler.held() == []

    asyncio.run(run())


@pytest.mark.parametrize(
    "query", ["tenant=", "tenant=%00", "tenant=" + "x" * 5000, "a=b&tenant=ale"]
)
def test_the_held_list_takes_odd_queries_without_a_5xx(query: str) -> None:
    async def run() -> None:
        app, _ = _gate()
        async with TestClient(TestServer(app)) as client:
            answer = await client.get(
                f"/v1/held?{query}", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}
            )
            assert answer.status in (200, 404)

    asyncio.run(run())
