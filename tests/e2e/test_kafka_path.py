"""Events produced straight to cms.events get the same validation; refusals are dead-lettered."""

from __future__ import annotations

import json
from typing import Any

from kafka import KafkaProducer

from tests.conftest import content_event
from tests.harness import Pipeline, TopicReader, unique_item, wait_until


def _produce(bootstrap: str, key: bytes | None, value: bytes) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, batch_size=0, acks="all")
    try:
        producer.send("cms.events", key=key, value=value).get(timeout=10)
    finally:
        producer.close()


def test_valid_record_is_accepted(pipeline: Pipeline, topics: TopicReader) -> None:
    item = unique_item("kafka")
    _produce(
        pipeline.bootstrap,
        f"lerum:{item}".encode(),
        json.dumps(content_event(item_id=item)).encode(),
    )
    accepted = topics.wait_for("cms.accepted", f"lerum:{item}", lambda v: len(v) == 1)
    assert accepted[0]["source"] == "kafka"
    assert accepted[0]["event"]["item_id"] == item


def test_invalid_record_is_dead_lettered_with_its_bytes_and_reason(
    pipeline: Pipeline, topics: TopicReader
) -> None:
    item = unique_item("kafka-bad")
    key = f"lerum:{item}".encode()
    original = json.dumps(content_event(item_id=item, version=-3)).encode()
    _produce(pipeline.bootstrap, key, original)
    garbage = b"\xff\xfe not even text"
    _produce(pipeline.bootstrap, key, garbage)

    def dead() -> list[Any]:
        return [r for r in topics.records("cms.events.dlq") if r.key == key]

    letters = wait_until(
        lambda: (lambda d: d if len(d) == 2 else None)(dead()), 30, "2 dead letters"
    )
    by_value = {r.value: dict(r.headers) for r in letters}
    assert by_value[original]["dlq-reason"] == b"schema violation"
    assert [e["field"] for e in json.loads(by_value[original]["dlq-errors"])] == ["version"]
    assert by_value[garbage]["dlq-reason"].startswith(b"body is not JSON")
    assert by_value[garbage]["dlq-source-topic"] == b"cms.events"
    on_accepted = topics.json_for("cms.accepted", f"lerum:{item}")
    assert [r.get("kind") for r in on_accepted] == ["recorded", "recorded"], "no event accepted"
    rejected = topics.wait_for("gate.decisions", f"lerum:{item}", lambda v: len(v) == 2)
    assert {d["kind"] for d in rejected} == {"rejected"}
    assert {d["version"] for d in rejected} == {0}  # -3 and garbage carry no usable version


def test_record_keyed_for_another_tenant_is_dead_lettered(
    pipeline: Pipeline, topics: TopicReader
) -> None:
    item = unique_item("kafka-mismatch")
    key = f"ale:{item}".encode()
    _produce(pipeline.bootstrap, key, json.dumps(content_event(item_id=item)).encode())
    letters = wait_until(
        lambda: [r for r in topics.records("cms.events.dlq") if r.key == key], 30, "dead letter"
    )
    fields = [e["field"] for e in json.loads(dict(letters[0].headers)["dlq-errors"])]
    assert fields == ["tenant"]
