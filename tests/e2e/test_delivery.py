"""Delivery that survives a receiver's bad afternoon: the schedule, Retry-After, 410 Gone,
a crash while a retry waits, signing-secret rotation and a relay that wants STARTTLS
and a login. Real receivers, real publish processes; short schedules instead of hours."""

from __future__ import annotations

import base64
import signal
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.runtime.config import DEFAULT_CONFIG_PATH
from tests.conftest import LERUM_OUTBOUND, with_outbound_secrets
from tests.e2e.certs import make_ca, make_server_cert
from tests.e2e.receivers import SmtpReceiver, WebhookReceiver
from tests.e2e.test_publish import _order, _release
from tests.harness import Pipeline, Service, TopicReader, unique_item, wait_until

NEW_SECRET = "whsec_" + base64.b64encode(b"lerum-partner-secret-new-2026-11").decode()


def _receiver(script: list[str], secret: str = LERUM_OUTBOUND) -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(secret, script=script).start()
    yield receiver
    receiver.stop()


@pytest.fixture
def flaky() -> Iterator[WebhookReceiver]:
    """Down for four attempts, then asks for a pause, then takes it."""
    yield from _receiver(["503", "503", "500", "503", "503 retry-after=2"])


@pytest.fixture
def gone() -> Iterator[WebhookReceiver]:
    yield from _receiver([])


@pytest.fixture
def rotated() -> Iterator[WebhookReceiver]:
    """Still verifying with the secret the channel is rotating away from."""
    yield from _receiver([])


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[tuple[SmtpReceiver, Path]]:
    certs = tmp_path / "certs"
    certs.mkdir()
    ca = make_ca(certs, "ca")
    cert, key = make_server_cert(certs, "ca")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    receiver = SmtpReceiver(tls=context, login=("gatekeeper", "relay-password")).start()
    yield receiver, ca
    receiver.stop()


def _webhook(name: str, url: str, schedule: list[float], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "audience": "external",
        "transport": {
            "kind": "webhook",
            "url": url,
            "timeout_seconds": 2,
            "retries": {"schedule": schedule, "jitter": 0},
            **extra,
        },
    }


@pytest.fixture
def publish_env(
    tmp_path: Path,
    flaky: WebhookReceiver,
    gone: WebhookReceiver,
    rotated: WebhookReceiver,
    relay: tuple[SmtpReceiver, Path],
) -> dict[str, str]:
    smtp, ca = relay
    config = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    config["tenants"]["lerum"]["channels"] += [
        _webhook("flaky", flaky.url, [0, 0.2, 0.2, 0.2, 0.2, 0.2]),
        _webhook("gone", gone.url, [0, 0.2, 0.2]),
        _webhook("later", rotated.url, [0, 20]),
        _webhook(
            "rotated",
            rotated.url,
            [0],
            secret_env="GATEKEEPER_PARTNER_SECRET",
            previous_secret_env="GATEKEEPER_OUTBOUND_LERUM",
        ),
        {
            "name": "mail",
            "audience": "internal",
            "transport": {
                "kind": "smtp",
                "host": "127.0.0.1",
                "port": smtp.port,
                "from": "kommunikation@lerum.se",
                "recipients": ["alla@lerum.se"],
                "tls": "starttls",
                "ca_file": str(ca),
                "username_env": "GATEKEEPER_RELAY_USER",
                "password_env": "GATEKEEPER_RELAY_PASSWORD",
            },
        },
    ]
    del config["tenants"]["ale"]
    path = tmp_path / "gatekeeper.yaml"
    path.write_text(yaml.safe_dump(with_outbound_secrets(config), allow_unicode=True))
    return {
        "GATEKEEPER_CONFIG": str(path),
        "GATEKEEPER_PARTNER_SECRET": NEW_SECRET,
        "GATEKEEPER_RELAY_USER": "gatekeeper",
        "GATEKEEPER_RELAY_PASSWORD": "relay-password",
    }


@pytest.fixture
def publish(own_pipeline: Pipeline, publish_env: dict[str, str]) -> Service:
    return own_pipeline.add("publish", **publish_env).start()


def test_a_receiver_down_for_several_attempts_gets_it_once_after_its_retry_after(
    publish: Service, own_pipeline: Pipeline, flaky: WebhookReceiver
) -> None:
    item = unique_item("flaky")
    _release(own_pipeline.bootstrap, _order(item, ["flaky"]))
    wait_until(lambda: flaky.accepted, 60, "the delivery after the receiver came back")
    assert [answer for _, answer in flaky.seen] == [
        "503", "503", "500", "503", "503 retry-after=2", "200",
    ]  # fmt: skip
    assert len({webhook_id for webhook_id, _ in flaky.seen}) == 1, "one webhook-id throughout"
    assert flaky.times[5] - flaky.times[4] >= 2.0, "Retry-After is honoured"
    assert all(agent.startswith("gatekeeper/") for agent in flaky.agents)
    receipts = TopicReader(own_pipeline.bootstrap).wait_for(
        "publish.receipts", f"lerum:{item}", lambda v: len(v) == 1
    )
    assert receipts[0]["channel"] == "flaky"


def test_410_gone_ends_the_delivery_at_once(
    publish: Service, own_pipeline: Pipeline, gone: WebhookReceiver
) -> None:
    gone.default = "410"
    item = unique_item("gone")
    _release(own_pipeline.bootstrap, _order(item, ["gone"]))
    topics = TopicReader(own_pipeline.bootstrap)
    [letter] = topics.wait_for("publish.dlq", f"lerum:{item}", lambda v: len(v) == 1)
    assert letter["attempts"] == 1
    assert "410 Gone" in letter["reason"]
    assert len(gone.seen) == 1


def test_two_secrets_sign_during_a_rotation(
    publish: Service, own_pipeline: Pipeline, rotated: WebhookReceiver
) -> None:
    item = unique_item("rotated")
    _release(own_pipeline.bootstrap, _order(item, ["rotated"]))
    wait_until(lambda: rotated.accepted, 30, "the delivery verified with the old secret")
    assert rotated.bad_signatures == 0
    assert len(rotated.signatures[-1].split(" ")) == 2


def test_mail_goes_through_a_relay_that_wants_starttls_and_a_login(
    publish: Service, own_pipeline: Pipeline, relay: tuple[SmtpReceiver, Path]
) -> None:
    smtp, _ = relay
    item = unique_item("relay")
    _release(own_pipeline.bootstrap, _order(item, ["mail"], audience="internal"))
    [message] = wait_until(lambda: smtp.messages, 30, "the e-mail through the relay")
    assert smtp.logins == ["gatekeeper"]
    assert message["To"] == "alla@lerum.se"


def test_a_retry_scheduled_before_a_crash_happens_once_at_its_time(
    own_pipeline: Pipeline, publish_env: dict[str, str], rotated: WebhookReceiver
) -> None:
    rotated.script = ["503"]
    publish = own_pipeline.add("publish", **publish_env).start()
    item = unique_item("later")
    _release(own_pipeline.bootstrap, _order(item, ["later"]))
    topics = TopicReader(own_pipeline.bootstrap)
    key = f"lerum:{item}"
    topics.wait_for(
        "publish.outcomes", key, lambda v: any(o["kind"] == "retry" for o in v), timeout=30
    )
    assert publish.stop(signal.SIGKILL) == -signal.SIGKILL
    own_pipeline.add("publish", **publish_env).start()
    wait_until(lambda: rotated.accepted, 60, "the retry after the restart")
    assert [answer for _, answer in rotated.seen] == ["503", "200"], "once, not twice"
    waited = rotated.times[1] - rotated.times[0]
    assert 20.0 <= waited < 26.0, f"due 20 s after the first attempt; came after {waited:.1f} s"
