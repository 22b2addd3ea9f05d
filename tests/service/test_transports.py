"""The webhook and SMTP transports against real local receivers: what a receiver
answers, what is shown of the address, what ends at once."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from services.publish.channels import DeliveryFailed
from services.publish.delivery import pending
from services.publish.transports import SmtpChannel, WebhookChannel, transports_of
from services.runtime.broker import free_port
from services.runtime.config import (
    DEFAULT_CONFIG_PATH,
    ConfigError,
    NotificationSmtp,
    WebhookTransport,
    load_deployment,
)
from tests.conftest import LERUM_OUTBOUND, SECRETS_ENV, with_outbound_secrets
from tests.e2e.test_publish import _order

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


async def test_a_redirect_is_a_failed_attempt_and_never_followed() -> None:
    followed: list[str] = []

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/elsewhere")

    async def elsewhere(request: web.Request) -> web.Response:
        followed.append(request.path)
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", moved)
    app.router.add_post("/elsewhere", elsewhere)
    async with TestServer(app) as server:
        origin = f"http://127.0.0.1:{server.port}"
        url = f"{origin}/hook?token=s3cret-in-the-address"
        channel = WebhookChannel(
            WebhookTransport(kind="webhook", url=url), (LERUM_OUTBOUND,), lambda: NOW
        )
        record = pending(_order("moved", ["partner"]), "partner", NOW)
        try:
            with pytest.raises(DeliveryFailed) as failed:
                await channel.deliver(record, b"{}")
        finally:
            await channel.close()

    assert failed.value.status == 302
    assert followed == []
    assert str(failed.value) == f"HTTP 302 from {origin}"
    assert "s3cret" not in str(failed.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [("title", "Vattenläcka\nBcc: alla@example.org"), ("recipients", "a@lerum.se\r\nX: y")],
)
async def test_an_e_mail_that_cannot_be_built_ends_at_once(field: str, value: str) -> None:
    # Retried, it would fail the same way for ever; no relay is even asked.
    relay = NotificationSmtp(
        host="127.0.0.1", port=free_port(), **{"from": "publicering@lerum.se"}, tls="none"
    )
    order = _order("bad-header", ["desk"]).model_copy(update={field: value})
    record = pending(order, "desk", NOW, kind="notification")
    with pytest.raises(DeliveryFailed) as failed:
        await SmtpChannel(relay).deliver(record, b"")
    assert failed.value.final is not None
    assert str(failed.value).startswith("the e-mail cannot be built")


async def test_an_address_that_is_a_secret_comes_from_its_variable_and_is_never_shown(
    tmp_path: Path,
) -> None:
    got: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        got.append(request.path_qs)
        return web.Response(status=503)

    app = web.Application()
    app.router.add_post("/hooks/T0K3N-in-the-path", hook)
    async with TestServer(app) as server:
        raw = with_outbound_secrets(yaml.safe_load(DEFAULT_CONFIG_PATH.read_text()))
        raw["tenants"]["lerum"]["channels"].append(
            {
                "name": "chat",
                "audience": "external",
                "transport": {"kind": "webhook", "url_env": "GATEKEEPER_CHAT_URL"},
            }
        )
        path = tmp_path / "gatekeeper.yaml"
        path.write_text(yaml.safe_dump(raw, allow_unicode=True))
        secret_url = f"http://127.0.0.1:{server.port}/hooks/T0K3N-in-the-path"
        deployment = load_deployment(path, {**SECRETS_ENV, "GATEKEEPER_CHAT_URL": secret_url})
        assert "T0K3N" not in deployment.model_dump_json()
        channel = transports_of(deployment, lambda: NOW).get("lerum", "chat")
        assert channel is not None
        record = pending(_order("secret-url", ["chat"]), "chat", NOW)
        try:
            with pytest.raises(DeliveryFailed) as failed:
                await channel.deliver(record, b"{}")
        finally:
            await channel.close()
    assert got == ["/hooks/T0K3N-in-the-path"]
    assert "T0K3N" not in str(failed.value)
    with pytest.raises(
        ConfigError,
        match=r"transport\.url_env: environment variable GATEKEEPER_CHAT_URL is not set",
    ):
        load_deployment(path, SECRETS_ENV)
    with pytest.raises(ConfigError) as plain:
        load_deployment(path, {**SECRETS_ENV, "GATEKEEPER_CHAT_URL": "http://chat.example/T0K3N"})
    assert "must be https://" in str(plain.value)
    assert "T0K3N" not in str(plain.value), "the value is never echoed"
