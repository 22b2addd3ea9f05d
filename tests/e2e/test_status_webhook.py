"""The CMS is told: held, released and rejected reach a real, signature-checking receiver
at the CMS, across the receiver being down when the first status is due."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import yaml

from services.runtime.config import DEFAULT_CONFIG_PATH
from tests.conftest import OPERATOR_TOKENS, content_event, internal_notice
from tests.e2e.receivers import WebhookReceiver
from tests.harness import Pipeline, post_event, unique_item, wait_until

STATUS_SECRET = "whsec_" + base64.b64encode(b"lerum-cms-status-secret-01234567").decode()
ANNA = {"Authorization": f"Bearer {OPERATOR_TOKENS['Anna Andersson']}"}


def _statuses(receiver: WebhookReceiver, item: str) -> list[dict[str, Any]]:
    told = [json.loads(body) for body in receiver.accepted.values()]
    return [s for s in told if s["item_id"] == item]


def test_the_cms_is_told_held_released_and_rejected_across_its_own_outage(
    own_pipeline: Pipeline, tmp_path: Path
) -> None:
    cms = WebhookReceiver(STATUS_SECRET)  # not listening yet: the CMS is down
    config = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    config["tenants"]["lerum"]["status_webhook"] = {
        "url": cms.url,
        "secret_env": "GATEKEEPER_STATUS_LERUM",
        "timeout_seconds": 2,
        "retries": {"schedule": [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], "jitter": 0},
    }
    path = tmp_path / "gatekeeper.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    extra = {
        "GATEKEEPER_CONFIG": str(path),
        "GATEKEEPER_STATUS_LERUM": STATUS_SECRET,
        "GATEKEEPER_CONSOLE_URL": "https://publicering.lerum.se/console",
    }
    ingest = own_pipeline.add("ingest", **extra).start()
    gate = own_pipeline.add("gate", **extra).start()
    publish = own_pipeline.add("publish", **extra).start()

    waits, wrong = unique_item("told"), unique_item("stopped")
    for item in (waits, wrong):
        assert post_event(ingest.url, content_event(item_id=item)).status_code == 202
    wait_until(
        lambda: any(
            line.get("event") == "delivery.attempt_failed" and line.get("channel") == "cms-status"
            for line in publish.logs()
        ),
        60,
        "a status attempt failing while the CMS is down",
    )
    cms.start()
    try:
        [held] = wait_until(lambda: _statuses(cms, waits), 60, "the held status, once up")
        assert held["status"] == "held"
        assert held["audience"] == "external"
        assert held["reasons"] == [
            {"code": "awaiting_internal_notice", "text": "Väntar på intern information"}
        ]
        assert held["console_url"] == f"https://publicering.lerum.se/console/items/lerum/{waits}"

        # Staff are told; the internal notice and the external version are released.
        assert post_event(ingest.url, internal_notice(item_id=waits)).status_code == 202
        wait_until(lambda: len(_statuses(cms, waits)) == 3, 60, "two releases after the hold")
        told = _statuses(cms, waits)
        released = {s["audience"]: s for s in told if s["status"] == "released"}
        assert set(released) == {"internal", "external"}
        assert released["external"]["channels"] == ["web"]
        assert released["external"]["released_at"]

        answer = httpx.post(
            f"{gate.url}/v1/held/lerum/{wrong}/reject",
            json={"reason": "Fel datum i texten"},
            headers=ANNA,
            timeout=30,
        )
        assert answer.status_code == 200
        rejected = wait_until(
            lambda: [s for s in _statuses(cms, wrong) if s["status"] == "rejected"],
            60,
            "the rejection",
        )
        assert [(s["operator"], s["operator_reason"]) for s in rejected] == [
            ("Anna Andersson", "Fel datum i texten")
        ]
        assert cms.bad_signatures == 0, "every status is signed with the status secret"
        ids = [webhook_id for webhook_id, _ in cms.seen]
        assert len(cms.accepted) == len(set(ids)), "no status was received twice"
    finally:
        cms.stop()
