"""Every service describes its HTTP API in OpenAPI 3.1, made from its own routes and
models: a valid document, and every route served is described (and nothing else)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate
from prometheus_client import CollectorRegistry

from services.gate.bootstrap import build as build_gate
from services.ingest.bootstrap import build as build_ingest
from services.publish.bootstrap import build as build_publish
from services.runtime.config import Deployment
from services.runtime.openapi import undescribed
from services.runtime.settings import Settings

BUILDS: dict[str, Callable[..., Any]] = {
    "ingest": build_ingest,
    "gate": build_gate,
    "publish": build_publish,
}


def _web_app(name: str, deployment: Deployment, tmp_path: Path) -> web.Application:
    # The service as its composition root builds it; nothing connects until it runs.
    settings = Settings(
        KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9",
        GATEKEEPER_DATA_DIR=str(tmp_path),
        GATEKEEPER_OPERATOR_TOKEN="openapi-test-operator-token",
    )
    built = BUILDS[name](settings, deployment, CollectorRegistry())
    app: web.Application = built.web_app
    return app


async def _document(app: web.Application) -> dict[str, Any]:
    async with TestClient(TestServer(app)) as client:
        answer = await client.get("/openapi.json")
        assert answer.status == 200
        found: dict[str, Any] = await answer.json()
        return found


@pytest.mark.parametrize("name", sorted(BUILDS))
async def test_the_description_is_valid_openapi_3_1_of_every_route(
    name: str, deployment: Deployment, tmp_path: Path
) -> None:
    app = _web_app(name, deployment, tmp_path)
    doc = await _document(app)
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    assert undescribed(app, doc) == []


async def test_ingest_describes_the_signed_door_and_what_webhooks_receive(
    deployment: Deployment, tmp_path: Path
) -> None:
    doc = await _document(_web_app("ingest", deployment, tmp_path))
    post = doc["paths"]["/v1/tenants/{tenant}/events"]["post"]
    headers = {p["name"] for p in post["parameters"] if p["in"] == "header"}
    assert headers == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert set(post["responses"]) == {"200", "202", "400", "401", "404", "413", "415", "422", "503"}
    assert "Retry-After" in post["responses"]["503"]["headers"]
    problem = post["responses"]["422"]["content"]["application/problem+json"]["schema"]
    assert problem == {"$ref": "#/components/schemas/Problem"}
    assert "errors" in doc["components"]["schemas"]["Problem"]["properties"]
    assert "ContentEvent" in doc["components"]["schemas"]
    assert "channelNotice" in doc["webhooks"]


async def test_the_operator_apis_are_bearer_secured_and_paged(
    deployment: Deployment, tmp_path: Path
) -> None:
    gate = await _document(_web_app("gate", deployment, tmp_path))
    held = gate["paths"]["/v1/held"]["get"]
    assert held["security"] == [{"operator": []}]
    assert gate["components"]["securitySchemes"]["operator"]["scheme"] == "bearer"
    assert {p["name"] for p in held["parameters"]} == {"tenant", "q", "reason", "limit", "cursor"}
    publish = await _document(_web_app("publish", deployment, tmp_path))
    assert "/v1/dead-letters/{delivery_id}/redeliver" in publish["paths"]


async def test_a_route_without_its_description_is_named(
    deployment: Deployment, tmp_path: Path
) -> None:
    doc = await _document(_web_app("publish", deployment, tmp_path))
    changed = _web_app("publish", deployment, tmp_path / "changed")

    async def anything(_: web.Request) -> web.Response:
        return web.Response()

    changed.router.add_get("/v1/dead-letters/{delivery_id}", anything)
    assert undescribed(changed, doc) == [
        "GET /v1/dead-letters/{delivery_id} is served, not described"
    ]


REDOCLY = (
    Path(__file__).resolve().parents[1] / "ops" / "schemas" / "node_modules" / ".bin" / "redocly"
)


@pytest.mark.parametrize("name", sorted(BUILDS))
async def test_redocly_finds_no_error_in_the_description(
    name: str, deployment: Deployment, tmp_path: Path
) -> None:
    assert REDOCLY.is_file(), "Redocly CLI is missing: scripts/test installs it with npm"
    doc = await _document(_web_app(name, deployment, tmp_path))
    path = tmp_path / f"{name}.openapi.json"
    path.write_text(json.dumps(doc))
    linted = await asyncio.create_subprocess_exec(
        str(REDOCLY),
        "lint",
        str(path),
        "--format",
        "stylish",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    said, _ = await asyncio.wait_for(linted.communicate(), 120)
    assert linted.returncode == 0, said.decode()[-4000:]
