"""Crashes on the deployed path: the services started as the chart starts them
(``serve``, a broker they did not start, no embedded flag, a stable instance id),
each killed with SIGKILL and started again. What was written before the kill is
what the restarted service knows: held items, deliveries made."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from schemas.events import ReleaseOrder
from services.runtime.broker import EmbeddedBroker
from tests.conftest import internal_notice
from tests.e2e.test_publish import _order
from tests.e2e.test_restarts import _hold_batched
from tests.harness import (
    Pipeline,
    TopicReader,
    all_held,
    unique_item,
    wait_until,
    write_batched,
)


def _held(gate: str) -> set[str]:
    return {row["item_id"] for row in all_held(gate)}


ITEMS_CHANGELOG = "gatekeeper-gate-gate-items-changelog"


def _listed_end(bootstrap: str, topic: str) -> int:
    """The sum of the ends the broker's ListOffsets answers for *topic*."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(tps).values())
    finally:
        consumer.close()


def _batched_tail(bootstrap: str, topic: str) -> None:
    """Make each partition of *topic* end on a batch of several records, as a busy
    gate's changelog does (on a busy test machine the gate may decide its last
    inputs one by one): its last two records again, the same keys and values, in
    one batch. A state written twice is the same state."""
    from kafka import KafkaProducer

    records = TopicReader(bootstrap).records(topic)
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=50, batch_size=256 * 1024)
    for partition in sorted({r.partition for r in records}):
        for r in [r for r in records if r.partition == partition][-2:]:
            producer.send(topic, key=r.key, value=r.value, partition=partition)
    producer.flush()
    producer.close()


def _produce_all(bootstrap: str, events: list[dict[str, Any]]) -> None:
    """Produced to ``cms.events`` in batches, as a busy CMS on the Kafka path does:
    the gate decides them in batches and writes its changelogs in batches too."""
    write_batched(
        bootstrap,
        "cms.events",
        [(f"lerum:{e['item_id']}".encode(), json.dumps(e).encode()) for e in events],
    )


@pytest.mark.parametrize("store", ["memory", "rocksdb"])
def test_a_killed_gate_keeps_every_held_item_and_releases_each_once(
    separate_pipeline: Pipeline, store: str
) -> None:
    pipeline = separate_pipeline
    pipeline.add("ingest").start()
    gate = pipeline.add("gate", GATEKEEPER_GATE_STORE=store)
    pipeline.add("publish").start()
    prefix = unique_item("kept") + "-"
    items = [f"{prefix}{n}" for n in range(1500)]
    _hold_batched(pipeline, gate, prefix, len(items))  # the gate starts on a backlog
    if _listed_end(pipeline.bootstrap, ITEMS_CHANGELOG) == len(
        TopicReader(pipeline.bootstrap).records(ITEMS_CHANGELOG)
    ):
        _batched_tail(pipeline.bootstrap, ITEMS_CHANGELOG)
    assert _listed_end(pipeline.bootstrap, ITEMS_CHANGELOG) < len(
        TopicReader(pipeline.bootstrap).records(ITEMS_CHANGELOG)
    ), "the changelog was written in batches of several records"

    gate.stop(signal.SIGKILL)
    gate.start()

    assert _held(gate.url) >= set(items), "held right after the restart"
    _produce_all(pipeline.bootstrap, [internal_notice(item_id=item) for item in items])
    topics = TopicReader(pipeline.bootstrap)

    def released() -> dict[str, int]:
        return topics.released("external.web", items)

    wait_until(released, 180, "every item released")
    wait_until(lambda: not (_held(gate.url) & set(items)), 60, "the held list emptied")
    assert released() == dict.fromkeys(items, 1)


def test_a_killed_publish_delivers_nothing_twice_when_its_orders_come_again(
    separate_pipeline: Pipeline,
) -> None:
    # The gate sends its orders at least once: after a crash of its own it may send
    # one again. Publish knows what it delivered from its table, and a restart must
    # not forget what the table's changelog holds.
    pipeline = separate_pipeline
    publish = pipeline.add("publish").start()
    prefix = unique_item("sent")
    orders = [_order(f"{prefix}-{n}", ["intranet"], audience="internal") for n in range(200)]
    _send_batched(pipeline.bootstrap, orders)
    topics = TopicReader(pipeline.bootstrap)
    wait_until(lambda: len(_notices(topics, prefix)) == len(orders), 60, "every notice delivered")

    publish.stop(signal.SIGKILL)
    publish.start()
    _send_batched(pipeline.bootstrap, orders)
    _wait_consumed(pipeline.bootstrap, "gatekeeper-publish", "gate.releases")

    notices = _notices(topics, prefix)
    assert len(notices) == len(orders), "each order delivered once"


def _send_batched(bootstrap: str, orders: list[ReleaseOrder]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, batch_size=256 * 1024)
    for order in orders:
        producer.send(
            "gate.releases",
            key=f"lerum:{order.item_id}".encode(),
            value=order.model_dump_json().encode(),
        )
    producer.flush()
    producer.close()


def _notices(topics: TopicReader, prefix: str) -> list[object]:
    return [
        r
        for r in topics.records("intranet.notices")
        if (r.key or b"").decode().startswith(f"lerum:{prefix}-")
    ]


def _wait_consumed(bootstrap: str, group: str, topic: str) -> None:
    """Until *group* has committed every record of *topic*: all of it was handled."""
    last: dict[int, int] = {}
    for record in TopicReader(bootstrap).records(topic):
        last[record.partition] = max(last.get(record.partition, -1), record.offset)

    def consumed() -> bool:
        # Asks the group's committed offsets without joining the group.
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
        try:
            return all(
                (consumer.committed(TopicPartition(topic, partition)) or 0) > offset
                for partition, offset in last.items()
            )
        finally:
            consumer.close()

    wait_until(consumed, 60, f"{group} to commit all of {topic}", every=0.5)


def test_a_store_ahead_of_its_broker_stops_the_start_and_says_what_to_do(
    separate_pipeline: Pipeline, tmp_path: Path
) -> None:
    # A broker that lost its data (this one keeps it in memory only) and a gate
    # whose RocksDB store remembers more: replaying would skip what the new log
    # gets, dropping the store would lose held items. Nothing starts; the message
    # names the store, the topic and partition, and what to do.
    pipeline = separate_pipeline
    gate = pipeline.add("gate", GATEKEEPER_GATE_STORE="rocksdb").start()
    _hold_batched(pipeline, gate, unique_item("ahead") + "-", 20)
    assert gate.stop() == 0

    with EmbeddedBroker(log_path=tmp_path / "new-broker.log") as fresh:
        env = {**gate.env, "KAFKA_BOOTSTRAP_SERVERS": fresh.bootstrap}
        started = subprocess.run(
            [sys.executable, "-m", "services.cli", "serve", "gate"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    assert started.returncode == 2
    lines = started.stderr.strip().splitlines()
    said = lines[-1]
    assert said.startswith("gatekeeper: gate did not start: the store ")
    assert "changelog gatekeeper-gate-gate-items-changelog partition 0" in said
    assert "aside and start again" in said
    logged = [json.loads(line) for line in lines if line.startswith("{")]
    ahead = [line for line in logged if line["event"] == "store.ahead_of_changelog"]
    assert {(line["topic"], line["partition"]) for line in ahead} >= {
        ("gatekeeper-gate-gate-items-changelog", 0),
        ("gatekeeper-gate-gate-items-changelog", 1),
    }
    assert "Traceback" not in started.stdout + started.stderr
