"""The faust app factory and worker runner every service uses.

All broker tuning lives here: one place decides how the services talk to the
embedded broker versus a real cluster.
"""

from __future__ import annotations

import asyncio
import weakref
import zlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import faust
import mode
import structlog
from faust.streams import _current_event

from services.runtime.settings import Settings
from services.runtime.topics import MAX_MESSAGE_BYTES

__all__ = ["KeyLanes", "bytes_table", "is_ready", "make_app", "run_worker"]


def _short_fetch_wait(wait_ms: int) -> None:
    import faust.transport.drivers.aiokafka as driver

    original = driver.AIOKafkaConsumerThread._create_worker_consumer
    if getattr(original, "_gatekeeper", False):
        return

    def create(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = wait_ms
        return consumer

    create._gatekeeper = True  # type: ignore[attr-defined]
    driver.AIOKafkaConsumerThread._create_worker_consumer = create  # type: ignore[method-assign]


def make_app(service: str, settings: Settings, **overrides: Any) -> faust.App:
    """A faust app for *service* with no module-level state and no faust web stack."""
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
    }
    if settings.embedded_broker:
        _short_fetch_wait(20)
        # One record per produce batch: the embedded broker's ListOffsets answers
        # the last batch's base offset + 1, which is the true end only then, and
        # faust's table recovery relies on it. Short group timeouts because a
        # join there waits for the full rebalance timeout.
        conf |= {
            "producer_max_batch_size": 1,
            "producer_linger_ms": 0,
            "broker_max_poll_interval": 10.0,
            "broker_rebalance_timeout": 3.0,
            "broker_session_timeout": 6.0,
            "broker_heartbeat_interval": 1.0,
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


class KeyLanes:
    """Handle a stream's events in order per key, different keys side by side.

    Events of one key always share a lane (a lane belongs to one partition), so
    one item's inputs are decided in the order they arrived. Feed it from an
    agent iterating ``stream.noack().events()``: an event is acknowledged only
    after its handler returned, and faust commits only the unbroken run of
    acknowledged offsets, so nothing is committed before it was handled. Inside
    the handler the event is faust's current event, so table writes go to the
    changelog partition of the event's own partition.
    """

    def __init__(
        self,
        app: faust.App,
        handle: Callable[[Any], Awaitable[None]],
        lanes_per_partition: int = 8,
        depth: int = 64,
    ) -> None:
        self._app = app
        self._handle = handle
        self._fanout = lanes_per_partition
        self._depth = depth
        self._queues: dict[tuple[int, int], asyncio.Queue[Any]] = {}
        self._tasks: dict[tuple[int, int], asyncio.Task[None]] = {}

    async def feed(self, event: Any) -> None:
        lane = (event.message.partition, zlib.crc32(event.message.key or b"") % self._fanout)
        queue = self._queues.get(lane)
        if queue is None:
            queue = self._queues[lane] = asyncio.Queue(self._depth)
            self._tasks[lane] = asyncio.ensure_future(self._lane(queue))
        await queue.put(event)

    async def _lane(self, queue: asyncio.Queue[Any]) -> None:
        while True:
            event = await queue.get()
            _current_event.set(weakref.ref(event))
            try:
                await self._handle(event)
            except Exception as exc:
                # Unacknowledged, the event is handled again after the restart
                # the crash causes; skipping it would lose it.
                structlog.get_logger("gatekeeper").error(
                    "lane.failed", partition=event.message.partition, error=repr(exc)
                )
                await self._app.crash(exc)
                return
            event.ack()


def is_ready(app: faust.App) -> bool:
    """Partitions assigned and every table recovered: the service answers truthfully."""
    if app.rebalancing or getattr(app, "in_recovery", False):
        return False
    recovery = getattr(app.tables, "recovery", None)
    return recovery is not None and bool(recovery.completed.is_set())


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
    worker.execute_from_commandline()
