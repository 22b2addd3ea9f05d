"""A held item past notify_after: one e-mail, at a real SMTP server, with the console link."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from services.runtime.config import DEFAULT_CONFIG_PATH
from tests.conftest import content_event, internal_notice
from tests.e2e.receivers import SmtpReceiver
from tests.harness import Pipeline, TopicReader, post_event, unique_item, wait_until


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    receiver = SmtpReceiver().start()
    yield receiver
    receiver.stop()


def test_a_held_item_past_notify_after_is_mailed_once_to_its_contact_and_the_desk(
    own_pipeline: Pipeline, smtp: SmtpReceiver, tmp_path: Path
) -> None:
    config = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    config["tenants"]["lerum"]["notifications"] = {
        "notify_after": "PT2S",
        "desk": ["kommunikation@lerum.se"],
        "smtp": {
            "host": "127.0.0.1",
            "port": smtp.port,
            "from": "gatekeeper@lerum.se",
            "tls": "none",
        },
    }
    path = tmp_path / "gatekeeper.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    extra = {
        "GATEKEEPER_CONFIG": str(path),
        "GATEKEEPER_CONSOLE_URL": "https://publicering.lerum.se/console",
    }
    ingest = own_pipeline.add("ingest", **extra).start()
    own_pipeline.add("gate", **extra).start()
    own_pipeline.add("publish", **extra).start()
    topics = TopicReader(own_pipeline.bootstrap)

    item = unique_item("mail")
    event = content_event(
        item_id=item,
        title="Vägarbete på Göteborgsvägen",
        contact={"name": "Sara Svensson", "email": "sara.svensson@lerum.se"},
    )
    assert post_event(ingest.url, event).status_code == 202
    [message] = wait_until(lambda: smtp.messages, 60, "the notification e-mail")
    assert message["Subject"] == "Väntar på beslut: Vägarbete på Göteborgsvägen"
    assert message["To"] == "sara.svensson@lerum.se, kommunikation@lerum.se"
    text = message.get_payload(decode=True).decode()
    assert "Väntar på intern information" in text
    assert f"https://publicering.lerum.se/console/items/lerum/{item}" in text
    assert "Lerums kommun" in text

    # Staff are told; the item goes out, and nothing else is mailed about it.
    assert post_event(ingest.url, internal_notice(item_id=item)).status_code == 202
    key = f"lerum:{item}"
    topics.wait_for("external.web", key, lambda v: len(v) == 1, timeout=60)
    decisions = topics.json_for("gate.decisions", key)
    assert [d["rule"] for d in decisions if d["kind"] == "notified"] == ["notify_after"]
    assert len(topics.json_for("gate.notifications", key)) == 1
    assert len(smtp.messages) == 1
