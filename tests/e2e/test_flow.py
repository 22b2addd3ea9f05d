"""Internal before external, end to end: CMS over HTTP, the three services, Kafka out."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import OPERATOR_AUTH, content_event, internal_notice
from tests.harness import Pipeline, TopicReader, held_rows, post_event, unique_item, wait_until


def test_external_item_waits_for_its_internal_notice(
    pipeline: Pipeline, topics: TopicReader
) -> None:
    item = unique_item("news")
    key = f"lerum:{item}"
    ingest, gate = pipeline.services["ingest"].url, pipeline.services["gate"].url

    posted = post_event(ingest, content_event(item_id=item, channels=["web", "social"]))
    assert posted.status_code == 202
    external_event_id = posted.json()["event_id"]
    held = wait_until(
        lambda: held_rows(gate, item),
        20,
        "the external item in GET /v1/held",
    )
    assert held[0]["reasons"] == ["awaiting_internal_notice"]
    assert held[0]["tenant"] == "lerum"
    assert held[0]["channels"] == ["web", "social"]
    assert held[0]["escalated"] is False
    assert topics.json_for("external.web", key) == []

    assert post_event(ingest, internal_notice(item_id=item)).status_code == 202
    web = topics.wait_for("external.web", key, lambda v: len(v) == 1)
    intranet = topics.json_for("intranet.notices", key)
    assert len(intranet) == 1
    assert intranet[0]["released_at"] <= web[0]["released_at"]
    intranet_ts = [r.timestamp for r in topics.records("intranet.notices") if r.key == key.encode()]
    web_ts = [r.timestamp for r in topics.records("external.web") if r.key == key.encode()]
    assert intranet_ts[0] <= web_ts[0]
    assert web[0]["sender"]["organization"] == "Lerums kommun"
    assert web[0]["sender"]["unit"] == "Sektor Lärande"
    assert web[0]["sender"]["website"] == "https://www.lerum.se"
    assert topics.wait_for("external.social", key, lambda v: len(v) == 1)[0]["item_id"] == item
    assert not held_rows(gate, item)

    decisions = topics.json_for("gate.decisions", key)
    kinds = [(d["kind"], d["audience"]) for d in decisions]
    # Acceptance is audited under the id the CMS was answered with, before the hold.
    accepted = [d for d in decisions if d["kind"] == "accepted" and d["audience"] == "external"]
    assert [d["event_id"] for d in accepted] == [external_event_id]
    assert kinds.index(("accepted", "external")) < kinds.index(("held", "external"))
    assert ("accepted", "internal") in kinds
    assert ("released", "internal") in kinds
    assert ("released", "external") in kinds
    assert kinds.index(("released", "internal")) < kinds.index(("released", "external"))

    # Ops can follow the item through every service's JSON log by its ids.
    def lines(service: str) -> list[dict[str, Any]]:
        return [line for line in pipeline.services[service].logs() if line.get("item_id") == item]

    delivered = wait_until(
        lambda: [
            x
            for x in lines("publish")
            if x["event"] == "delivery.delivered" and x["channel"] == "web"
        ],
        10,
        "publish's log line",
    )
    assert delivered[0]["tenant"] == "lerum"
    assert delivered[0]["event_id"] == external_event_id
    assert any(x["event_id"] == external_event_id for x in lines("gate"))
    assert any(x["event_id"] == external_event_id for x in lines("ingest"))


def test_internal_notice_first_releases_external_at_once(
    pipeline: Pipeline, topics: TopicReader
) -> None:
    item = unique_item("info")
    key = f"lerum:{item}"
    ingest = pipeline.services["ingest"].url
    assert post_event(ingest, internal_notice(item_id=item)).status_code == 202
    topics.wait_for("intranet.notices", key, lambda v: len(v) == 1)
    assert post_event(ingest, content_event(item_id=item)).status_code == 202
    web = topics.wait_for("external.web", key, lambda v: len(v) == 1)
    assert web[0]["title"] == "Ny förskola i Gråbo"


def test_tenants_are_kept_apart(pipeline: Pipeline, topics: TopicReader) -> None:
    """Lerum's internal notice does not release Ale's item of the same id."""
    item = unique_item("shared")
    ingest = pipeline.services["ingest"].url
    ale_event = content_event(tenant="ale", item_id=item)
    assert post_event(ingest, ale_event, tenant="ale").status_code == 202
    assert post_event(ingest, internal_notice(item_id=item)).status_code == 202
    topics.wait_for("intranet.notices", f"lerum:{item}", lambda v: len(v) == 1)
    wait_until(
        lambda: [
            h
            for h in httpx.get(
                f"{pipeline.services['gate'].url}/v1/held?tenant=ale", headers=OPERATOR_AUTH
            ).json()["held"]
            if h["item_id"] == item
        ],
        20,
        "Ale's item held",
    )
    assert topics.json_for("external.web", f"ale:{item}") == []


def test_a_blocked_link_text_holds_the_item_until_a_corrected_version(
    pipeline: Pipeline, topics: TopicReader
) -> None:
    item = unique_item("klicka")
    key = f"lerum:{item}"
    ingest, gate = pipeline.services["ingest"].url, pipeline.services["gate"].url
    assert post_event(ingest, internal_notice(item_id=item)).status_code == 202
    topics.wait_for("intranet.notices", key, lambda v: len(v) == 1)

    bad = content_event(
        item_id=item, links=[{"url": "https://www.lerum.se/forskola", "text": "Klicka här"}]
    )
    assert post_event(ingest, bad).status_code == 202
    held = wait_until(
        lambda: held_rows(gate, item),
        20,
        "the item held for its link text",
    )
    assert held[0]["reasons"] == ["content_check:link_text"]
    [finding] = held[0]["findings"]
    assert finding["rule"] == "link_text"
    assert "Klicka här" in finding["message"]
    assert finding["fix"]
    decisions = topics.json_for("gate.decisions", key)
    assert any(d["kind"] == "held" and d["findings"] for d in decisions)
    assert topics.json_for("external.web", key) == []

    good = content_event(
        item_id=item,
        version=2,
        links=[{"url": "https://www.lerum.se/forskola", "text": "Ansök om förskoleplats"}],
    )
    assert post_event(ingest, good).status_code == 202
    [web] = topics.wait_for("external.web", key, lambda v: len(v) == 1)
    assert web["version"] == 2
    assert web["links"][0]["text"] == "Ansök om förskoleplats"
