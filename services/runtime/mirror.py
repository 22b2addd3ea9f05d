"""A topic read whole, from its start, by every process that needs all of it.

A consumer of its own, in no group: it is assigned every partition, reads each
from the beginning and then follows it, handing each record to ``apply``. It
counts as caught up once it has read, on every partition, to the end a fetch
reported (the high watermark), not to what ListOffsets answers: some brokers
answer the last batch's base offset + 1 there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import mode
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from services.runtime.kafka_security import KafkaSecurity
from services.runtime.settings import Settings

__all__ = ["MirroredRecord", "TopicMirror", "register_mirrors"]

#: A record as a mirror hands it on: key, value, headers.
MirroredRecord = tuple[bytes | None, bytes | None, Sequence[tuple[str, bytes]]]


class TopicMirror(mode.Service):
    """*apply* takes each record; *apply_many*, when given, each fetched batch instead
    (one transaction for many records, as the held board does at start)."""

    def __init__(
        self,
        settings: Settings,
        topic: str,
        apply: Callable[[bytes | None, bytes | None, Sequence[tuple[str, bytes]]], None],
        apply_many: Callable[[Sequence[MirroredRecord]], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._settings = settings
        self.topic = topic
        self._apply = apply
        self._apply_many = apply_many
        self._consumer: AIOKafkaConsumer | None = None
        self.caught_up = False
        #: Records read since the start (gatekeeper_mirror_records_total).
        self.records_read = 0
        #: When it last had read every partition to its end.
        self.current_at = datetime.fromtimestamp(0, UTC)

    async def _open(self) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap_servers,
            client_id=f"gatekeeper-mirror-{self.topic}",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=50,
            **KafkaSecurity.of(self._settings).client_kwargs(),
        )
        await consumer.start()
        partitions = consumer.partitions_for_topic(self.topic)
        if not partitions:
            # Not made yet (faust makes a table's changelog as it starts). A started
            # consumer's own metadata never learns of it: once the broker lists it,
            # start afresh.
            listed = await consumer.topics()
            while self.topic not in listed:
                await asyncio.sleep(0.5)
                listed = await consumer.topics()
            await consumer.stop()
            return await self._open()
        consumer.assign([TopicPartition(self.topic, p) for p in sorted(partitions)])
        await consumer.seek_to_beginning()
        return consumer

    async def _check_caught_up(self, consumer: AIOKafkaConsumer) -> None:
        for tp in consumer.assignment():
            end = consumer.highwater(tp)  # None until a fetch has answered
            if end is None or await consumer.position(tp) < end:
                return
        self.caught_up = True
        self.current_at = datetime.now(UTC)

    @mode.Service.task
    async def _follow(self) -> None:
        while not self.should_stop:
            try:
                if self._consumer is None:
                    self._consumer = await self._open()
                batches = await self._consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    if self._apply_many is not None:
                        self._apply_many(
                            [(r.key, r.value, tuple(r.headers or ())) for r in records]
                        )
                    else:
                        for record in records:
                            self._apply(record.key, record.value, tuple(record.headers or ()))
                    self.records_read += len(records)
                await self._check_caught_up(self._consumer)
            except asyncio.CancelledError:
                raise
            except Exception:  # the broker away: open afresh and read on
                await self._close()
                await self.sleep(1.0)

    async def _close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def on_stop(self) -> None:
        await self._close()


class _MirrorCollector(Collector):
    def __init__(self, mirrors: Sequence[TopicMirror]) -> None:
        self._mirrors = tuple(mirrors)

    def collect(self) -> Iterator[Metric]:
        read = CounterMetricFamily(
            "gatekeeper_mirror_records",
            "Records read from a topic every process of a service reads whole.",
            labels=["topic"],
        )
        current = GaugeMetricFamily(
            "gatekeeper_mirror_caught_up",
            "1 once the topic has been read to its end since the start.",
            labels=["topic"],
        )
        for mirror in self._mirrors:
            read.add_metric([mirror.topic], mirror.records_read)
            current.add_metric([mirror.topic], 1.0 if mirror.caught_up else 0.0)
        yield read
        yield current


def register_mirrors(registry: CollectorRegistry, mirrors: Sequence[TopicMirror]) -> None:
    """The mirrors' progress as metrics: records read and whether caught up, by topic."""
    registry.register(_MirrorCollector(mirrors))
