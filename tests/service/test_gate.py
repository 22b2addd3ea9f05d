"""The gate's handler and operator API with in-memory ports."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from schemas.events import AcceptedEvent, ContentEvent, Decision, DeliveryReceipt, Recorded
from services.gate.assembly import gate_handler
from services.gate.console import Console
from services.gate.followup import FollowUp
from services.gate.history import History
from services.gate.operator_api import OperatorApi
from services.gate.ports import NoTelemetry
from services.gate.state import ItemState
from services.runtime import topics
from services.runtime.audit import acceptance
from services.runtime.config import Deployment
from services.runtime.keys import ItemKey
from services.runtime.memory import DictModelTable, MemoryOutbox
from services.runtime.operators import Identity, OperatorDirectory
from services.runtime.ports import InboundRecord, OutboundRecord
from tests.conftest import OPERATOR_TOKEN, content_event
from tests.harness import memory_gate
from tests.service.conftest import FakeClock, memory_sessions, sha256

ANNA = Identity("Anna Andersson", "anna.andersson@lerum.se", frozenset({"lerum"}), "publisher")
VIKTOR = Identity("Viktor Viewer", "viktor@lerum.se", frozenset({"lerum"}), "viewer")
ALVA = Identity("Alva Ale", "alva@ale.se", frozenset({"ale"}), "publisher")
OPERATORS = OperatorDirectory(
    [(ANNA, sha256("anna-token")), (VIKTOR, sha256("viktor-token")), (ALVA, sha256("alva-token"))],
    shared_token=OPERATOR_TOKEN,
)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class LoopbackGate:
    """A gate whose own commands come straight back to it, as through gate.commands."""

    def __init__(self, deployment: Deployment, clock: FakeClock) -> None:
        self.outbox = MemoryOutbox(on_send=self._loop_back)
        self.registry = CollectorRegistry()
        self.handler = memory_gate(
            deployment, outbox=self.outbox, registry=self.registry, clock=clock
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


async def _hold(gate: LoopbackGate, clock: FakeClock, item_id: str, **fields: object) -> None:
    """An accepted event for *item_id* (Lerum's web by default), as ingest hands it over."""
    event = ContentEvent.model_validate(content_event(item_id=item_id, **fields))
    accepted = AcceptedEvent(
        event_id=f"e-{item_id}-{len(gate.outbox.sent)}",
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
    gate = LoopbackGate(deployment, clock)
    await _hold(gate, clock, "held-1")
    assert [d["kind"] for d in gate.decisions()] == ["held"]
    app = web.Application()
    OperatorApi(gate.handler, OPERATORS, deployment.tenants).add_routes(app)
    async with TestClient(TestServer(app)) as client:
        listed = await (
            await client.get("/v1/held?tenant=lerum", headers=bearer("anna-token"))
        ).json()
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
            headers=bearer("anna-token"),
        )
        assert answer.status == 200
        assert (await answer.json())["status"] == "released"
        listed = await (await client.get("/v1/held", headers=bearer("anna-token"))).json()
        assert listed["count"] == 0

    [release] = [json.loads(r.value or b"") for r in gate.outbox.on(topics.RELEASES)]
    assert release["item_id"] == "held-1"
    assert release["audience"] == "external"
    manual = gate.decisions()[-1]
    assert manual["kind"] == "overridden"
    assert manual["rule"] == "manual_release"
    assert manual["operator_reason"] == "Personalen informerades muntligt"
    assert manual["operator"] == "Anna Andersson"
    sample = gate.registry.get_sample_value("gatekeeper_gate_overridden_total", {"tenant": "lerum"})
    assert sample == 1.0


async def test_releasing_what_is_not_held_is_404_and_a_missing_reason_422(
    deployment: Deployment, clock: FakeClock
) -> None:
    gate = LoopbackGate(deployment, clock)
    app = web.Application()
    OperatorApi(gate.handler, OPERATORS, deployment.tenants).add_routes(app)
    auth = bearer(OPERATOR_TOKEN)
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
    gate = LoopbackGate(deployment, clock)
    # An internal notice scheduled an hour ahead waits only for its time.
    later = (clock() + timedelta(hours=1)).isoformat()
    await _hold(gate, clock, "later", audience="internal", channels=["intranet"], publish_at=later)
    await gate.handler.tick_due()
    assert gate.outbox.on(topics.RELEASES) == []
    clock.advance(hours=1)
    await gate.handler.tick_due()
    assert len(gate.outbox.on(topics.GATE_COMMANDS)) == 1
    [release] = [json.loads(r.value or b"") for r in gate.outbox.on(topics.RELEASES)]
    assert release["item_id"] == "later"


async def test_each_person_sees_and_acts_for_their_own_tenants_only(
    deployment: Deployment, clock: FakeClock
) -> None:
    gate = LoopbackGate(deployment, clock)
    await _hold(gate, clock, "lerum-item")
    app = web.Application()
    OperatorApi(gate.handler, OPERATORS, deployment.tenants).add_routes(app)
    release = {"reason": "Informerat på APT"}
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/v1/held")).status == 401
        assert (await client.get("/v1/held", headers=bearer("guess"))).status == 401
        alva = await (await client.get("/v1/held", headers=bearer("alva-token"))).json()
        assert alva["count"] == 0, "Ale's communicator does not see Lerum's titles"
        other = await client.get("/v1/held?tenant=lerum", headers=bearer("alva-token"))
        assert other.status == 404
        viktor = await (await client.get("/v1/held", headers=bearer("viktor-token"))).json()
        assert [r["item_id"] for r in viktor["held"]] == ["lerum-item"]

        path = "/v1/held/lerum/lerum-item/release"
        assert (await client.post(path, json=release)).status == 401
        assert (await client.post(path, json=release, headers=bearer("alva-token"))).status == 404
        viewer = await client.post(path, json=release, headers=bearer("viktor-token"))
        assert viewer.status == 403
        reject = "/v1/held/lerum/lerum-item/reject"
        assert (
            await client.post(reject, json=release, headers=bearer("viktor-token"))
        ).status == 403
    assert gate.outbox.on(topics.GATE_COMMANDS) == [], "no refusal changes anything"
    assert gate.handler.held()[0].item_id == "lerum-item"


async def test_a_rejected_item_goes_nowhere_until_a_newer_version_arrives(
    deployment: Deployment, clock: FakeClock
) -> None:
    gate = LoopbackGate(deployment, clock)
    await _hold(gate, clock, "wrong")
    app = web.Application()
    OperatorApi(gate.handler, OPERATORS, deployment.tenants).add_routes(app)
    async with TestClient(TestServer(app)) as client:
        answer = await client.post(
            "/v1/held/lerum/wrong/reject",
            json={"reason": "Fel datum i texten"},
            headers=bearer("anna-token"),
        )
        assert answer.status == 200
        assert (await answer.json())["status"] == "rejected"
    rejected = gate.decisions()[-1]
    assert rejected["kind"] == "rejected_by_operator"
    assert rejected["operator"] == "Anna Andersson"
    assert rejected["operator_reason"] == "Fel datum i texten"
    assert gate.handler.held() == []

    await _hold(gate, clock, "wrong")  # the same version once more, under a new event id
    assert gate.decisions()[-1]["kind"] == "stale"
    assert gate.handler.held() == []
    await _hold(gate, clock, "wrong", version=2)
    assert [s.item_id for s in gate.handler.held()] == ["wrong"], "version 2 is held as usual"
    assert gate.outbox.on(topics.RELEASES) == []


def _console(gate: LoopbackGate, deployment: Deployment, clock: FakeClock) -> web.Application:
    app = web.Application()
    api = OperatorApi(gate.handler, OPERATORS, deployment.tenants)
    api.add_routes(app)
    Console(gate.handler, OPERATORS, deployment.tenants, clock, memory_sessions()).add_routes(app)
    return app


async def _login(client: TestClient[Any, Any], token: str) -> None:
    form = await (await client.get("/console/login")).text()
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    assert csrf is not None
    answer = await client.post(
        "/console/login", data={"csrf": csrf.group(1), "token": token}, allow_redirects=False
    )
    assert answer.status == 303
    cookie = answer.cookies["gk_session"]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Strict"


async def test_the_console_releases_under_the_person_s_name_with_a_form_from_itself(
    deployment: Deployment, clock: FakeClock
) -> None:
    gate = LoopbackGate(deployment, clock)
    await _hold(gate, clock, "konsol")
    async with TestClient(TestServer(_console(gate, deployment, clock))) as client:
        start = await client.get("/console", allow_redirects=False)
        assert start.status == 303
        assert start.headers["Location"] == "/console/login"
        await _login(client, "anna-token")
        page = await (await client.get("/console")).text()
        assert "Ny förskola i Gråbo" in page
        assert "Väntar på intern information" in page
        item = await (await client.get("/console/items/lerum/konsol")).text()
        assert "Lerums kommun" in item, "the sender block is shown as it goes out"
        assert "Mottagen" in item or "Hålls kvar" in item
        csrf = re.search(r'name="csrf" value="([^"]+)"', item)
        assert csrf is not None

        forged = await client.post(
            "/console/items/lerum/konsol/release", data={"csrf": "forged", "reason": "x"}
        )
        assert forged.status == 403
        empty = await client.post(
            "/console/items/lerum/konsol/release", data={"csrf": csrf.group(1), "reason": " "}
        )
        assert empty.status == 422
        assert gate.outbox.on(topics.GATE_COMMANDS) == []

        done = await client.post(
            "/console/items/lerum/konsol/release",
            data={"csrf": csrf.group(1), "reason": "Informerat på arbetsplatsträff"},
            allow_redirects=False,
        )
        assert done.status == 303
        assert done.headers["Location"] == "/console?klart=released"
        after = await (await client.get("/console?klart=released")).text()
        assert "Publiceringen är släppt." in after
        assert "konsol" not in after
    manual = gate.decisions()[-1]
    assert (manual["kind"], manual["operator"]) == ("overridden", "Anna Andersson")
    assert manual["operator_email"] == "anna.andersson@lerum.se", "who, beyond a name"
    [command] = [json.loads(r.value or b"") for r in gate.outbox.on(topics.GATE_COMMANDS)]
    assert command["operator_email"] == "anna.andersson@lerum.se"


async def test_the_console_shows_a_person_only_their_tenants_and_a_viewer_cannot_act(
    deployment: Deployment, clock: FakeClock
) -> None:
    gate = LoopbackGate(deployment, clock)
    await _hold(gate, clock, "lerums")
    async with TestClient(TestServer(_console(gate, deployment, clock))) as client:
        await _login(client, "alva-token")
        assert "Ny förskola i Gråbo" not in await (await client.get("/console")).text()
        assert (await client.get("/console/items/lerum/lerums")).status == 404
    async with TestClient(TestServer(_console(gate, deployment, clock))) as client:
        await _login(client, "viktor-token")
        item = await (await client.get("/console/items/lerum/lerums")).text()
        assert "Släpp publiceringen" not in item
        csrf = re.search(r'name="csrf" value="([^"]+)"', item)
        assert csrf is not None
        refused = await client.post(
            "/console/items/lerum/lerums/release", data={"csrf": csrf.group(1), "reason": "x"}
        )
        assert refused.status == 403
    assert gate.outbox.on(topics.GATE_COMMANDS) == []


def _accepted(item_id: str, clock: FakeClock, event_id: str, **fields: object) -> bytes:
    event = ContentEvent.model_validate(content_event(item_id=item_id, **fields))
    accepted = AcceptedEvent(
        event_id=event_id,
        tenant="lerum",
        item_id=item_id,
        source="http",
        received_at=clock(),
        event=event,
    )
    return accepted.model_dump_json().encode()


def _receipt(item_id: str, clock: FakeClock) -> bytes:
    receipt = DeliveryReceipt(
        decision_id=f"d-{item_id}",
        tenant="lerum",
        item_id=item_id,
        version=1,
        action="publish",
        audience="internal",
        channel="intranet",
        delivered_at=clock(),
    )
    return receipt.model_dump_json().encode()


async def test_a_batch_decides_each_item_s_inputs_in_order_as_one_at_a_time_would(
    deployment: Deployment, clock: FakeClock
) -> None:
    inputs = [
        (topics.ACCEPTED, "a", _accepted("a", clock, "e-a")),
        (topics.ACCEPTED, "b", _accepted("b", clock, "e-b")),
        (topics.RECEIPTS, "a", _receipt("a", clock)),  # a's notice reached the staff
        (topics.ACCEPTED, "a", _accepted("a", clock, "e-a2", version=2)),
        (topics.ACCEPTED, "c", b"{not json"),  # counted and skipped, the rest goes on
    ]
    records = [
        InboundRecord(topic, 0, n, f"lerum:{item}".encode(), value)
        for n, (topic, item, value) in enumerate(inputs)
    ]
    one_by_one, batched = LoopbackGate(deployment, clock), LoopbackGate(deployment, clock)
    for record in records:
        await one_by_one.handler.handle(record)
    saved: list[int] = []

    await batched.handler.handle_batch(records, saved.append)

    def kinds(gate: LoopbackGate) -> list[tuple[str, str, int]]:
        return [
            (str(d["item_id"]), str(d["kind"]), int(str(d["version"]))) for d in gate.decisions()
        ]

    assert kinds(batched) == kinds(one_by_one)
    assert ("a", "released", 1) in kinds(batched)
    assert [r.value for r in batched.outbox.on(topics.RELEASES)] == [
        r.value for r in one_by_one.outbox.on(topics.RELEASES)
    ]
    for item in ("a", "b"):
        key = ItemKey("lerum", item)
        assert batched.handler.state(key) == one_by_one.handler.state(key)
    # Each item's state and history is saved once, as of its last input in the batch.
    assert sorted(saved) == [1, 1, 3, 3]


async def test_an_item_s_history_has_ingest_s_acceptance_the_gate_s_decisions_and_refusals(
    deployment: Deployment, clock: FakeClock
) -> None:
    gate = LoopbackGate(deployment, clock)
    key = ItemKey("lerum", "news-1")
    accepted = _accepted("news-1", clock, "e-1")
    await gate.feed(topics.ACCEPTED, key.encode(), accepted)
    refusal = Decision(
        decision_id="r-1",
        kind="rejected",
        reason="schema violation: title: must not be empty",
        rule="contract_v1",
        tenant="lerum",
        item_id="news-1",
        version=2,
        event_id="msg_2",
        decided_at=clock(),
    )
    note = Recorded(tenant="lerum", item_id="news-1", decision=refusal)
    gate.offset += 1  # as ingest writes it: on cms.accepted, marked as not an event
    await gate.handler.handle(
        InboundRecord(
            topics.ACCEPTED,
            0,
            gate.offset,
            key.encode(),
            note.model_dump_json().encode(),
            (topics.RECORDED_HEADER,),
        )
    )
    await gate.feed(topics.ACCEPTED, key.encode(), accepted)  # replayed after a crash

    history = gate.handler.history(key).decisions
    assert [d.kind for d in history] == ["accepted", "held", "rejected"]
    assert history[0] == acceptance(AcceptedEvent.model_validate_json(accepted))
    assert [d["kind"] for d in gate.decisions()] == ["held"], "a refusal is not audited twice"


async def test_the_held_list_pages_searches_and_names_a_bad_parameter(
    deployment: Deployment, clock: FakeClock
) -> None:
    gate = LoopbackGate(deployment, clock)
    for n in range(3):
        await _hold(gate, clock, f"sida-{n}", title=f"Nyhet nummer {n}")
        clock.advance(minutes=1)
    async with TestClient(TestServer(_console(gate, deployment, clock))) as client:
        auth = bearer("anna-token")
        first = await (await client.get("/v1/held?limit=2", headers=auth)).json()
        assert [r["item_id"] for r in first["held"]] == ["sida-0", "sida-1"]
        assert first["count"] == 3
        rest = await (
            await client.get(f"/v1/held?limit=2&cursor={first['next_cursor']}", headers=auth)
        ).json()
        assert [r["item_id"] for r in rest["held"]] == ["sida-2"]
        assert rest["next_cursor"] is None
        found = await (await client.get("/v1/held?q=nummer+1", headers=auth)).json()
        assert [r["item_id"] for r in found["held"]] == ["sida-1"]
        bad = await client.get("/v1/held?limit=5000&cursor=nope", headers=auth)
        assert bad.status == 400
        assert bad.headers["content-type"].startswith("application/problem+json")
        assert [e["field"] for e in (await bad.json())["errors"]] == ["limit", "cursor"]


async def test_the_console_pages_50_at_a_time_with_search_and_a_reason_filter(
    deployment: Deployment, clock: FakeClock
) -> None:
    gate = LoopbackGate(deployment, clock)
    for n in range(53):
        clock.advance(seconds=1)
        await _hold(gate, clock, f"list-{n:02d}", title=f"Nyhet nummer {n}")
    await _hold(
        gate, clock, "brand-1", title="Brand i Gråbo", publish_at="2099-01-01T08:00:00+01:00"
    )
    app = _console(gate, deployment, clock)
    async with TestClient(TestServer(app)) as client:
        await _login(client, "anna-token")
        first = await (await client.get("/console")).text()
        assert "54 av 54 väntande" in first
        assert first.count("/console/items/lerum/") == 50
        further = re.search(r'href="(/console\?sida=[^"]+)" rel="next"', first)
        assert further is not None
        second = await (await client.get(further.group(1).replace("&amp;", "&"))).text()
        assert second.count("/console/items/lerum/") == 4
        assert 'rel="next"' not in second
        shown = set(re.findall(r"/console/items/lerum/([\w.-]+)", first + second))
        assert len(shown) == 54, "each once over the pages"

        found = await (await client.get("/console", params={"q": "brand gråbo"})).text()
        assert "1 av 54 väntande" in found
        assert "/console/items/lerum/brand-1" in found
        waiting = await (
            await client.get("/console", params={"orsak": "awaiting_internal_notice"})
        ).text()
        assert "54 av 54" in waiting, "every one waits for its internal notice"
        nothing = await (await client.get("/console", params={"q": "ingenting-sådant"})).text()
        assert "Inget som väntar matchar sökningen." in nothing


async def test_the_follow_up_page_shows_a_month_or_a_period_per_unit(
    deployment: Deployment, clock: FakeClock
) -> None:
    gate = LoopbackGate(deployment, clock)

    def released(n: int, month: int) -> Decision:
        return Decision(
            decision_id=f"d{n}",
            kind="released",
            reason="ok",
            rule="r",
            tenant="lerum",
            item_id=f"i{n}",
            version=1,
            audience="external",
            decided_at=datetime(2026, month, 10, 8, 0, tzinfo=UTC),
            unit="Sektor Lärande",
            internal_lead_s=3600.0 * n,
        )

    followup = FollowUp().add_all([released(1, 9), released(2, 9), released(3, 10)])
    app = web.Application()
    Console(
        gate.handler, OPERATORS, deployment.tenants, clock, memory_sessions(), None,
        followup=followup,
    ).add_routes(app)  # fmt: skip
    async with TestClient(TestServer(app)) as client:
        await _login(client, "anna-token")
        month = await (await client.get("/console/uppfoljning?month=2026-09")).text()
        period = await (await client.get("/console/uppfoljning?month=2026-09&till=2026-10")).text()
        csv = await (await client.get("/console/uppfoljning.csv?month=2026-09&till=2026-10")).read()

    def released_cell(page: str) -> str:
        row = re.search(r"<th scope=\"row\">Sektor Lärande</th>\s*<td>(\d+)</td>", page)
        assert row is not None
        return row.group(1)

    assert "september 2026" in month
    assert released_cell(month) == "2"
    assert "september 2026 – oktober 2026" in period
    assert released_cell(period) == "3", "the period counts every month's versions"
    assert ";3;" in csv.decode("utf-8-sig").splitlines()[1]


async def test_the_handler_needs_no_prometheus_its_metrics_are_a_port(
    deployment: Deployment, clock: FakeClock
) -> None:
    """Given metrics that count nothing and in-memory tables, the gate holds an external
    item until its internal notice is delivered, as with the Prometheus ones."""
    outbox = MemoryOutbox()
    handler = gate_handler(
        deployment,
        items=DictModelTable(ItemState),
        history=DictModelTable(History),
        outbox=outbox,
        registry=CollectorRegistry(),
        clock=clock,
        ready=lambda: True,
        metrics=NoTelemetry(),
    )
    event = ContentEvent.model_validate(content_event(item_id="utan-matare"))
    accepted = AcceptedEvent(
        event_id="e-utan-matare",
        tenant="lerum",
        item_id="utan-matare",
        source="http",
        received_at=clock(),
        event=event,
    )
    await handler.handle(
        InboundRecord(
            topics.ACCEPTED, 0, 1, b"lerum:utan-matare", accepted.model_dump_json().encode()
        )
    )
    kinds = [json.loads(r.value or b"")["kind"] for r in outbox.on(topics.DECISIONS)]
    assert kinds == ["held"]
    assert handler.board.get(b"lerum:utan-matare")[0]["reasons"] == ["awaiting_internal_notice"]
