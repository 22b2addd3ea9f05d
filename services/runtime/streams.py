"""The faust app factory and worker runner every service uses.

All broker tuning lives here: one place decides how the services talk to the
embedded broker versus a real cluster, and only speed differs between them.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar

import faust
import mode
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError
from aiokafka.partitioner import DefaultPartitioner
from faust.types import TP
from pydantic import BaseModel

from services.runtime.faust_compat import (
    check_version,
    current_event_partition,
    exact_log_ends,
    is_ready,
    set_current_event,
    short_fetch_wait,
    stop_within,
    store_without_changelog,
)
from services.runtime.kafka_security import KafkaSecurity
from services.runtime.ports import InboundRecord, OutboundRecord, nothing_to_wait_for
from services.runtime.settings import Settings
from services.runtime.topics import MAX_MESSAGE_BYTES

__all__ = [
    "OUTBOX_LINGER_MS",
    "FaustModelTable",
    "FaustOutbox",
    "FaustTextTable",
    "OutboxModelTable",
    "PartitionBatches",
    "ProducerOutbox",
    "bytes_table",
    "inbound",
    "is_ready",
    "make_app",
    "run_worker",
]


def make_app(service: str, settings: Settings, **overrides: Any) -> faust.App:
    """A faust app for *service* with no module-level state and no faust web stack."""
    check_version()
    if not settings.kafka_bootstrap_servers:
        raise ValueError("KAFKA_BOOTSTRAP_SERVERS must be set to run a service")
    brokers = [f"kafka://{s.strip()}" for s in settings.kafka_bootstrap_servers.split(",")]
    conf: dict[str, Any] = {
        "broker": brokers,
        "web_enabled": False,
        "autodiscover": False,
        "datadir": str(settings.data_dir / service),
        "topic_partitions": settings.partitions,
        "topic_replication_factor": settings.replication_factor,
        "consumer_auto_offset_reset": "earliest",
        "producer_acks": -1,
        "broker_commit_interval": 0.5,
        "key_serializer": "raw",
        "value_serializer": "raw",
        "producer_max_request_size": MAX_MESSAGE_BYTES,
        "consumer_max_fetch_size": MAX_MESSAGE_BYTES,
        # A crashed member's partitions move after session_timeout, not faust's
        # default minute; with a stable instance id a restarted pod rejoins as
        # itself without a rebalance at all.
        "broker_session_timeout": settings.kafka_session_timeout,
        "broker_heartbeat_interval": settings.kafka_heartbeat_interval,
        "broker_rebalance_timeout": settings.kafka_rebalance_timeout,
        # With replicas on RocksDB, a standby keeps each partition's table warm on
        # another replica, so failover reads only the changelog's tail there.
        "table_standby_replicas": settings.standby_replicas,
    }
    security = KafkaSecurity.of(settings)
    credentials = security.faust_credentials()
    if credentials is not None:
        conf["broker_credentials"] = credentials
    if settings.instance_id:
        conf["consumer_group_instance_id"] = f"{settings.instance_id}-{service}"
    # Table recovery reads each changelog to the end a fetch reports, not only
    # to what ListOffsets answers: a broker may answer the last batch's base
    # offset + 1 (the embedded one does), and the changelogs go out in batches.
    # This concerns correctness, so it holds whatever the broker.
    exact_log_ends(settings.kafka_bootstrap_servers, security.client_kwargs())
    if settings.embedded_broker:
        # What follows is about speed alone. Each fetch waits 20 ms at most for
        # data (a floor under every hop's latency on that broker). A join there
        # waits about half the session timeout (whole seconds: 3 s at 6 s, 1 s
        # at 2 s), and a killed member's partitions wait for it all, so both are
        # short; heartbeats come from the consumer's own thread, every 0.3 s. A
        # member is let go only after two minutes without a fetch: one slow to
        # drain a backlog (a million held items at start) is not one that hangs.
        short_fetch_wait(20)
        conf |= {
            "broker_max_poll_interval": 120.0,
            "broker_rebalance_timeout": 1.0,
            "broker_session_timeout": 2.0,
            "broker_heartbeat_interval": 0.3,
        }
    conf |= overrides
    return faust.App(f"gatekeeper-{service}", **conf)


#: Per partition database. faust's defaults (a 2 GiB block cache and three
#: 64 MiB write buffers) are sized for one big table, not for a pod with a
#: memory limit and a database for each of its partitions.
_ROCKSDB_OPTIONS = {
    "write_buffer_size": 4 * 1024 * 1024,
    "max_write_buffer_number": 2,
    "block_cache_size": 8 * 1024 * 1024,
}


def bytes_table(app: faust.App, name: str, partitions: int, store: str = "memory") -> Any:
    """A table of bytes to bytes; the service owns the encoding of its values.

    The types are explicit because a table otherwise encodes its changelog as
    JSON, whatever the app's default serializer is. *store* "rocksdb" keeps the
    table on disk under the app's datadir (rocksdict), one database per partition.
    """
    return app.Table(
        name,
        default=None,
        partitions=partitions,
        key_type=bytes,
        value_type=bytes,
        store=f"{store}:{name}",  # the path names the files; "scheme://" alone is ignored
        options=dict(_ROCKSDB_OPTIONS) if store == "rocksdb" else None,
    )


class PartitionBatches:
    """Handle a stream's events in batches: one partition's in order, partitions side by side.

    Every key lives in one partition (the inputs are co-partitioned), so one
    item's inputs are always handled in the order they arrived. A lane takes
    whatever its partition has queued, up to *max_batch*, as soon as it is free:
    one event alone when the stream is quiet (no added latency), a batch sharing
    one round trip when it is busy. Feed it from an agent iterating
    ``stream.noack().events()``. *handle* decides a batch and answers what waits
    until the batch is saved; the lane decides the next batch meanwhile (at most
    one save in flight besides the newest), and acknowledges a batch's events
    only once it is saved. faust commits only the unbroken run of acknowledged
    offsets, so nothing is committed before it was saved. The handler gets a
    function that makes the batch's *i*-th event faust's current event, for
    table writes to go to that event's changelog partition.
    """

    def __init__(
        self,
        app: faust.App,
        handle: Callable[[Sequence[Any], Callable[[int], None]], Awaitable[Awaitable[None]]],
        max_batch: int = 500,
        depth: int = 2000,
    ) -> None:
        self._app = app
        self._handle = handle
        self._max = max_batch
        self._depth = depth
        self._queues: dict[int, asyncio.Queue[Any]] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}

    async def feed(self, event: Any) -> None:
        partition = event.message.partition
        queue = self._queues.get(partition)
        if queue is None:
            queue = self._queues[partition] = asyncio.Queue(self._depth)
            self._tasks[partition] = asyncio.ensure_future(self._lane(queue))
        await queue.put(event)

    async def _lane(self, queue: asyncio.Queue[Any]) -> None:
        saving: asyncio.Future[bool] | None = None
        while True:
            batch = [await queue.get()]
            while len(batch) < self._max and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                saved = await self._handle(batch, functools.partial(_enter, batch))
            except Exception as exc:
                await self._failed(batch, exc)
                return
            if saving is not None and not await saving:
                return
            saving = asyncio.ensure_future(self._acknowledged(saved, batch))

    async def _acknowledged(self, saved: Awaitable[None], batch: Sequence[Any]) -> bool:
        try:
            await saved
        except Exception as exc:
            await self._failed(batch, exc)
            return False
        for event in batch:
            event.ack()
        return True

    async def _failed(self, batch: Sequence[Any], exc: Exception) -> None:
        # Unacknowledged, the batch is handled again after the restart the crash
        # causes; skipping it would lose it.
        structlog.get_logger("gatekeeper").error(
            "lane.failed", partition=batch[0].message.partition, error=repr(exc)
        )
        await self._app.crash(exc)


def _enter(batch: Sequence[Any], i: int) -> None:
    set_current_event(batch[i])


M = TypeVar("M", bound=BaseModel)


class FaustModelTable(Generic[M]):
    """A :class:`~services.runtime.ports.ModelTable` over a faust table of bytes."""

    def __init__(self, table: Any, model: type[M]) -> None:
        self._table = table
        self._model = model

    def get(self, key: bytes) -> M | None:
        raw = self._table.get(key)
        return self._model.model_validate_json(raw) if raw is not None else None

    def put(self, key: bytes, value: M) -> None:
        self._table[key] = value.model_dump_json().encode()

    def saved(self) -> Awaitable[None]:
        """Nothing to wait for here: faust flushes its producer before it commits."""
        return nothing_to_wait_for()

    def items(self) -> Iterator[tuple[bytes, M]]:
        """Every entry, read as it is iterated (not copied first: a table on disk
        may not fit in memory); no write may interleave with the iteration."""
        for key, raw in self._table.items():
            yield key, self._model.model_validate_json(raw)

    def values(self) -> Iterator[M]:
        for raw in self._table.values():
            yield self._model.model_validate_json(raw)


class OutboxModelTable(FaustModelTable[M]):
    """A :class:`FaustModelTable` whose changelog records go out on a :class:`ProducerOutbox`.

    faust writes a table's changelog record by record: a future, a buffer and a
    callback each, about 64 µs of CPU per record in ``bench.gate_bench``. Here
    :meth:`put` writes the value to the table's store alone (the store of the
    current event's partition, as faust's own write does) and keeps its
    changelog record; :meth:`saved` sends what was kept in one batch and, once
    acknowledged, records each changelog partition's last offset in the store
    (what a RocksDB store reads at start to replay only the changelog's tail),
    as faust does for its own writes. Await what :meth:`saved` answers before
    the inputs that put the values are acknowledged.
    """

    def __init__(self, table: Any, model: type[M], outbox: ProducerOutbox) -> None:
        super().__init__(table, model)
        self._outbox = outbox
        self._topic: str = table.changelog_topic.get_topic_name()
        self._kept: list[OutboundRecord] = []

    def put(self, key: bytes, value: M) -> None:
        raw = value.model_dump_json().encode()
        partition = current_event_partition()
        store_without_changelog(self._table, key, raw)
        self._kept.append(OutboundRecord(self._topic, key, raw, partition=partition))

    def saved(self) -> Awaitable[None]:
        kept, self._kept = self._kept, []
        return self._save(kept)

    async def _save(self, kept: Sequence[OutboundRecord]) -> None:
        for tp, offset in (await self._outbox.send_acknowledged(kept)).items():
            self._table.data.set_persisted_offset(tp, offset)


class FaustTextTable:
    """A :class:`~services.runtime.ports.TextTable` over a faust table of bytes."""

    def __init__(self, table: Any) -> None:
        self._table = table

    def get(self, key: str) -> str | None:
        raw = self._table.get(key.encode())
        return raw.decode() if isinstance(raw, bytes) else None

    def put(self, key: str, value: str) -> None:
        self._table[key.encode()] = value.encode()


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
        sent = [
            (tp, count, await producer.send_batch(batch, tp.topic, partition=tp.partition))
            for tp, batch, count in full
        ]
        last: dict[TP, int] = {}
        for tp, count, future in sent:
            written = await future  # the batch's first offset
            last[tp] = max(last.get(tp, -1), written.offset + count - 1)
        return last


T = TypeVar("T")

#: The longest pause between two tries of a write while Kafka is unreachable.
_RETRY_MAX_S = 5.0


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


#: The most a batch of the outbox holds (a larger record goes alone).
_BATCH_BYTES = 256 * 1024

#: How long the outbox waits for more records to send with the first: a few ms
#: of release latency buy fewer, fuller requests (about an eighth less CPU per
#: gate input in ``bench.gate_bench``).
OUTBOX_LINGER_MS = 5


def inbound(event: Any) -> InboundRecord:
    """What a handler needs of a faust event's message."""
    msg = event.message
    return InboundRecord(
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        key=msg.key,
        value=msg.value,
        headers=tuple(msg.headers or ()),
    )


#: A pod's grace period is 30 s by default and CONTRACT 6 promises 10 s: past
#: this, a stop that waits for an unreachable Kafka is cut short. Nothing is lost:
#: what was not acknowledged to the CMS is sent again, and what was decided but
#: not committed is read and decided again after the restart (and caught as a
#: repeat downstream).
STOP_WITHIN_S = 8.0


def _stop_now() -> None:
    structlog.get_logger("gatekeeper").warning(
        "worker.stop_cut_short", after_s=STOP_WITHIN_S, why="Kafka did not answer on the way out"
    )
    sys.stderr.flush()
    os._exit(1)


def run_worker(app: faust.App, services: Iterable[mode.ServiceT], loglevel: str) -> None:
    """Run the app and its side services until SIGTERM/SIGINT, then drain and commit."""
    worker = faust.Worker(
        app,
        *services,
        loglevel=loglevel,
        quiet=True,
        override_logging=False,
        redirect_stdouts=False,
    )
    worker.spinner = None  # a terminal spinner would corrupt the JSON log stream
    stop_within(worker, STOP_WITHIN_S, _stop_now)
    # What was made until now (modules, schemas, the app) lives as long as the
    # process: out of the collector's sight, a full collection no longer walks
    # it, which stalled every input behind it for up to 90 ms.
    gc.collect()
    gc.freeze()
    worker.execute_from_commandline()
