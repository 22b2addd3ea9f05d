"""What must survive restarts and outages, on a broker and services of the test's own;
the recovery tests twice: the services started as ``gatekeeper up`` starts them and
as the chart does (without the embedded flag)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from kafka import KafkaConsumer, TopicPartition
from rocksdict import AccessType, Rdict

from services.runtime.broker import EmbeddedBroker
from services.runtime.faust_compat import fetched_ends
from services.runtime.topic_admin import ensure_topics
from tests.conftest import content_event
from tests.harness import (
    PROFILES,
    Pipeline,
    Service,
    TopicReader,
    accepted_event,
    all_held,
    pipeline_iter,
    post_event,
    unique_item,
    wait_until,
    write_batched,
)


@pytest.fixture(params=PROFILES)
def both_profiles(
    own_broker: EmbeddedBroker, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Pipeline]:
    """Services as ``gatekeeper up`` starts them, and as the chart does."""
    yield from pipeline_iter(tmp_path, own_broker.bootstrap, profile=request.param)


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


def test_a_webhook_id_is_forgotten_after_the_replay_window(own_pipeline: Pipeline) -> None:
    ingest = own_pipeline.add("ingest", GATEKEEPER_WEBHOOK_ID_RETENTION_MS="3000").start()
    topics = TopicReader(own_pipeline.bootstrap)
    item = unique_item("window")
    event = content_event(item_id=item)
    first = post_event(ingest.url, event, webhook_id=f"msg_{item}")
    accepted_at = time.monotonic()
    # an id nobody delivers again: the sweep forgets it from the table too
    other = unique_item("window")
    assert post_event(ingest.url, content_event(item_id=other)).status_code == 202
    topics.wait_for("cms.accepted", f"lerum:{item}", lambda v: len(v) == 1)
    assert post_event(ingest.url, event, webhook_id=f"msg_{item}").status_code == 200

    def delivered_again() -> httpx.Response | None:
        answer = post_event(ingest.url, event, webhook_id=f"msg_{item}")
        return answer if answer.status_code == 202 else None

    late = wait_until(delivered_again, 20, "the id to be forgotten", every=0.25)
    assert time.monotonic() - accepted_at >= 3.0, "a duplicate for the whole window"
    assert late.json()["event_id"] == first.json()["event_id"], "the gate knows it as decided"
    again = topics.wait_for("cms.accepted", f"lerum:{item}", lambda v: len(v) == 2)
    assert {a["event_id"] for a in again} == {first.json()["event_id"]}
    swept = wait_until(
        lambda: [line for line in ingest.logs() if line["event"] == "ingest.seen_ids_expired"],
        10,
        "the sweep to forget the id in the table as well",
    )
    assert swept[0]["expired"] >= 1


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


def test_a_batched_topic_s_true_end_is_fetched_where_list_offsets_falls_short(
    own_broker: EmbeddedBroker,
) -> None:
    topic = "recovery.ends"
    ensure_topics(own_broker.bootstrap, [topic], 1, 1)
    for _ in range(3):  # three produce batches of ten records each
        write_batched(own_broker.bootstrap, topic, [(b"k", b"%d" % i) for i in range(10)])
    consumer = KafkaConsumer(bootstrap_servers=own_broker.bootstrap)
    tp = TopicPartition(topic, 0)
    listed = consumer.end_offsets([tp])[tp]
    consumer.close()
    assert listed < 30, "the broker answers the last batch's base offset + 1"

    ends = asyncio.run(fetched_ends(own_broker.bootstrap, {}, {tp: listed}))

    assert ends == {tp: 30}


def test_a_gate_restart_recovers_every_held_item_from_batched_changelogs(
    both_profiles: Pipeline,
) -> None:
    own_pipeline = both_profiles
    count = 1500
    gate = own_pipeline.add("gate").start()
    _hold_batched(own_pipeline, gate, "batched-", count)
    changelog = TopicReader(own_pipeline.bootstrap).records("gatekeeper-gate-gate-items-changelog")
    consumer = KafkaConsumer(bootstrap_servers=own_pipeline.bootstrap)
    tps = [
        TopicPartition("gatekeeper-gate-gate-items-changelog", p)
        for p in consumer.partitions_for_topic("gatekeeper-gate-gate-items-changelog") or ()
    ]
    listed = sum(consumer.end_offsets(tps).values())
    consumer.close()
    assert listed < len(changelog), "the changelog was written in batches of several records"

    assert gate.stop() == 0
    gate.start()

    assert _held(gate.url) == {f"batched-{i}" for i in range(count)}


def _hold_batched(pipeline: Pipeline, gate: Service, prefix: str, count: int) -> None:
    """*count* accepted events written in batches of many records; wait until held.
    A gate not yet started meets them as a backlog, so it decides them in batches
    of many, to the last (a gate already running may decide the tail one by one)."""
    keys = [f"lerum:{prefix}{i}".encode() for i in range(count)]
    events = [accepted_event(i, prefix) for i in range(count)]
    write_batched(pipeline.bootstrap, "cms.accepted", list(zip(keys, events, strict=True)))
    if gate.proc is None:
        gate.start()
    wait_until(lambda: len(_held(gate.url)) == count, 120, f"{count} items held")


def _held(gate: str) -> set[str]:
    return {row["item_id"] for row in all_held(gate)}


def test_a_gate_on_rocksdb_keeps_how_far_each_changelog_is_in_its_store(
    both_profiles: Pipeline,
) -> None:
    own_pipeline = both_profiles
    # At start a RocksDB store replays only what its changelog has past the offset
    # it kept; a wrong or missing offset means a slow start or a lost state.
    count = 400
    gate = own_pipeline.add("gate", GATEKEEPER_GATE_STORE="rocksdb").start()
    _hold_batched(own_pipeline, gate, "kept-", count)
    assert gate.stop() == 0

    reader = TopicReader(own_pipeline.bootstrap)
    for table in ("gate-items", "gate-history"):
        last: dict[int, int] = {}
        for record in reader.records(f"gatekeeper-gate-{table}-changelog"):
            last[record.partition] = max(record.offset, last.get(record.partition, -1))
        kept = {}
        for path in (own_pipeline.workdir / "data" / "gate").rglob(f"{table}-*.db"):
            partition = int(path.name.removesuffix(".db").rsplit("-", 1)[1])
            db = Rdict(str(path), access_type=AccessType.read_only())
            try:
                offset = db.get(b"__faust\0offset__")
            finally:
                db.close()
            if offset is not None:
                kept[partition] = int(offset)
        assert kept == last, table

    gate.start()
    assert _held(gate.url) == {f"kept-{i}" for i in range(count)}
