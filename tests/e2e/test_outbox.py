"""The gate's batching outbox on the real broker: each record in its key's partition,
as every other client puts it, in order, headers kept, and the last offsets it answers."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from kafka import KafkaConsumer, KafkaProducer

from services.runtime.broker import EmbeddedBroker
from services.runtime.outboxes import ProducerOutbox
from services.runtime.ports import OutboundRecord
from services.runtime.settings import Settings
from services.runtime.topic_admin import ensure_topics


def _read(bootstrap: str, topic: str, count: int) -> list[Any]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    try:
        return [r for _, r in zip(range(count), consumer, strict=False)]
    finally:
        consumer.close()


def test_records_land_in_their_key_s_partition_in_order_and_the_last_offsets_are_answered(
    own_broker: EmbeddedBroker,
) -> None:
    ensure_topics(own_broker.bootstrap, ["outbox.mine", "outbox.theirs"], 4, 1)
    keys = [f"lerum:item-{i % 13}".encode() for i in range(120)]
    records = [
        OutboundRecord("outbox.mine", key, b"%d" % i, headers=(("n", b"%d" % i),))
        for i, key in enumerate(keys)
    ]
    big = OutboundRecord("outbox.mine", b"big", b"x" * 400_000, partition=2)

    async def send() -> list[dict[tuple[str, int], int]]:
        outbox = ProducerOutbox(Settings(kafka_bootstrap_servers=own_broker.bootstrap), 10.0)
        try:
            first = await outbox.send_acknowledged(records[:100])
            second = await outbox.send_acknowledged([*records[100:], big, big])
            return [{(tp.topic, tp.partition): o for tp, o in a.items()} for a in (first, second)]
        finally:
            await outbox.stop()

    first, second = asyncio.run(send())
    producer = KafkaProducer(bootstrap_servers=own_broker.bootstrap, acks="all")
    for key in keys:
        producer.send("outbox.theirs", key=key, value=b"")
    producer.flush()
    producer.close()

    theirs = {r.key: r.partition for r in _read(own_broker.bootstrap, "outbox.theirs", 120)}
    mine = _read(own_broker.bootstrap, "outbox.mine", 122)
    assert len(mine) == 122
    assert all(r.partition == theirs[r.key] for r in mine if r.key != b"big")
    by_partition: dict[int, list[int]] = defaultdict(list)
    for r in mine:
        if r.key != b"big":
            by_partition[r.partition].append(int(r.value))
            assert r.headers == [("n", r.value)]
    assert all(values == sorted(values) for values in by_partition.values())

    counts: list[defaultdict[tuple[str, int], int]] = [defaultdict(int), defaultdict(int)]
    for i, key in enumerate(keys):
        counts[i >= 100][("outbox.mine", theirs[key])] += 1
    counts[1][("outbox.mine", 2)] += 2
    assert first == {tp: n - 1 for tp, n in counts[0].items()}
    assert second == {tp: counts[0].get(tp, 0) + n - 1 for tp, n in counts[1].items()}
    assert [len(r.value) for r in mine if r.key == b"big"] == [400_000, 400_000]
