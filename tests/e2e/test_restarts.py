"""What must survive restarts and outages, on a broker and services of the test's own."""

from __future__ import annotations

import json
import signal

from services.runtime.broker import EmbeddedBroker
from tests.conftest import content_event
from tests.harness import Pipeline, TopicReader, post_event, unique_item


def test_idempotency_survives_an_ingest_restart(own_pipeline: Pipeline) -> None:
    ingest = own_pipeline.add("ingest").start()
    topics = TopicReader(own_pipeline.bootstrap)
    item = unique_item("restart")
    event = content_event(item_id=item)
    first = post_event(ingest.url, event, webhook_id=f"msg_{item}")
    assert first.status_code == 202
    topics.wait_for("cms.accepted", f"lerum:{item}", lambda v: len(v) == 1)

    assert ingest.stop() == 0
    ingest.start()
    again = post_event(ingest.url, event, webhook_id=f"msg_{item}")

    assert again.status_code == 200
    assert again.json() == {
        "status": "duplicate",
        "event_id": first.json()["event_id"],
        "webhook_id": f"msg_{item}",
    }
    fresh = post_event(ingest.url, content_event(item_id=unique_item()))
    assert fresh.status_code == 202
    assert len(topics.json_for("cms.accepted", f"lerum:{item}")) == 1


def test_kafka_down_gets_503_and_nothing_is_accepted(
    own_broker: EmbeddedBroker, own_pipeline: Pipeline
) -> None:
    ingest = own_pipeline.add("ingest", GATEKEEPER_KAFKA_WRITE_TIMEOUT="3").start()
    own_broker.stop()
    response = post_event(ingest.url, content_event(item_id=unique_item("down")))
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "retry" in json.loads(response.text)["detail"]
    # With its broker gone the service cannot commit on the way out.
    ingest.stop(signal.SIGKILL)
