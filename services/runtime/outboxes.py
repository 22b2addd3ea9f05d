"""The outboxes: records to Kafka on faust's producer, or on a producer of their own
that packs each call's records into one batch per partition; and the wait for
Kafka that a write does while it is unreachable."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import faust
import mode
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError
from aiokafka.partitioner import DefaultPartitioner
from faust.types import TP

from services.runtime.kafka_security import KafkaSecurity
from services.runtime.ports import OutboundRecord
from services.runtime.settings import Settings
from services.runtime.topics import MAX_MESSAGE_BYTES

__all__ = ["OUTBOX_LINGER_MS", "FaustOutbox", "ProducerOutbox", "until_written"]


#: The most a batch of the outbox holds (a larger record goes alone).
_BATCH_BYTES = 256 * 1024


#: How long the outbox waits for more records to send with the first while other
#: writes are under way: a few ms of release latency buy fewer, fuller requests
#: (about an eighth less CPU per gate input in ``bench.gate_bench``). A write when
#: none is under way goes at once.
OUTBOX_LINGER_MS = 5


#: The longest pause between two tries of a write while Kafka is unreachable.
_RETRY_MAX_S = 5.0


T = TypeVar("T")


class FaustOutbox:
    """An :class:`~services.runtime.ports.Outbox` on the faust app's producer."""

    def __init__(self, app: faust.App, timeout: float) -> None:
        self._app = app
        self._timeout = timeout

    async def send_all(self, records: Sequence[OutboundRecord]) -> None:
        if records:
            await until_written(lambda: self._send(records), self._timeout)

    async def _send(self, records: Sequence[OutboundRecord]) -> None:
        producer = self._app.producer
        sent = [
            await producer.send(r.topic, r.key, r.value, r.partition, None, list(r.headers) or None)
            for r in records
        ]
        await asyncio.gather(*sent)


class ProducerOutbox(mode.Service):
    """An :class:`~services.runtime.ports.Outbox` on a producer of its own that batches.

    A call's records are packed into one batch per topic and partition (the
    key's partition, as every Kafka client computes it, unless the record
    names one), so a batch costs one future and the records share one round
    trip, after waiting :data:`OUTBOX_LINGER_MS` for other calls' batches. A
    batched log is safe for tables too: their recovery reads each changelog's
    true end on every broker (``faust_compat.exact_log_ends``). Started
    on first use, flushed and closed on stop.
    """

    def __init__(self, settings: Settings, timeout: float) -> None:
        super().__init__()
        self._settings = settings
        self._timeout = timeout
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()
        self._partitioner = DefaultPartitioner()
        #: when the last write began; a write after a quiet spell does not linger
        self._last_write = 0.0

    async def _producer_started(self) -> AIOKafkaProducer:
        async with self._starting:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self._settings.kafka_bootstrap_servers,
                    client_id="gatekeeper-outbox",
                    acks="all",
                    enable_idempotence=False,
                    linger_ms=OUTBOX_LINGER_MS,
                    max_batch_size=_BATCH_BYTES,
                    max_request_size=MAX_MESSAGE_BYTES,
                    request_timeout_ms=int(self._timeout * 1000),
                    **KafkaSecurity.of(self._settings).client_kwargs(),
                )
                await producer.start()
                self._producer = producer
            return self._producer

    async def on_stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()  # sends what is waiting first

    async def send_all(self, records: Sequence[OutboundRecord]) -> None:
        await self.send_acknowledged(records)

    async def send_acknowledged(self, records: Sequence[OutboundRecord]) -> dict[TP, int]:
        """:meth:`send_all`, answering the offset of the last record written to each
        topic partition."""
        if not records:
            return {}
        return await until_written(lambda: self._send(records), self._timeout)

    async def _send(self, records: Sequence[OutboundRecord]) -> dict[TP, int]:
        # Quiet when no write began within the linger: this one will not be joined.
        now = time.monotonic()
        quiet = now - self._last_write >= OUTBOX_LINGER_MS / 1000
        self._last_write = now
        return await self._send_batches(records, quiet)

    async def _send_batches(self, records: Sequence[OutboundRecord], idle: bool) -> dict[TP, int]:
        producer = await self._producer_started()
        partitions: dict[str, list[int]] = {}  # each topic's, asked once per call
        filling: dict[TP, tuple[Any, int]] = {}  # batch and records in it
        full: list[tuple[TP, Any, int]] = []
        for r in records:
            partition = r.partition
            if partition is None:
                if r.topic not in partitions:
                    partitions[r.topic] = sorted(await producer.partitions_for(r.topic))
                every = partitions[r.topic]
                partition = int(self._partitioner(r.key, every, every))
            tp = TP(r.topic, partition)
            batch, count = filling.get(tp) or (producer.create_batch(), 0)
            if not _append(batch, r):
                full.append((tp, batch, count))
                batch, count = producer.create_batch(), 0
                if not _append(batch, r):
                    raise ValueError(f"a record to {r.topic} is larger than a batch may be")
            filling[tp] = (batch, count + 1)
        full.extend((tp, batch, count) for tp, (batch, count) in filling.items())
        if idle:  # a closed batch is sent without lingering
            for _, batch, _ in full:
                batch.close()
        sent = [
            (tp, count, await producer.send_batch(batch, tp.topic, partition=tp.partition))
            for tp, batch, count in full
        ]
        last: dict[TP, int] = {}
        for tp, count, future in sent:
            written = await future  # the batch's first offset
            last[tp] = max(last.get(tp, -1), written.offset + count - 1)
        return last


async def until_written(attempt: Callable[[], Awaitable[T]], each_try_s: float) -> T:
    """*attempt* again, with a growing pause, for as long as Kafka cannot be reached.

    A stream service waits out an outage rather than crash: its inputs stay
    unacknowledged meanwhile, and it goes on by itself once Kafka answers. A retry
    may write a record twice (the first try may have landed after all); every
    reader of these topics takes a repeat for what it is. Anything else a write
    fails with (a record too large, an authorization refused) is raised.
    """
    pause = 0.25
    while True:
        try:
            return await asyncio.wait_for(attempt(), timeout=each_try_s)
        except Exception as exc:
            if not (isinstance(exc, TimeoutError | KafkaTimeoutError) or _retriable(exc)):
                raise
            structlog.get_logger("gatekeeper").warning(
                "kafka.write_waits", error=type(exc).__name__, retry_in_s=pause
            )
        await asyncio.sleep(pause)
        pause = min(pause * 2, _RETRY_MAX_S)


def _retriable(exc: BaseException) -> bool:
    return bool(getattr(exc, "retriable", False))


def _append(batch: Any, record: OutboundRecord) -> bool:
    added = batch.append(
        timestamp=None, key=record.key, value=record.value, headers=list(record.headers)
    )
    return added is not None
