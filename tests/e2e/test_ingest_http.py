"""Every row of the ingest table (CONTRACT.md section 2), against real processes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.conftest import content_event
from tests.harness import Pipeline, TopicReader, post_event, sign, unique_item

PROBLEM = "application/problem+json"


def test_accepted_event_is_on_kafka_before_the_answer(
    pipeline: Pipeline, topics: TopicReader
) -> None:
    item = unique_item("accept")
    response = post_event(pipeline.services["ingest"].url, content_event(item_id=item))

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "accepted"
    # Durably written before answering: the record is already readable.
    written = [r for r in topics.records("cms.events") if r.key == f"lerum:{item}".encode()]
    assert len(written) == 1
    assert dict(written[0].headers)["gatekeeper-event-id"].decode() == body["event_id"]
    accepted = topics.wait_for("cms.accepted", f"lerum:{item}", lambda v: len(v) == 1)
    assert accepted[0]["event_id"] == body["event_id"]
    assert accepted[0]["event"]["item_id"] == item


def test_redelivered_webhook_id_is_a_duplicate_and_processed_once(
    pipeline: Pipeline, topics: TopicReader
) -> None:
    item = unique_item("dup")
    event = content_event(item_id=item)
    first = post_event(pipeline.services["ingest"].url, event, webhook_id=f"msg_{item}")
    again = post_event(pipeline.services["ingest"].url, event, webhook_id=f"msg_{item}")

    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert again.json()["event_id"] == first.json()["event_id"]
    topics.wait_for("cms.accepted", f"lerum:{item}", lambda v: len(v) >= 1)
    # A third delivery after the agent recorded the id is still a duplicate.
    third = post_event(pipeline.services["ingest"].url, event, webhook_id=f"msg_{item}")
    assert third.status_code == 200
    decisions = topics.wait_for(
        "gate.decisions", f"lerum:{item}", lambda v: any(d["kind"] == "held" for d in v)
    )
    assert len(topics.json_for("cms.accepted", f"lerum:{item}")) == 1
    assert [d["kind"] for d in decisions].count("accepted") == 1


def test_same_webhook_id_for_another_tenant_is_not_a_duplicate(pipeline: Pipeline) -> None:
    webhook_id = f"msg_{uuid.uuid4().hex}"
    url = pipeline.services["ingest"].url
    lerum = post_event(url, content_event(item_id=unique_item()), webhook_id=webhook_id)
    ale = post_event(
        url,
        content_event(tenant="ale", item_id=unique_item()),
        tenant="ale",
        webhook_id=webhook_id,
    )
    assert (lerum.status_code, ale.status_code) == (202, 202)


def test_body_that_is_not_json_gets_400(pipeline: Pipeline) -> None:
    response = post_event(pipeline.services["ingest"].url, b"{not json")
    assert response.status_code == 400
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.json()["status"] == 400
    assert "not JSON" in response.json()["title"]


@pytest.mark.parametrize(
    ("case", "change"),
    [
        ("missing signature", lambda h: {k: v for k, v in h.items() if k != "webhook-signature"}),
        (
            "wrong signature",
            lambda h: {**h, "webhook-signature": "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="},
        ),
        ("garbled signature", lambda h: {**h, "webhook-signature": "nonsense"}),
        ("missing id", lambda h: {k: v for k, v in h.items() if k != "webhook-id"}),
    ],
)
def test_bad_signature_gets_401(pipeline: Pipeline, case: str, change: object) -> None:
    body = json.dumps(content_event(item_id=unique_item())).encode()
    headers = change(sign("lerum", body, f"msg_{uuid.uuid4().hex}"))  # type: ignore[operator]
    response = httpx.post(
        f"{pipeline.services['ingest'].url}/v1/tenants/lerum/events", content=body, headers=headers
    )
    assert response.status_code == 401, case
    assert response.headers["content-type"].startswith(PROBLEM)


def test_signature_made_with_another_tenants_secret_gets_401(pipeline: Pipeline) -> None:
    body = json.dumps(content_event(item_id=unique_item())).encode()
    headers = sign("ale", body, f"msg_{uuid.uuid4().hex}")
    response = httpx.post(
        f"{pipeline.services['ingest'].url}/v1/tenants/lerum/events", content=body, headers=headers
    )
    assert response.status_code == 401


@pytest.mark.parametrize("skew", [timedelta(minutes=-6), timedelta(minutes=6)])
def test_timestamp_outside_five_minutes_gets_401(pipeline: Pipeline, skew: timedelta) -> None:
    body = json.dumps(content_event(item_id=unique_item())).encode()
    headers = sign("lerum", body, f"msg_{uuid.uuid4().hex}", at=datetime.now(UTC) + skew)
    response = httpx.post(
        f"{pipeline.services['ingest'].url}/v1/tenants/lerum/events", content=body, headers=headers
    )
    assert response.status_code == 401
    assert "timestamp" in response.json()["detail"].lower()


def test_timestamp_within_tolerance_is_accepted(pipeline: Pipeline) -> None:
    body = json.dumps(content_event(item_id=unique_item())).encode()
    headers = sign(
        "lerum", body, f"msg_{uuid.uuid4().hex}", at=datetime.now(UTC) - timedelta(minutes=4)
    )
    response = httpx.post(
        f"{pipeline.services['ingest'].url}/v1/tenants/lerum/events", content=body, headers=headers
    )
    assert response.status_code == 202


def test_unknown_tenant_gets_404(pipeline: Pipeline) -> None:
    body = json.dumps(content_event(tenant="goteborg")).encode()
    headers = sign("lerum", body, "msg_x")
    response = httpx.post(
        f"{pipeline.services['ingest'].url}/v1/tenants/goteborg/events",
        content=body,
        headers=headers,
    )
    assert response.status_code == 404
    assert response.headers["content-type"].startswith(PROBLEM)
    assert "goteborg" in response.json()["detail"]


def test_body_over_one_mebibyte_gets_413(pipeline: Pipeline, topics: TopicReader) -> None:
    item = unique_item("big")
    response = post_event(
        pipeline.services["ingest"].url, content_event(item_id=item, body="x" * (1024 * 1024 + 1))
    )
    assert response.status_code == 413
    assert response.headers["content-type"].startswith(PROBLEM)
    assert not [r for r in topics.records("cms.events") if r.key == f"lerum:{item}".encode()]


def test_body_just_under_the_limit_is_accepted(pipeline: Pipeline) -> None:
    event = content_event(item_id=unique_item("near"))
    event["body"] = "x" * (1024 * 1024 - len(json.dumps(event)) - 100)
    assert post_event(pipeline.services["ingest"].url, event).status_code == 202


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_content_type_other_than_json_gets_415(pipeline: Pipeline, content_type: str) -> None:
    response = post_event(
        pipeline.services["ingest"].url,
        content_event(item_id=unique_item()),
        headers={"content-type": content_type},
    )
    assert response.status_code == 415
    assert response.headers["content-type"].startswith(PROBLEM)


def test_json_with_charset_is_accepted(pipeline: Pipeline) -> None:
    response = post_event(
        pipeline.services["ingest"].url,
        content_event(item_id=unique_item()),
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 202


def test_schema_violation_gets_422_listing_every_field(
    pipeline: Pipeline, topics: TopicReader
) -> None:
    item = unique_item("bad")
    event = content_event(
        item_id=item,
        tenant="ale",
        version=0,
        audience="public",
        channels=["web", "fax"],
        publish_at="tomorrow",
        images=[{"url": "https://lerum.se/a.jpg", "alt": ""}],
    )
    del event["unit"]
    response = post_event(pipeline.services["ingest"].url, event)

    assert response.status_code == 422
    assert response.headers["content-type"].startswith(PROBLEM)
    problem = response.json()
    fields = {e["field"] for e in problem["errors"]}
    assert {
        "tenant",
        "version",
        "audience",
        "publish_at",
        "unit",
        "images[0].alt",
        "channels[1]",
    } <= fields
    assert all(e["detail"] for e in problem["errors"])
    assert not [r for r in topics.records("cms.events") if r.key == f"lerum:{item}".encode()]
    audit = topics.wait_for("gate.decisions", f"lerum:{item}", lambda v: len(v) == 1)
    assert (audit[0]["kind"], audit[0]["rule"], audit[0]["tenant"]) == (
        "rejected",
        "contract_v1",
        "lerum",
    )
    assert "publish_at" in audit[0]["reason"]


def test_press_without_contact_gets_422_on_contact(pipeline: Pipeline) -> None:
    response = post_event(
        pipeline.services["ingest"].url,
        content_event(item_id=unique_item(), channels=["web", "press"]),
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["contact"]


def test_internal_channel_on_external_event_gets_422(pipeline: Pipeline) -> None:
    response = post_event(
        pipeline.services["ingest"].url,
        content_event(item_id=unique_item(), channels=["web", "intranet"]),
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "channels[1]"


def test_operational_endpoints(pipeline: Pipeline) -> None:
    for service in pipeline.services.values():
        assert httpx.get(f"{service.url}/healthz").status_code == 200
        assert httpx.get(f"{service.url}/readyz").status_code == 200
        metrics = httpx.get(f"{service.url}/metrics")
        assert metrics.status_code == 200
        assert "gatekeeper_" in metrics.text
