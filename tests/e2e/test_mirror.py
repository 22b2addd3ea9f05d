"""A topic every process reads whole, read from a broker: also one made after the reader."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import pytest
from kafka import KafkaProducer

from services.runtime.broker import EmbeddedBroker
from services.runtime.mirror import TopicMirror
from services.runtime.settings import load_settings
from services.runtime.topic_admin import ensure_topics


async def test_a_mirror_started_before_its_topic_exists_reads_it_once_made(
    broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # as a table's changelog, which faust makes only as the service starts
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap)
    topic = f"gatekeeper-test-later-{uuid.uuid4().hex[:8]}"
    seen: list[tuple[bytes | None, bytes | None]] = []

    def apply(key: bytes | None, value: bytes | None, _: Sequence[tuple[str, bytes]]) -> None:
        seen.append((key, value))

    mirror = TopicMirror(load_settings(), topic, apply)
    await mirror.start()
    try:
        await asyncio.sleep(1.5)  # the mirror is reading before the topic is made
        assert not mirror.caught_up
        await asyncio.to_thread(ensure_topics, broker.bootstrap, [topic], 2, 1)
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        await asyncio.to_thread(lambda: producer.send(topic, key=b"k", value=b"v").get(10))
        producer.close()
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.1)
        assert seen == [(b"k", b"v")]
        assert mirror.caught_up
    finally:
        await mirror.stop()
