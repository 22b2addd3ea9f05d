"""Logins that hold up: guessing is logged and slowed down, sessions end when they
should, HTTPS is remembered, any form value is answered, any item id is a link."""

from __future__ import annotations

import logging
import re
from ipaddress import ip_network
from typing import Any

import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from services.gate.console import Console
from services.gate.operator_api import OperatorApi
from services.runtime.config import Deployment
from services.runtime.operators import OperatorDirectory
from services.runtime.throttle import Throttle
from services.runtime.web import LoginGuard, base_app
from tests.service.conftest import FakeClock, memory_sessions, sha256
from tests.service.test_gate import ANNA, OPERATORS, LoopbackGate, _hold, _login

GUESS = "guessed-token-ÅÄÖ-1234"


def _app(gate: LoopbackGate, deployment: Deployment, clock: FakeClock) -> web.Application:
    guard = LoginGuard(OPERATORS, Throttle(limit=3), clock=clock)
    app = base_app(CollectorRegistry(), lambda: True, guard=guard)
    api = OperatorApi(gate.handler, OPERATORS, deployment.tenants)
    api.add_routes(app)
    Console(gate.handler, OPERATORS, deployment.tenants, clock, memory_sessions()).add_routes(app)
    return app


async def _csrf(client: TestClient[Any, Any], path: str = "/console/login") -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', await (await client.get(path)).text())
    assert found is not None
    return found.group(1)


async def test_guessing_is_logged_without_the_token_and_answered_429_once_too_often(
    deployment: Deployment, clock: FakeClock
) -> None:
    gate = LoopbackGate(deployment, clock)
    with structlog.testing.capture_logs() as logged:
        async with TestClient(TestServer(_app(gate, deployment, clock))) as client:
            bad = {"Authorization": f"Bearer {GUESS}"}
            answers = [(await client.get("/v1/held", headers=bad)).status for _ in range(2)]
            csrf = await _csrf(client)
            login = await client.post("/console/login", data={"csrf": csrf, "token": GUESS})
            held = await client.get("/v1/held", headers={"Authorization": "Bearer anna-token"})
            problem = await held.json()
            form = await client.get("/console/login")
            page = await form.text()
            clock.advance(minutes=5)
            later = await client.get("/v1/held", headers={"Authorization": "Bearer anna-token"})
    assert answers == [401, 401]
    assert login.status == 401, "a wrong key in the console counts the same"
    assert held.status == 429, "even a right token waits: the address is guessing"
    assert form.status == 429
    assert "Försök igen om 300 sekunder" in page
    assert held.headers["Retry-After"] == "300"
    assert problem["status"] == 429
    assert later.status == 200
    failed = [e for e in logged if e["event"] == "auth.failed"]
    assert [e["path"] for e in failed] == ["/v1/held", "/v1/held", "/console/login"]
    assert all(e["address"] == "127.0.0.1" for e in failed)
    assert GUESS not in repr(logged)


async def test_a_form_value_in_any_script_is_answered_not_crashed(
    deployment: Deployment, clock: FakeClock
) -> None:
    gate = LoopbackGate(deployment, clock)
    async with TestClient(TestServer(_app(gate, deployment, clock))) as client:
        await _csrf(client)
        answer = await client.post("/console/login", data={"csrf": "å", "token": "ö"})
        assert answer.status == 401
        assert "Formuläret har gått ut" in await answer.text()


async def test_a_session_ends_after_an_hour_unused_and_at_any_logout(
    deployment: Deployment, clock: FakeClock
) -> None:
    gate = LoopbackGate(deployment, clock)
    async with TestClient(TestServer(_app(gate, deployment, clock))) as client:
        await _login(client, "anna-token")
        clock.advance(minutes=59)
        assert (await client.get("/console", allow_redirects=False)).status == 200
        clock.advance(minutes=59)  # used a minute ago: still in
        assert (await client.get("/console", allow_redirects=False)).status == 200
        clock.advance(minutes=61)
        idle = await client.get("/console", allow_redirects=False)
        assert idle.status == 303
        assert idle.headers["Location"] == "/console/login"

        await _login(client, "anna-token")
        session = client.session.cookie_jar.filter_cookies(client.make_url("/console"))
        stale = await client.post(
            "/console/logout", data={"csrf": "from-an-old-page"}, allow_redirects=False
        )
        assert stale.status == 303
        client.session.cookie_jar.update_cookies(session)  # the cookie kept elsewhere
        assert (await client.get("/console", allow_redirects=False)).status == 303


async def test_over_https_the_browser_is_told_to_stay_on_https(
    deployment: Deployment, clock: FakeClock
) -> None:
    gate = LoopbackGate(deployment, clock)
    async with TestClient(TestServer(_app(gate, deployment, clock))) as client:
        https = await client.get("/console/login", headers={"X-Forwarded-Proto": "https"})
        plain = await client.get("/console/login")
    assert https.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    assert "Strict-Transport-Security" not in plain.headers


async def test_an_item_id_of_dots_is_a_link_to_its_own_page(
    deployment: Deployment, clock: FakeClock
) -> None:
    gate = LoopbackGate(deployment, clock)
    await _hold(gate, clock, "..")
    await _hold(gate, clock, "a:b.c")
    async with TestClient(TestServer(_app(gate, deployment, clock))) as client:
        await _login(client, "anna-token")
        page = await (await client.get("/console")).text()
        links = re.findall(r'href="(/console/items/[^"]+)"', page)
        assert sorted(links) == ["/console/items/lerum/a%3Ab.c", "/console/items/lerum/~.."]
        for link in links:
            item = await client.get(link)
            assert item.status == 200, link


logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


async def test_a_person_the_proxy_names_but_the_file_does_not_know_waits_from_any_address(
    deployment: Deployment, clock: FakeClock
) -> None:
    """Behind the trusted proxy, failures count per person as well as per address: an
    unknown e-mail tried from ever new addresses is still slowed down, and someone
    else from the same addresses is not."""
    proxied = OperatorDirectory(
        [(ANNA, sha256("anna-token"))],
        proxy_header="X-Forwarded-Email",
        proxy_networks=[ip_network("127.0.0.1/32")],
    )
    gate = LoopbackGate(deployment, clock)
    guard = LoginGuard(proxied, Throttle(limit=3), clock=clock)
    app = base_app(CollectorRegistry(), lambda: True, guard=guard)
    OperatorApi(gate.handler, proxied, deployment.tenants).add_routes(app)

    def via_proxy(email: str, client: int) -> dict[str, str]:
        return {"X-Forwarded-Email": email, "X-Forwarded-For": f"198.51.100.{client}"}

    stranger = "mallory@example.org"
    with structlog.testing.capture_logs() as logged:
        async with TestClient(TestServer(app)) as client:
            tries = [
                (await client.get("/v1/held", headers=via_proxy(stranger, n))).status
                for n in range(1, 5)
            ]
            fifth = await client.get("/v1/held", headers=via_proxy(stranger.upper(), 9))
            anna = await client.get("/v1/held", headers=via_proxy(ANNA.email or "", 4))
            clock.advance(minutes=5)
            later = await client.get("/v1/held", headers=via_proxy(stranger, 10))
    assert tries == [401, 401, 401, 429], "the fourth try waits, though from a new address"
    assert fifth.status == 429
    assert int(fifth.headers["Retry-After"]) > 0
    assert anna.status == 200, "another person from an address the stranger used is served"
    assert later.status == 401, "once the window has passed, the person may try again"
    failed = [e for e in logged if e["event"] == "auth.failed"]
    assert len({e["person"] for e in failed}) == 1
    assert stranger not in repr(logged), "the e-mail is logged as a digest"
