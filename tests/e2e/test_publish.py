"""Publish against real receivers: retries that block nothing, dead letters, SMTP, retract,
and a SIGKILL in the middle of deliveries."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml
from kafka import KafkaProducer

from schemas import Contact, ReleaseOrder, Sender
from services.runtime.config import DEFAULT_CONFIG_PATH
from tests.conftest import (
    LERUM_OUTBOUND,
    OPERATOR_AUTH,
    OPERATOR_TOKEN,
    SECRETS_ENV,
    with_outbound_secrets,
)
from tests.e2e.receivers import SmtpReceiver, WebhookReceiver
from tests.harness import Pipeline, Service, TopicReader, unique_item, wait_until


@pytest.fixture
def partner() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(LERUM_OUTBOUND).start()
    yield receiver
    receiver.stop()


@pytest.fixture
def down() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(LERUM_OUTBOUND, default="500").start()
    yield receiver
    receiver.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    receiver = SmtpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def publish(
    own_pipeline: Pipeline,
    tmp_path: Path,
    partner: WebhookReceiver,
    down: WebhookReceiver,
    smtp: SmtpReceiver,
) -> Service:
    """Publish with Lerum's shipped channels plus a partner webhook, a dead one and e-mail."""
    config = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    lerum = config["tenants"]["lerum"]
    lerum["channels"] += [
        {
            "name": "partner",
            "audience": "external",
            "transport": {
                "kind": "webhook",
                "url": partner.url,
                "timeout_seconds": 1,
                "retries": {"schedule": [0, 0.2, 0.4, 0.8, 1]},
            },
        },
        {
            "name": "down",
            "audience": "external",
            "transport": {
                "kind": "webhook",
                "url": down.url,
                "timeout_seconds": 1,
                "retries": {"schedule": [0, 0.2, 0.4]},
            },
        },
        {
            "name": "mail",
            "audience": "internal",
            "transport": {
                "kind": "smtp",
                "host": "127.0.0.1",
                "port": smtp.port,
                "from": "kommunikation@lerum.se",
                "recipients": ["alla@lerum.se"],
                "tls": "none",
            },
        },
    ]
    del config["tenants"]["ale"]
    path = tmp_path / "gatekeeper.yaml"
    path.write_text(yaml.safe_dump(with_outbound_secrets(config), allow_unicode=True))
    return own_pipeline.add(
        "publish",
        GATEKEEPER_CONFIG=str(path),
    ).start()


def _order(
    item: str,
    channels: list[str],
    audience: str = "external",
    action: str = "publish",
    version: int = 1,
) -> ReleaseOrder:
    return ReleaseOrder(
        decision_id=f"d-{item}-{action}",
        tenant="lerum",
        item_id=item,
        version=version,
        action=action,
        audience=audience,
        channels=channels,
        title="Vattenläcka på Storgatan",
        body="Vattnet är avstängt till klockan 15.",
        summary=None,
        recipients="Boende på Storgatan",
        sender=Sender(
            organization="Lerums kommun",
            unit="Sektor samhällsbyggnad",
            contact=Contact(name="Kommunikationsenheten", email="kommunikation@lerum.se"),
            logo_url="https://www.lerum.se/logo.svg",
            website="https://www.lerum.se",
        ),
        released_at=datetime.now(UTC),
    )


def _release(bootstrap: str, *orders: ReleaseOrder) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, batch_size=0, acks="all")
    for order in orders:
        producer.send(
            "gate.releases",
            key=f"lerum:{order.item_id}".encode(),
            value=order.model_dump_json().encode(),
        )
    producer.flush()
    producer.close()


def test_flaky_webhook_is_retried_with_one_id_and_blocks_no_other_channel(
    publish: Service,
    own_pipeline: Pipeline,
    partner: WebhookReceiver,
) -> None:
    topics = TopicReader(own_pipeline.bootstrap)
    partner.script = ["500", "hang", "500"]
    item, other = unique_item("flaky"), unique_item("staff")
    _release(
        own_pipeline.bootstrap,
        _order(item, ["partner", "web"]),
        _order(other, ["intranet"], audience="internal"),
    )

    topics.wait_for("external.web", f"lerum:{item}", lambda v: len(v) == 1, timeout=10)
    topics.wait_for("intranet.notices", f"lerum:{other}", lambda v: len(v) == 1, timeout=10)

    wait_until(lambda: partner.accepted, 30, "the webhook delivery")
    assert [answer for _, answer in partner.seen] == ["500", "hang", "500", "200"]
    assert len({webhook_id for webhook_id, _ in partner.seen}) == 1
    assert partner.bad_signatures == 0
    body = next(iter(partner.accepted.values()))
    notice = json.loads(body)
    assert (notice["item_id"], notice["channel"], notice["sender"]["organization"]) == (
        item,
        "partner",
        "Lerums kommun",
    )

    receipts = topics.wait_for("publish.receipts", f"lerum:{item}", lambda v: len(v) == 2)
    assert sorted(r["channel"] for r in receipts) == ["partner", "web"]
    # The failing webhook held back neither the item's other channel nor another item.
    at = {r["channel"]: datetime.fromisoformat(r["delivered_at"]) for r in receipts}
    staff = datetime.fromisoformat(
        topics.json_for("publish.receipts", f"lerum:{other}")[0]["delivered_at"]
    )
    assert at["web"] < at["partner"], "the Kafka channel waited for the failing webhook"
    assert staff < at["partner"], "another item waited for the failing webhook"
    archive = topics.wait_for("publish.archive", f"lerum:{item}", lambda v: len(v) == 2)
    archived = next(a for a in archive if a["channel"] == "partner")
    assert archived["sha256"] == hashlib.sha256(body).hexdigest()
    assert archived["payload"].encode() == body


def test_dead_webhook_fills_the_dead_letters_and_can_be_redelivered(
    publish: Service,
    own_pipeline: Pipeline,
    down: WebhookReceiver,
) -> None:
    topics = TopicReader(own_pipeline.bootstrap)
    item = unique_item("dead")
    _release(own_pipeline.bootstrap, _order(item, ["down", "web"]))
    letters = topics.wait_for("publish.dlq", f"lerum:{item}", lambda v: len(v) == 1, timeout=30)
    assert (letters[0]["channel"], letters[0]["attempts"]) == ("down", 3)
    assert "HTTP 500" in letters[0]["reason"]
    assert len(down.seen) == 3
    assert len(topics.json_for("external.web", f"lerum:{item}")) == 1

    assert httpx.get(f"{publish.url}/v1/dead-letters").status_code == 401
    listed = httpx.get(f"{publish.url}/v1/dead-letters", headers=OPERATOR_AUTH).json()[
        "dead_letters"
    ]
    row = next(r for r in listed if r["item_id"] == item)
    assert row["delivery_id"] == letters[0]["delivery_id"]
    metrics = httpx.get(f"{publish.url}/metrics").text
    assert 'gatekeeper_publish_dead_letters_total{channel="down",tenant="lerum"} 1.0' in metrics

    env = {**os.environ, **SECRETS_ENV}
    cli = [sys.executable, "-m", "services.cli", "dead-letters"]
    shown = subprocess.run(
        [*cli, "list", "--url", publish.url],
        env={**env, "GATEKEEPER_OPERATOR_TOKEN": OPERATOR_TOKEN},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert row["delivery_id"] in shown.stdout
    assert f"lerum/{item}" in shown.stdout
    refused = subprocess.run(
        [*cli, "redeliver", row["delivery_id"], "--url", publish.url],
        env={**env, "GATEKEEPER_OPERATOR_TOKEN": "wrong"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refused.returncode != 0
    assert "401" in refused.stderr

    down.default = "200"
    again = subprocess.run(
        [*cli, "redeliver", row["delivery_id"], "--url", publish.url],
        env={**env, "GATEKEEPER_OPERATOR_TOKEN": OPERATOR_TOKEN},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "redelivery requested" in again.stdout
    wait_until(lambda: down.accepted, 30, "the redelivery")
    receipts = topics.wait_for(
        "publish.receipts", f"lerum:{item}", lambda v: any(r["channel"] == "down" for r in v)
    )
    assert {r["channel"] for r in receipts} == {"down", "web"}
    assert not [
        r
        for r in httpx.get(f"{publish.url}/v1/dead-letters", headers=OPERATOR_AUTH).json()[
            "dead_letters"
        ]
        if r["item_id"] == item
    ]


def test_email_is_plain_text_signed_by_the_municipality(
    publish: Service,
    own_pipeline: Pipeline,
    smtp: SmtpReceiver,
) -> None:
    item = unique_item("mail")
    _release(own_pipeline.bootstrap, _order(item, ["mail"], audience="internal"))
    wait_until(lambda: smtp.messages, 20, "the e-mail")
    message = smtp.messages[0]
    assert message["From"] == "kommunikation@lerum.se"
    assert message["To"] == "alla@lerum.se"
    assert "Vattenläcka på Storgatan" in str(message["Subject"])
    assert message.get_content_type() == "text/plain"
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    text = payload.decode().replace("\r\n", "\n")  # as it travelled: CRLF
    signature = text.split("\n-- \n", 1)[1]
    assert "Lerums kommun" in signature
    assert "Sektor samhällsbyggnad" in signature


def test_retract_reaches_webhook_and_kafka_channels(
    publish: Service,
    own_pipeline: Pipeline,
    partner: WebhookReceiver,
) -> None:
    topics = TopicReader(own_pipeline.bootstrap)
    item = unique_item("retract")
    _release(own_pipeline.bootstrap, _order(item, ["partner", "web"]))
    wait_until(lambda: len(partner.accepted) == 1, 20, "the publication")
    _release(own_pipeline.bootstrap, _order(item, ["partner", "web"], action="retract"))
    wait_until(lambda: len(partner.accepted) == 2, 20, "the retraction")
    actions = sorted(json.loads(b)["action"] for b in partner.accepted.values())
    assert actions == ["publish", "retract"]
    web = topics.wait_for("external.web", f"lerum:{item}", lambda v: len(v) == 2)
    assert [n["action"] for n in web] == ["publish", "retract"]
    # Stopping closes the outbound HTTP connections it opened for the webhook.
    assert publish.stop() == 0
    assert "Unclosed client session" not in publish.log_path.read_text()


def test_a_repeated_order_is_not_delivered_again(
    publish: Service,
    own_pipeline: Pipeline,
    partner: WebhookReceiver,
) -> None:
    topics = TopicReader(own_pipeline.bootstrap)
    item = unique_item("repeat")
    order = _order(item, ["partner", "web"])
    _release(own_pipeline.bootstrap, order)
    topics.wait_for("publish.receipts", f"lerum:{item}", lambda v: len(v) == 2)
    _release(own_pipeline.bootstrap, order)
    topics.wait_for("publish.receipts", f"lerum:{item}", lambda v: len(v) == 4)
    assert len(topics.json_for("external.web", f"lerum:{item}")) == 1
    assert len(partner.seen) == 1


def test_publish_killed_mid_delivery_delivers_everything_once(
    publish: Service,
    own_pipeline: Pipeline,
    partner: WebhookReceiver,
) -> None:
    topics = TopicReader(own_pipeline.bootstrap)
    partner.default = "serial"
    items = [unique_item("kill") for _ in range(20)]
    _release(own_pipeline.bootstrap, *[_order(i, ["partner", "web"]) for i in items])
    wait_until(lambda: len(partner.accepted) >= 3, 30, "some deliveries")
    publish.stop(signal.SIGKILL)
    landed_before = len(partner.accepted)
    publish.start()

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(partner.accepted) < len(items):
        time.sleep(0.2)
    assert landed_before < len(items), "the kill came too late to test anything"
    assert len(partner.accepted) == len(items), "a webhook delivery was lost"
    ids = Counter(json.loads(b)["item_id"] for b in partner.accepted.values())
    assert set(ids) == set(items)
    web = [
        r for r in topics.records("external.web") if r.key.decode().split(":", 1)[1] in set(items)
    ]
    delivered = Counter(dict(r.headers)["gatekeeper-delivery-id"] for r in web)
    assert len(delivered) == len(items), "a Kafka delivery was lost"
    assert max(delivered.values()) == 1, f"delivered twice: {delivered.most_common(3)}"
