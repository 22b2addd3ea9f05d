"""Every use of faust's private API, in one place, checked against faust's version.

faust offers no public hook for these; each is covered by a test in
``tests/service/test_faust_compat.py`` that fails when faust changes under it.
Every app is made through :func:`services.runtime.app.make_app`, which calls
:func:`check_version` first: on a faust release these uses were not tested
with, the service stops with one message rather than misbehave quietly.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import faust
import structlog
from faust.streams import _current_event

__all__ = [
    "TESTED_FAUST",
    "UntestedFaust",
    "changelog_topic_name",
    "check_version",
    "committed_and_end_offsets",
    "current_event_partition",
    "exact_log_ends",
    "fetch_wait",
    "fetched_ends",
    "is_ready",
    "keep_changelog_offset",
    "kept_offsets",
    "log_ends",
    "no_gap_acks",
    "set_current_event",
    "stop_within",
    "store_delete_without_changelog",
    "store_items",
    "store_without_changelog",
    "without_spinner",
]

#: faust-streaming releases these uses were tested with (major.minor).
TESTED_FAUST = ("0.15",)


class UntestedFaust(RuntimeError):
    """faust is a release these private uses were not tested with."""


def check_version(version: str = faust.__version__) -> None:
    if not version.startswith(tuple(f"{v}." for v in TESTED_FAUST)):
        raise UntestedFaust(
            f"faust-streaming {version} is not one gatekeeper was tested with "
            f"({', '.join(TESTED_FAUST)}); install a tested release"
        )


def set_current_event(event: Any) -> None:
    """Make *event* faust's current event in this task.

    Table writes go to the changelog partition of the current event's partition;
    an event handled outside the agent's own iteration (in a partition's worker) must be
    made current by hand. Uses ``faust.streams._current_event``.
    """
    _current_event.set(weakref.ref(event))


def current_event_partition() -> int:
    """The partition of faust's current event, whose changelog partition a table
    write belongs to (``faust.current_event``)."""
    event = faust.current_event()
    if event is None:
        raise RuntimeError("a table is written only while an input is being handled")
    return int(event.message.partition)


def store_without_changelog(table: Any, key: bytes, value: bytes) -> None:
    """Put *value* in *table*'s store without the changelog record faust's own
    write sends (the caller sends it). Writes ``table.data``, the store, past
    ``Table.__setitem__``, whose ``on_key_set`` sends the record."""
    table.data[key] = value


def store_items(table: Any) -> Iterator[tuple[bytes, bytes]]:
    """The entries of *table*'s store in the order it holds them (a memory store:
    as written or recovered), read past the table's own iteration."""
    yield from table.data.items()


def store_delete_without_changelog(table: Any, key: bytes) -> None:
    """Delete *key* from *table*'s store alone, with no tombstone on the changelog
    (for entries the changelog's own retention ends)."""
    table.data.pop(key, None)


#: What :func:`fetch_wait` last set (None: faust's own wait).
_fetch_wait_ms: list[int | None] = [None]


def fetch_wait(wait_ms: int | None) -> None:
    """Set how long each of faust's fetches waits for data (None: faust's 1.5 s).

    faust builds its aiokafka consumer in a private method with a fixed
    ``fetch_max_wait_ms``; on a broker that holds a fetch for much of its wait that
    is a floor under every consumer's latency. Patches
    ``AIOKafkaConsumerThread._create_worker_consumer`` once per process; each
    consumer built after a call gets the wait that call set.
    """
    import faust.transport.drivers.aiokafka as driver

    _fetch_wait_ms[0] = wait_ms
    original = driver.AIOKafkaConsumerThread._create_worker_consumer
    if getattr(original, "_gatekeeper", False):
        return

    def create(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        if _fetch_wait_ms[0] is not None:
            consumer._fetch_max_wait_ms = _fetch_wait_ms[0]
        return consumer

    create._gatekeeper = True  # type: ignore[attr-defined]
    driver.AIOKafkaConsumerThread._create_worker_consumer = create  # type: ignore[method-assign]


def exact_log_ends(bootstrap: str, client: Mapping[str, Any], timeout: float = 10.0) -> None:
    """Make table recovery read each changelog to its true end, on any broker.

    Recovery reads a changelog up to the end offset ListOffsets answers. The
    embedded broker answers the last produce batch's base offset + 1, which is
    the end only when that batch holds one record; trusted, it silently drops
    the tail of a batched changelog. A fetch's high-water mark is right there,
    so each end is checked by fetching from the answered end - 1 with a
    consumer of its own, and the larger of the two is used. On a broker whose
    ListOffsets is right both agree. Patches
    ``AIOKafkaConsumerThread._highwaters`` (what ``Recovery`` asks), once.
    """
    import faust.transport.drivers.aiokafka as driver

    original = driver.AIOKafkaConsumerThread._highwaters
    if getattr(original, "_gatekeeper", False):
        return

    async def highwaters(self: Any, partitions: Any) -> Mapping[Any, int | None]:
        ends = dict(await original(self, partitions))
        async with asyncio.timeout(timeout):
            return await fetched_ends(bootstrap, client, ends)

    highwaters._gatekeeper = True  # type: ignore[attr-defined]
    driver.AIOKafkaConsumerThread._highwaters = highwaters  # type: ignore[method-assign,assignment]


def no_gap_acks() -> None:
    """Never count as handled an offset the consumer skipped over; read it again.

    faust's fetch loop, given a record more than one offset past the last it
    read, records the offsets between as a "gap" and later commits past them as
    if they had been handled: meant for compacted or transactional logs, which
    have holes. gatekeeper's agents read neither kind, so on their inputs a gap
    means records were passed over: a fetch cut short by a rebalance drops the
    records it had not handed out, and the consumer's position is past them.
    Counted as handled, those would be committed unread, an accepted event never
    decided. Here a gap is logged (``consumer.offset_gap``) and not
    acknowledged, and the consumer goes back, as faust does after a rebalance:
    streams pause and drop what they had not started, every partition is sought
    to its committed offset, and streams resume. What is read twice is decided
    once (the gate keeps the events it decided). A run of acknowledged offsets
    that does not begin at the committed offset is not committed either, and is
    read again the same way. Patches ``Consumer._add_gap`` and
    ``Consumer._new_offset``, once.
    """
    import faust.transport.consumer as consumer

    if getattr(consumer.Consumer._add_gap, "_gatekeeper", False):
        return

    async def add_gap(self: Any, tp: Any, offset_from: int, offset_to: int) -> None:
        structlog.get_logger("gatekeeper").warning(
            "consumer.offset_gap",
            topic=tp.topic,
            partition=tp.partition,
            offsets=f"{offset_from}-{offset_to}",
        )
        if not getattr(self, "_gatekeeper_rereading", False):
            self._gatekeeper_rereading = True
            _rereads.add(asyncio.ensure_future(_read_again(self)))

    add_gap._gatekeeper = True  # type: ignore[attr-defined]
    consumer.Consumer._add_gap = add_gap  # type: ignore[method-assign]

    # faust commits the first unbroken run of acknowledged offsets, and lets that
    # run begin one offset past the committed one (or anywhere, from offset 0):
    # the record in between, never acknowledged, is committed unread. Here a run
    # that does not begin at the committed offset is not committed; the hole is
    # logged (``consumer.offset_hole``) and read again as a gap is.
    original = consumer.Consumer._new_offset

    def new_offset(self: Any, tp: Any) -> int | None:
        acked, committed = self._acked[tp], self._committed_offset[tp]
        # Each hole is read again once in a generation of the group, not again at
        # every commit while it is read; one found while the group rebalances is
        # left to the rebalance, which seeks back to the committed offsets itself.
        holes: dict[Any, int] = self.__dict__.setdefault("_gatekeeper_holes", {})
        if acked and committed is not None and min(acked) > committed:
            rebalancing = getattr(self.app, "rebalancing", False)
            if not rebalancing and holes.get(tp) != self.app.consumer_generation_id:
                holes[tp] = self.app.consumer_generation_id
                structlog.get_logger("gatekeeper").warning(
                    "consumer.offset_hole",
                    topic=tp.topic,
                    partition=tp.partition,
                    offsets=f"{committed}-{min(acked) - 1}",
                )
                _rereads.add(asyncio.ensure_future(_fill_hole(self, tp, committed)))
            return None
        holes.pop(tp, None)
        return original(self, tp)

    new_offset._gatekeeper = True  # type: ignore[attr-defined]
    consumer.Consumer._new_offset = new_offset  # type: ignore[method-assign]


async def _fill_hole(consumer: Any, tp: Any, committed: int) -> None:
    """Read a hole before the acknowledged offsets again; if the log no longer holds
    it (its retention ended while the group was away), commit from where it begins."""
    if getattr(consumer.app, "rebalancing", False):
        consumer._gatekeeper_holes.pop(tp, None)  # the rebalance seeks back; seen again after
        return
    try:
        earliest = (await consumer.earliest_offsets(tp)).get(tp)
        if earliest is not None and earliest > committed:
            structlog.get_logger("gatekeeper").warning(
                "consumer.offsets_gone",
                topic=tp.topic,
                partition=tp.partition,
                offsets=f"{committed}-{earliest - 1}",
            )
            consumer._committed_offset[tp] = earliest
        elif not getattr(consumer, "_gatekeeper_rereading", False):
            consumer._gatekeeper_rereading = True
            await _read_again(consumer)
    except Exception as exc:  # a rebalance under way, say: tried again at the next commit
        structlog.get_logger("gatekeeper").warning(
            "consumer.offset_hole_not_read",
            topic=tp.topic,
            partition=tp.partition,
            error=repr(exc),
        )
        consumer._gatekeeper_holes.pop(tp, None)


#: The re-reads under way (a task is kept until it is done).
_rereads: set[asyncio.Future[None]] = set()


async def _read_again(consumer: Any) -> None:
    """Pause the streams, seek every partition to its committed offset, resume.

    Not while the group rebalances: that pauses, seeks to the committed offsets
    and resumes by itself, and resuming here would start the streams before the
    tables are recovered."""
    app = consumer.app
    if getattr(app, "rebalancing", False):
        consumer._gatekeeper_rereading = False
        return
    try:
        app.flow_control.suspend()
        consumer.stop_flow()
        app.flow_control.clear()
        await asyncio.sleep(0)
        await consumer.perform_seek()
    finally:
        app.flow_control.resume()
        consumer.resume_flow()
        consumer._gatekeeper_rereading = False
        for task in [t for t in _rereads if t.done()]:
            _rereads.discard(task)


async def fetched_ends(
    bootstrap: str, client: Mapping[str, Any], ends: Mapping[Any, int | None]
) -> dict[Any, int | None]:
    """*ends* checked against the high-water mark of a fetch from each end - 1."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    probe = {tp: end for tp, end in ends.items() if end}
    if not probe:
        return dict(ends)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, **client
    )
    await consumer.start()
    try:
        tps = {tp: TopicPartition(tp.topic, tp.partition) for tp in probe}
        consumer.assign(list(tps.values()))
        for tp, end in probe.items():
            consumer.seek(tps[tp], end - 1)
        while any(consumer.highwater(t) is None for t in tps.values()):
            await consumer.getmany(timeout_ms=100)
        exact = dict(ends)
        for tp, end in probe.items():
            exact[tp] = max(end, consumer.highwater(tps[tp]) or 0)
        return exact
    finally:
        await consumer.stop()


async def log_ends(bootstrap: str, client: Mapping[str, Any], tps: Iterable[Any]) -> dict[Any, int]:
    """The true end (the next offset) of each of *tps*: ListOffsets' answer checked
    by a fetch (:func:`fetched_ends`); 0 for a topic the broker does not have."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    wanted = list(tps)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, **client
    )
    await consumer.start()
    try:
        known = await consumer.topics()
        present = [tp for tp in wanted if tp.topic in known]
        listed = await consumer.end_offsets(
            [TopicPartition(tp.topic, tp.partition) for tp in present]
        )
    finally:
        await consumer.stop()
    ends: dict[Any, int | None] = dict.fromkeys(wanted, 0)
    ends.update({tp: listed.get(TopicPartition(tp.topic, tp.partition)) for tp in present})
    exact = await fetched_ends(bootstrap, client, ends)
    return {tp: end or 0 for tp, end in exact.items()}


def kept_offsets(app: faust.App, partitions: int) -> dict[Any, tuple[Path, int]]:
    """Per changelog partition, the file of each on-disk table store (RocksDB) and the
    last changelog offset it says it has read, for the stores that exist.

    Read before the worker starts, from the files alone (read-only). Reads the
    store's ``partition_path`` and its ``offset_key``, where
    ``set_persisted_offset`` keeps the offset.
    """
    from faust.stores.rocksdb import Store
    from faust.types import TP
    from rocksdict import AccessType, Rdict

    kept: dict[Any, tuple[Path, int]] = {}
    for table in app.tables.values():
        store = table.data
        if not isinstance(store, Store):
            continue
        topic = table.changelog_topic.get_topic_name()
        for partition in range(partitions):
            path = store.partition_path(partition)
            if not path.exists():
                continue
            db = Rdict(str(path), access_type=AccessType.read_only())
            try:
                raw = db.get(Store.offset_key)
            finally:
                db.close()
            if raw is not None:
                kept[TP(topic, partition)] = (path, int(raw))
    return kept


def stop_within(worker: Any, seconds: float, overrun: Callable[[], None]) -> None:
    """Call *overrun* if the worker has not stopped *seconds* after SIGTERM or SIGINT.

    A worker that cannot reach Kafka waits for it on the way out (a commit, a
    flush) for as long as its clients' timeouts allow, longer than a pod's grace
    period. Wraps mode's ``Worker._schedule_shutdown``, which both signals call.
    """
    original = worker._schedule_shutdown
    started: list[threading.Timer] = []

    def schedule(signal: Any) -> None:
        if not started:
            timer = threading.Timer(seconds, overrun)
            timer.daemon = True
            timer.start()
            started.append(timer)
        original(signal)

    worker._schedule_shutdown = schedule


def is_ready(app: faust.App) -> bool:
    """Partitions assigned and every table recovered: the service answers truthfully.

    Reads ``app.in_recovery`` and ``app.tables.recovery.completed``.
    """
    if app.rebalancing or getattr(app, "in_recovery", False):
        return False
    recovery = getattr(app.tables, "recovery", None)
    return recovery is not None and bool(recovery.completed.is_set())


def committed_and_end_offsets(app: faust.App) -> tuple[Mapping[Any, int], Mapping[Any, int]]:
    """The offsets this worker committed and the high-water marks its fetches saw.

    Reads the monitor's ``tp_committed_offsets`` and ``tp_end_offsets``.
    """
    monitor: Any = app.monitor
    committed = dict(getattr(monitor, "tp_committed_offsets", None) or {})
    ends = dict(getattr(monitor, "tp_end_offsets", None) or {})
    return committed, ends


def changelog_topic_name(table: Any) -> str:
    """The name of a faust table's changelog topic."""
    return str(table.changelog_topic.get_topic_name())


def keep_changelog_offset(table: Any, tp: Any, offset: int) -> None:
    """Tell a table's store the last changelog offset it holds (what a RocksDB store
    reads at start to replay only the changelog's tail), as faust's own writes do."""
    table.data.set_persisted_offset(tp, offset)


def without_spinner(worker: Any) -> None:
    """No terminal spinner on a worker: it would corrupt the JSON log stream."""
    worker.spinner = None
