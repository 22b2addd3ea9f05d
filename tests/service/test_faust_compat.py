"""Each use of faust's private API, checked against the installed faust.

These fail when a faust release moves or renames what gatekeeper reaches into,
before a service misbehaves quietly.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from types import SimpleNamespace
from typing import Any, cast

import faust
import faust.tables.recovery
import faust.transport.consumer
import faust.transport.drivers.aiokafka as driver
import pytest
import structlog
from faust.streams import current_event
from faust.types import TP

from services.runtime import faust_compat
from services.runtime.app import make_app
from services.runtime.settings import Settings
from services.runtime.tables import bytes_table


def _app() -> faust.App:
    return make_app("compat", Settings(kafka_bootstrap_servers="127.0.0.1:1"))


def test_the_installed_faust_is_a_tested_release() -> None:
    faust_compat.check_version()


@pytest.mark.parametrize("version", ["0.16.0", "0.14.2", "1.10.4"])
def test_an_untested_faust_release_is_refused_with_one_message(version: str) -> None:
    with pytest.raises(faust_compat.UntestedFaust, match=f"faust-streaming {version} is not"):
        faust_compat.check_version(version)


class _Event:
    message = None


def test_an_event_made_current_is_faust_s_current_event() -> None:
    event = _Event()
    faust_compat.set_current_event(event)
    assert current_event() is cast(Any, event)


async def test_the_fetch_wait_set_last_reaches_each_consumer_faust_builds() -> None:
    create = driver.AIOKafkaConsumerThread._create_worker_consumer
    assert list(inspect.signature(create).parameters) == ["self", "transport"]
    app = _app()  # made without the embedded broker, nor a wait set: faust's own
    thread, transport = cast(Any, app.consumer)._thread, cast(Any, app.transport)
    patched = driver.AIOKafkaConsumerThread._create_worker_consumer
    assert getattr(patched, "_gatekeeper", False)
    try:
        assert patched(thread, transport)._fetch_max_wait_ms == 1500
        faust_compat.fetch_wait(20)
        assert patched(thread, transport)._fetch_max_wait_ms == 20
        faust_compat.fetch_wait(300)
        assert driver.AIOKafkaConsumerThread._create_worker_consumer is patched, "patched once"
        assert patched(thread, transport)._fetch_max_wait_ms == 300
        faust_compat.fetch_wait(None)
        assert patched(thread, transport)._fetch_max_wait_ms == 1500
        # What a service's settings ask for is what its app's consumers get.
        bootstrap = "127.0.0.1:1"
        make_app("compat", Settings(kafka_bootstrap_servers=bootstrap, embedded_broker=True))
        assert patched(thread, transport)._fetch_max_wait_ms == 20
        make_app("compat", Settings(kafka_bootstrap_servers=bootstrap, kafka_fetch_max_wait_ms=5))
        assert patched(thread, transport)._fetch_max_wait_ms == 5
    finally:
        faust_compat.fetch_wait(None)


def test_readiness_reads_attributes_faust_has() -> None:
    app = _app()
    assert app.rebalancing is False
    assert app.in_recovery is False
    recovery = cast(Any, app.tables).recovery
    assert recovery.completed.is_set() is False
    assert faust_compat.is_ready(app) is False, "not ready before its tables recovered"
    recovery.completed.set()
    assert faust_compat.is_ready(app) is True


def test_consumer_offsets_come_from_the_monitor() -> None:
    app = _app()
    monitor = app.monitor
    assert isinstance(monitor.tp_committed_offsets, dict)
    assert isinstance(monitor.tp_end_offsets, dict)
    monitor.tp_committed_offsets["tp"] = 3
    monitor.tp_end_offsets["tp"] = 5
    assert faust_compat.committed_and_end_offsets(app) == ({"tp": 3}, {"tp": 5})


def test_the_exact_end_patch_wraps_what_recovery_asks_for_highwaters() -> None:
    highwaters = driver.AIOKafkaConsumerThread._highwaters
    assert list(inspect.signature(highwaters).parameters) == ["self", "partitions"]
    faust_compat.exact_log_ends("127.0.0.1:1", {})
    patched = driver.AIOKafkaConsumerThread._highwaters
    assert getattr(patched, "_gatekeeper", False)
    faust_compat.exact_log_ends("127.0.0.1:1", {})
    assert driver.AIOKafkaConsumerThread._highwaters is patched, "patched once"
    # Recovery asks the consumer for highwaters, which the thread answers.
    source = inspect.getsource(faust.tables.recovery.Recovery._build_highwaters)
    assert "consumer.highwaters(" in source
    assert "self._thread.highwaters(" in inspect.getsource(
        faust.transport.consumer.ThreadDelegateConsumer.highwaters
    )


class _Message:
    topic = "gate.inputs"
    partition = 1


class _Input:
    message = _Message()


async def test_a_store_write_without_changelog_sends_nothing_where_faust_s_own_sends_one() -> None:
    app = _app()
    table = bytes_table(app, "compat-table", 2)
    handled = _Input()
    faust_compat.set_current_event(handled)
    assert faust_compat.current_event_partition() == 1
    waiting = app.producer.buffer

    faust_compat.store_without_changelog(table, b"mine", b"1")
    assert (table.get(b"mine"), waiting.size) == (b"1", 0)

    table[b"faust's"] = b"2"  # faust's own write: the store and a changelog record
    assert (table.get(b"faust's"), waiting.size) == (b"2", 1)


def test_no_current_event_means_no_changelog_partition() -> None:
    with pytest.raises(RuntimeError, match="while an input is being handled"):
        contextvars.Context().run(faust_compat.current_event_partition)


def test_on_the_embedded_broker_a_group_timing_set_in_the_environment_wins() -> None:
    """The embedded mode's short group timings are defaults: several replicas of a
    service on that broker need longer joins, and say so in the environment."""
    short = make_app(
        "compat", Settings(kafka_bootstrap_servers="127.0.0.1:1", embedded_broker=True)
    )
    assert (short.conf.broker_session_timeout, short.conf.broker_rebalance_timeout) == (2.0, 1.0)
    longer = make_app(
        "compat",
        Settings(
            kafka_bootstrap_servers="127.0.0.1:1",
            embedded_broker=True,
            kafka_session_timeout=4.0,
            kafka_rebalance_timeout=4.0,
            kafka_heartbeat_interval=1.0,
        ),
    )
    assert (longer.conf.broker_session_timeout, longer.conf.broker_rebalance_timeout) == (4.0, 4.0)
    assert longer.conf.broker_heartbeat_interval == 1.0


class _Flow:
    def __init__(self, steps: list[str], name: str) -> None:
        self.steps, self.name = steps, name

    def suspend(self) -> None:
        self.steps.append(f"{self.name} suspended")

    def clear(self) -> None:
        self.steps.append(f"{self.name} cleared")

    def resume(self) -> None:
        self.steps.append(f"{self.name} resumed")


def test_offsets_skipped_over_are_never_counted_as_handled_but_read_again() -> None:
    """faust's fetch loop marks offsets it skipped as a gap and commits past them; on
    gatekeeper's inputs that would commit records no agent handled. The gap is
    logged, nothing in it is acknowledged, and the consumer goes back to its
    committed offsets, streams paused meanwhile."""
    from faust.transport.consumer import Consumer

    _app()  # installs the patch
    assert "self._add_gap(" in inspect.getsource(Consumer._drain_messages), "still the hook"
    steps: list[str] = []

    async def perform_seek() -> None:
        steps.append("sought to the committed offsets")

    async def gap() -> None:
        resumed = asyncio.Event()

        def resume_flow() -> None:
            steps.append("fetching resumed")
            resumed.set()

        consumer.resume_flow = resume_flow
        await Consumer._add_gap(cast(Any, consumer), TP("cms.accepted", 0), 459, 473)
        await asyncio.wait_for(resumed.wait(), 5)

    consumer = SimpleNamespace(
        _gap={},
        app=SimpleNamespace(flow_control=_Flow(steps, "streams")),
        stop_flow=lambda: steps.append("fetching stopped"),
        perform_seek=perform_seek,
    )

    with structlog.testing.capture_logs() as logged:
        asyncio.run(gap())
    assert consumer._gap == {}, "nothing in the gap is taken as handled"
    assert [(e["event"], e["offsets"]) for e in logged] == [("consumer.offset_gap", "459-473")]
    assert steps == [
        "streams suspended",
        "fetching stopped",
        "streams cleared",
        "sought to the committed offsets",
        "streams resumed",
        "fetching resumed",
    ]


def _acking(committed: int | None, acked: list[int], earliest: int, steps: list[str]) -> Any:
    """A consumer as faust's commit bookkeeping sees it, for one partition."""
    tp = TP("cms.accepted", 0)

    async def earliest_offsets(*tps: TP) -> dict[TP, int]:
        return {tp: earliest}

    async def perform_seek() -> None:
        steps.append("sought to the committed offsets")

    return SimpleNamespace(
        _acked={tp: list(acked)},
        _acked_index={tp: set(acked)},
        _gap={tp: None},
        _committed_offset={tp: committed},
        app=SimpleNamespace(
            flow_control=_Flow(steps, "streams"), consumer_generation_id=1, rebalancing=False
        ),
        stop_flow=lambda: steps.append("fetching stopped"),
        resume_flow=lambda: steps.append("fetching resumed"),
        perform_seek=perform_seek,
        earliest_offsets=earliest_offsets,
    )


async def _commit(consumer: Any, tp: TP) -> int | None:
    """The offset faust would commit for *tp* now, once any re-read this started is done."""
    from faust.transport.consumer import Consumer

    offset = Consumer._new_offset(cast(Any, consumer), tp)
    await asyncio.gather(*[t for t in faust_compat._rereads if not t.done()])
    return offset


@pytest.mark.parametrize(
    ("committed", "acked", "hole"),
    [(10, [11, 12], "10-10"), (0, [1, 2], "0-0"), (10, [14], "10-13")],
)
def test_acknowledged_offsets_after_a_hole_are_not_committed_and_the_hole_is_read_again(
    committed: int, acked: list[int], hole: str
) -> None:
    """faust would commit 13 for acknowledged 11 and 12 after a committed 10 (it lets a
    run begin one past the committed offset, or anywhere after 0): offset 10, never
    acknowledged, would be committed unread."""
    from faust.transport.consumer import Consumer

    _app()  # installs the patch
    steps: list[str] = []
    consumer = _acking(committed, acked, 0, steps)
    tp = TP("cms.accepted", 0)

    with structlog.testing.capture_logs() as logged:
        assert asyncio.run(_commit(consumer, tp)) is None
    assert [(e["event"], e["offsets"]) for e in logged] == [("consumer.offset_hole", hole)]
    assert steps.count("sought to the committed offsets") == 1, "read again from there"
    with structlog.testing.capture_logs() as logged:
        assert asyncio.run(_commit(consumer, tp)) is None, "the hole not yet read: not committed"
    assert (logged, steps.count("sought to the committed offsets")) == ([], 1), "once a generation"

    # Once the hole is read and acknowledged, the run is committed.
    consumer._acked[tp] = sorted({*range(committed, acked[0]), *acked})
    consumer._acked_index[tp] = set(consumer._acked[tp])
    assert Consumer._new_offset(cast(Any, consumer), tp) == acked[-1] + 1


def test_a_hole_the_log_no_longer_holds_is_committed_past_once_read_is_impossible() -> None:
    from faust.transport.consumer import Consumer

    _app()
    steps: list[str] = []
    consumer = _acking(10, [50, 51], 50, steps)  # retention ended offsets 10 to 49
    tp = TP("cms.accepted", 0)

    with structlog.testing.capture_logs() as logged:
        assert asyncio.run(_commit(consumer, tp)) is None
    assert [e["event"] for e in logged] == ["consumer.offset_hole", "consumer.offsets_gone"]
    assert steps == [], "nothing to read again"
    assert Consumer._new_offset(cast(Any, consumer), tp) == 52


def test_a_hole_found_while_the_group_rebalances_is_left_to_the_rebalance_s_own_seek() -> None:

    _app()
    steps: list[str] = []
    consumer = _acking(10, [11, 12], 0, steps)
    consumer.app.rebalancing = True
    tp = TP("cms.accepted", 0)

    with structlog.testing.capture_logs() as logged:
        assert asyncio.run(_commit(consumer, tp)) is None, "still not committed past the hole"
    assert steps == [], "the streams are not resumed in the middle of a rebalance"
    assert logged == [], "nor a hole logged at every commit while the group rebalances"

    consumer.app.rebalancing = False  # the rebalance over, the hole still there
    with structlog.testing.capture_logs() as logged:
        assert asyncio.run(_commit(consumer, tp)) is None
    assert [e["event"] for e in logged] == ["consumer.offset_hole"]
    assert "sought to the committed offsets" in steps
