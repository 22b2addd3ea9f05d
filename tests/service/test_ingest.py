"""Ingest's door and Kafka path with in-memory ports."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from services.ingest.assembly import IngestHandlers, ingest_handlers
from services.ingest.door import EventDoor
from services.ingest.records import RecordHandler
from services.ingest.seen import SeenWindow
from services.runtime import topics
from services.runtime.config import Deployment
from services.runtime.memory import DictTextTable, MemoryOutbox
from services.runtime.ports import InboundRecord, OutboundRecord
from tests.conftest import content_event
from tests.harness import sign
from tests.service.conftest import FakeClock

#: How long the tests' ingest keeps a webhook-id: the chart's default.
WINDOW = SeenWindow(retention_s=7 * 86400, max_bytes=64 << 20)


def _handlers(deployment: Deployment, outbox: MemoryOutbox, clock: FakeClock) -> IngestHandlers:
    return ingest_handlers(
        deployment,
        seen=DictTextTable(),
        window=WINDOW,
        outbox=outbox,
        registry=CollectorRegistry(),
        clock=clock,
        ready=lambda: True,
    )


def _door(deployment: Deployment, outbox: MemoryOutbox, clock: FakeClock) -> EventDoor:
    return _handlers(deployment, outbox, clock).door


def _records(deployment: Deployment, outbox: MemoryOutbox, clock: FakeClock) -> RecordHandler:
    return _handlers(deployment, outbox, clock).records


def _delivery(item: str, value: bytes, webhook_id: str, offset: int) -> InboundRecord:
    """A record of Lerum's *item* on ``cms.events``, as the HTTP door writes it."""
    return InboundRecord(
        topic=topics.CMS_EVENTS,
        partition=0,
        offset=offset,
        key=f"lerum:{item}".encode(),
        value=value,
        headers=(("webhook-id", webhook_id.encode()),),
    )


async def test_two_identical_webhooks_at_the_same_moment_are_written_once(
    deployment: Deployment, clock: FakeClock
) -> None:
    twin_arrived = asyncio.Event()

    async def slow_broker(_: Sequence[OutboundRecord]) -> None:
        await twin_arrived.wait()  # the first write is acknowledged only after the twin came in

    outbox = MemoryOutbox(on_send=slow_broker)
    door = _door(deployment, outbox, clock)
    arrivals = 0
    dedupe = door.dedupe

    async def counted(*args: Any) -> Any:
        nonlocal arrivals
        arrivals += 1
        if arrivals == 2:
            twin_arrived.set()
        return await dedupe(*args)

    door.dedupe = counted  # type: ignore[method-assign,assignment]
    app = web.Application()
    door.add_routes(app)
    body = json.dumps(content_event(item_id="twins")).encode()
    headers = sign("lerum", body, "msg_twin")
    async with TestClient(TestServer(app)) as client:
        answers = await asyncio.gather(
            client.post("/v1/tenants/lerum/events", data=body, headers=headers),
            client.post("/v1/tenants/lerum/events", data=body, headers=headers),
        )
        statuses = sorted(r.status for r in answers)
        bodies = [await r.json() for r in answers]
    assert arrivals == 2
    assert statuses == [200, 202]
    assert {b["status"] for b in bodies} == {"accepted", "duplicate"}
    assert len({b["event_id"] for b in bodies}) == 1, "the twin is told the same event id"
    assert [r.topic for r in outbox.sent] == [topics.CMS_EVENTS]


async def test_a_twin_of_a_failed_write_is_not_told_it_was_accepted(
    deployment: Deployment, clock: FakeClock
) -> None:
    outbox = MemoryOutbox()
    outbox.fail = TimeoutError("broker down")
    app = web.Application()
    _door(deployment, outbox, clock).add_routes(app)
    body = json.dumps(content_event(item_id="lost")).encode()
    headers = sign("lerum", body, "msg_lost")
    async with TestClient(TestServer(app)) as client:
        down = await client.post("/v1/tenants/lerum/events", data=body, headers=headers)
        outbox.fail = None
        again = await client.post("/v1/tenants/lerum/events", data=body, headers=headers)
        assert down.status == 503
        assert again.status == 202, "a retry after a failed write is a first delivery"


async def test_a_refused_record_is_dead_lettered_whole_with_its_reason_in_headers(
    deployment: Deployment, clock: FakeClock
) -> None:
    outbox = MemoryOutbox()
    handler = _records(deployment, outbox, clock)
    value = json.dumps(content_event(item_id="bad", version=0, channels=["fax"])).encode()
    record = InboundRecord(
        topic=topics.CMS_EVENTS,
        partition=1,
        offset=42,
        key=b"lerum:bad",
        value=value,
        headers=(("webhook-id", b"msg_bad"), ("trace", b"abc")),
    )
    await handler.handle(record)

    [letter] = outbox.on(topics.CMS_EVENTS_DLQ)
    assert letter.key == b"lerum:bad"
    assert letter.value == value, "the original bytes, untouched"
    headers = dict(letter.headers)
    assert headers["trace"] == b"abc", "the producer's own headers are kept"
    assert headers["dlq-reason"] == b"schema violation"
    assert headers["dlq-source-topic"] == topics.CMS_EVENTS.encode()
    assert headers["dlq-source-partition"] == b"1"
    assert headers["dlq-source-offset"] == b"42"
    fields = {e["field"] for e in json.loads(headers["dlq-errors"])}
    assert fields == {"version", "channels[0]"}
    [decision] = [json.loads(r.value or b"") for r in outbox.on(topics.DECISIONS)]
    assert decision["kind"] == "rejected"
    assert decision["item_id"] == "bad"
    assert outbox.on(topics.GATE_COMMANDS) == [], "only the gate writes its commands"
    [accepted] = outbox.on(topics.ACCEPTED)
    assert dict(accepted.headers) == {"gatekeeper-kind": b"recorded"}, "not an accepted event"
    note = json.loads(accepted.value or b"")
    assert note["kind"] == "recorded", "the gate shows the refusal in the item's history"
    assert note["decision"] == decision


async def test_a_record_seen_before_is_accepted_once(
    deployment: Deployment, clock: FakeClock
) -> None:
    outbox = MemoryOutbox()
    handler = _records(deployment, outbox, clock)
    value = json.dumps(content_event(item_id="once")).encode()
    for offset in (7, 8):
        await handler.handle(_delivery("once", value, "msg_once", offset))
    assert len(outbox.on(topics.ACCEPTED)) == 1
    [decision] = [json.loads(r.value or b"") for r in outbox.on(topics.DECISIONS)]
    assert decision["kind"] == "accepted"


async def test_a_webhook_id_over_256_characters_is_refused_and_not_remembered(
    deployment: Deployment, clock: FakeClock
) -> None:
    outbox = MemoryOutbox()
    door = _door(deployment, outbox, clock)
    app = web.Application()
    door.add_routes(app)
    body = json.dumps(content_event(item_id="long-id")).encode()
    async with TestClient(TestServer(app)) as client:
        long = await client.post(
            "/v1/tenants/lerum/events", data=body, headers=sign("lerum", body, "m" * 257)
        )
        problem = await long.json()
        longest = await client.post(
            "/v1/tenants/lerum/events", data=body, headers=sign("lerum", body, "m" * 256)
        )
    assert long.status == 400
    assert long.headers["content-type"].startswith("application/problem+json")
    assert problem["errors"] == [{"field": "webhook-id", "detail": "at most 256 characters"}]
    assert longest.status == 202
    # ids are remembered from what goes on to cms.events: only the shorter one did
    assert [dict(r.headers)["webhook-id"] for r in outbox.sent] == [b"m" * 256]


async def test_a_webhook_id_is_a_duplicate_for_the_replay_window_and_then_forgotten(
    deployment: Deployment, clock: FakeClock
) -> None:
    outbox = MemoryOutbox()
    handlers = _handlers(deployment, outbox, clock)
    app = web.Application()
    handlers.door.add_routes(app)
    body = json.dumps(content_event(item_id="window")).encode()

    async def post() -> tuple[int, dict[str, Any]]:
        # signed now: the signature's own 5-minute window is the wall clock's
        response = await client.post(
            "/v1/tenants/lerum/events", data=body, headers=sign("lerum", body, "msg_window")
        )
        return response.status, await response.json()

    async def record(offset: int) -> None:
        await handlers.records.handle(_delivery("window", body, "msg_window", offset))

    async with TestClient(TestServer(app)) as client:
        first = await post()
        await record(1)
        clock.advance(days=6, hours=23)
        again = await post()
        await record(2)
        clock.advance(hours=1, seconds=1)
        late = await post()
        await record(3)
    assert [first[0], again[0], late[0]] == [202, 200, 202]
    assert again[1]["status"] == "duplicate"
    assert late[1]["event_id"] == first[1]["event_id"], (
        "a forgotten id gets the same event id, which the gate knows as decided"
    )
    accepted = [json.loads(r.value or b"")["event_id"] for r in outbox.on(topics.ACCEPTED)]
    assert accepted == [first[1]["event_id"]] * 2, "once in the window, once after it"


async def test_another_event_under_a_forgotten_webhook_id_is_a_new_event(
    deployment: Deployment, clock: FakeClock
) -> None:
    """A CMS that uses an id again once it was forgotten, for another event: that
    event goes on to the gate under an id of its own, not as one already decided."""
    outbox = MemoryOutbox()
    handlers = _handlers(deployment, outbox, clock)
    app = web.Application()
    handlers.door.add_routes(app)
    events = [("roadworks", "Vägarbete på Storgatan"), ("beach", "Ny badplats")]
    answers = []
    async with TestClient(TestServer(app)) as client:
        for offset, (item, title) in enumerate(events, 1):
            body = json.dumps(content_event(item_id=item, title=title)).encode()
            response = await client.post(
                "/v1/tenants/lerum/events", data=body, headers=sign("lerum", body, "msg_reused")
            )
            answers.append((response.status, (await response.json())["event_id"]))
            await handlers.records.handle(_delivery(item, body, "msg_reused", offset))
            clock.advance(days=7, seconds=1)
    assert [status for status, _ in answers] == [202, 202]
    assert answers[0][1] != answers[1][1]
    accepted = [json.loads(r.value or b"") for r in outbox.on(topics.ACCEPTED)]
    assert [(a["event_id"], a["event"]["title"]) for a in accepted] == [
        (answers[0][1], "Vägarbete på Storgatan"),
        (answers[1][1], "Ny badplats"),
    ]
