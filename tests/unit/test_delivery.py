"""What channels receive: the notice, the e-mail with its sender signature, stable ids."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from schemas import Contact, ReleaseOrder, Sender
from services.publish.delivery import (
    archive_record,
    delivery_key,
    notice_for,
    receipt_for,
    render_email,
    webhook_id,
)

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
ORDER = ReleaseOrder(
    decision_id="d-1",
    tenant="ale",
    item_id="n-1",
    version=2,
    action="publish",
    audience="external",
    channels=["web", "mail"],
    title="Vägarbete på Göteborgsvägen",
    body="Vägen stängs i två veckor.",
    summary=None,
    recipients="Invånare i Ale",
    sender=Sender(
        organization="Ale kommun",
        unit="Sektor samhällsbyggnad",
        contact=Contact(name="Kommunikationsavdelningen", email="kommunikation@ale.se"),
        logo_url="https://www.ale.se/logo.svg",
        website="https://www.ale.se",
    ),
    released_at=NOW,
)


def test_notice_carries_the_sender_block() -> None:
    notice = notice_for(ORDER, "web")
    assert notice.sender.organization == "Ale kommun"
    assert (notice.item_id, notice.version, notice.decision_id, notice.channel) == (
        "n-1",
        2,
        "d-1",
        "web",
    )


def test_email_names_the_organization_in_its_text() -> None:
    subject, text = render_email(ORDER)
    assert "Ale kommun" in subject
    signature = text.split("\n-- \n", 1)[1]
    assert "Ale kommun" in signature
    assert "Sektor samhällsbyggnad" in signature
    assert "kommunikation@ale.se" in signature
    assert "Mottagare: Invånare i Ale" in text


def test_retract_email_says_so() -> None:
    subject, _ = render_email(ORDER.model_copy(update={"action": "retract"}))
    assert subject.startswith("Tillbakadraget")


def test_webhook_id_is_stable_per_delivery_and_differs_between_them() -> None:
    assert webhook_id(ORDER, "web") == webhook_id(
        ORDER.model_copy(update={"decision_id": "d-2"}), "web"
    )
    assert webhook_id(ORDER, "web") != webhook_id(ORDER, "mail")
    assert webhook_id(ORDER, "web") != webhook_id(ORDER.model_copy(update={"version": 3}), "web")
    assert delivery_key(ORDER, "web") == "ale:n-1:2:web:publish"


def test_receipt_and_archive() -> None:
    receipt = receipt_for(ORDER, "web", NOW)
    assert (receipt.channel, receipt.audience, receipt.delivered_at) == ("web", "external", NOW)
    record = archive_record("web", b'{"a": 1}', NOW)
    assert record["sha256"] == hashlib.sha256(b'{"a": 1}').hexdigest()
    assert record["payload"] == '{"a": 1}'
