"""Publish's delivery rules on the pure core: scenarios, then random interleavings.

The world below is publish as the shell runs it: the records table, attempt
loops that a restart kills, and outcomes that travel through a topic and so
survive restarts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import ReleaseOrder
from services.publish.delivery import Delivery, Outcome, delivery_key
from services.publish.machine import (
    DeadLettered,
    Delivered,
    Duplicate,
    Order,
    StartAttempts,
    WriteToTopic,
    decide,
)
from tests.conftest import LERUM_SENDER
from tests.properties import examples

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
#: channel -> topic; None: attempted in the background (a webhook)
CHANNELS: dict[str, str | None] = {"intranet": "intranet.notices", "hook": None}


def _order(version: int, channels: list[str]) -> ReleaseOrder:
    return ReleaseOrder(
        decision_id=f"d{version}",
        event_id=f"e{version}",
        tenant="lerum",
        item_id="news-1",
        version=version,
        action="publish",
        audience="internal",
        channels=channels,
        title="Nyhet",
        body="Text.",
        recipients="Alla medarbetare",
        sender=LERUM_SENDER,
        released_at=T0,
    )


def test_a_kafka_channel_is_written_and_receipted_at_once() -> None:
    order = _order(1, ["intranet"])
    record, effects = decide(None, Order(order, "intranet", "intranet.notices"), T0)
    assert record is not None
    assert record.status == "delivered"
    assert [type(e) for e in effects] == [WriteToTopic, Delivered]
    assert isinstance(effects[0], WriteToTopic)
    assert effects[0].topic == "intranet.notices"


def test_a_repeated_order_sends_nothing_and_repeats_the_receipt_of_a_delivery() -> None:
    order = _order(1, ["intranet"])
    record, _ = decide(None, Order(order, "intranet", "intranet.notices"), T0)
    again, effects = decide(record, Order(order, "intranet", "intranet.notices"), T0)
    assert again == record
    [duplicate] = effects
    assert isinstance(duplicate, Duplicate)
    assert duplicate.receipt is not None
    assert duplicate.receipt.delivered_at == T0


def test_a_dead_letter_redelivered_starts_a_fresh_record_under_the_same_id() -> None:
    order = _order(1, ["hook"])
    record, _ = decide(None, Order(order, "hook", None), T0)
    assert record is not None
    failed = Outcome(kind="failed", key=record.key, attempts=8, error="HTTP 503", at=T0)
    dead, effects = decide(record, failed, T0)
    assert dead is not None
    assert dead.status == "dead"
    assert isinstance(effects[0], DeadLettered)
    later = T0 + timedelta(hours=1)
    redeliver = Outcome(kind="redeliver", key=record.key, at=later)
    fresh, effects = decide(dead, redeliver, later)
    assert fresh is not None
    assert (fresh.status, fresh.attempts, fresh.error) == ("pending", 0, None)
    assert fresh.delivery_id == record.delivery_id
    assert effects == (StartAttempts(fresh, redelivery=True),)


def test_a_late_outcome_changes_nothing_that_ended() -> None:
    order = _order(1, ["hook"])
    record, _ = decide(None, Order(order, "hook", None), T0)
    assert record is not None
    ok = Outcome(kind="delivered", key=record.key, attempts=1, payload="{}", at=T0)
    done, _ = decide(record, ok, T0)
    for late in (ok, Outcome(kind="failed", key=record.key, attempts=2, error="x", at=T0)):
        assert decide(done, late, T0) == (done, ())


def test_a_webhook_delivered_is_receipted_once_by_whoever_sends_the_receipt_first() -> None:
    order = _order(1, ["hook"])
    record, _ = decide(None, Order(order, "hook", None), T0)
    assert record is not None
    for receipted, receipts in ((False, 1), (True, 0)):
        outcome = Outcome(
            kind="delivered", key=record.key, attempts=1, payload="{}", at=T0, receipted=receipted
        )
        done, effects = decide(record, outcome, T0)
        assert done is not None
        assert done.status == "delivered"
        [delivered] = effects
        assert isinstance(delivered, Delivered)
        assert (delivered.receipt is not None) == bool(receipts)


@dataclass
class World:
    now: datetime = T0
    table: dict[str, Delivery] = field(default_factory=dict)
    running: list[str] = field(default_factory=list)  # attempt loops, lost on restart
    topic: list[Outcome] = field(default_factory=list)  # outcomes on their way, kept
    ordered: set[str] = field(default_factory=set)
    delivered: dict[str, int] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)
    dead_lettered: dict[str, int] = field(default_factory=dict)
    redelivered: dict[str, int] = field(default_factory=dict)

    def feed(self, key: str, inp: Order | Outcome) -> None:
        before = self.table.get(key)
        after, effects = decide(before, inp, self.now)
        if after is not None:
            self.table[key] = after
        for effect in effects:
            match effect:
                case WriteToTopic():
                    self.written[key] = self.written.get(key, 0) + 1
                case Delivered():
                    self.delivered[key] = self.delivered.get(key, 0) + 1
                case DeadLettered():
                    self.dead_lettered[key] = self.dead_lettered.get(key, 0) + 1
                case StartAttempts(record, redelivery):
                    if redelivery:
                        self.redelivered[key] = self.redelivered.get(key, 0) + 1
                    if record.key not in self.running:
                        self.running.append(record.key)

    def order(self, version: int, channel: str) -> None:
        order = _order(version, [channel])
        key = delivery_key(order, channel)
        self.ordered.add(key)
        self.feed(key, Order(order, channel, CHANNELS[channel]))

    def finish(self, n: int, kind: str) -> None:
        """An attempt reports delivered, retry later or failed for good; the outcome
        goes onto the topic."""
        if self.running:
            key = self.running.pop(n % len(self.running))
            retry_at = self.now + timedelta(seconds=5) if kind == "retry" else None
            self.topic.append(
                Outcome(
                    kind=kind,
                    key=key,
                    attempts=1,
                    payload="{}",
                    error="x",
                    retry_at=retry_at,
                    at=self.now,
                )
            )

    def consume(self, n: int) -> None:
        if self.topic:
            outcome = self.topic.pop(n % len(self.topic))
            self.feed(outcome.key, outcome)

    def restart(self) -> None:
        """Loops die with the process; the scan takes up every pending webhook record."""
        self.running.clear()
        for key, record in self.table.items():
            if record.status == "pending" and CHANNELS[record.channel] is None:
                self.running.append(key)

    def redeliver(self, n: int) -> None:
        dead = sorted(k for k, r in self.table.items() if r.status == "dead")
        if dead:
            key = dead[n % len(dead)]
            self.topic.append(Outcome(kind="redeliver", key=key, at=self.now))

    def drain(self) -> None:
        while self.running or self.topic:
            self.finish(0, "delivered")
            self.consume(0)


steps = st.lists(
    st.one_of(
        st.tuples(st.just("order"), st.integers(1, 3), st.sampled_from(sorted(CHANNELS))),
        st.tuples(
            st.just("finish"), st.integers(0, 5), st.sampled_from(["delivered", "retry", "failed"])
        ),
        st.tuples(st.just("consume"), st.integers(0, 5), st.just(None)),
        st.tuples(st.just("restart"), st.just(0), st.just(None)),
        st.tuples(st.just("redeliver"), st.integers(0, 5), st.just(None)),
        st.tuples(st.just("tick"), st.integers(1, 60), st.just(None)),
    ),
    max_size=60,
)


def _run(plan: list[tuple[str, int, object]]) -> World:
    world = World()
    for op, n, arg in plan:
        if op == "order":
            world.order(n, str(arg))
        elif op == "finish":
            world.finish(n, str(arg))
        elif op == "consume":
            world.consume(n)
        elif op == "restart":
            world.restart()
        elif op == "redeliver":
            world.redeliver(n)
        else:
            world.now += timedelta(seconds=n)
    return world


@settings(max_examples=examples(400), deadline=None)
@given(steps)
def test_each_delivery_is_sent_at_most_once_across_duplicates_outcomes_and_restarts(
    plan: list[tuple[str, int, object]],
) -> None:
    world = _run(plan)
    world.drain()
    assert all(n == 1 for n in world.delivered.values()), world.delivered
    assert all(n == 1 for n in world.written.values()), world.written


@settings(max_examples=examples(400), deadline=None)
@given(steps)
def test_every_order_ends_delivered_or_dead_never_both(
    plan: list[tuple[str, int, object]],
) -> None:
    world = _run(plan)
    world.drain()
    assert set(world.table) == world.ordered
    for key, record in world.table.items():
        assert record.status in {"delivered", "dead"}
        if record.status == "dead":
            assert key not in world.delivered, "a delivered record never turns dead"
        else:
            assert world.delivered.get(key) == 1
        # Every dead letter but one that was taken up again is still dead.
        deaths, revivals = world.dead_lettered.get(key, 0), world.redelivered.get(key, 0)
        assert deaths - revivals == (1 if record.status == "dead" else 0)


def test_a_failed_attempt_with_another_due_keeps_the_record_pending_until_then() -> None:
    order = _order(1, ["hook"])
    record, _ = decide(None, Order(order, "hook", None), T0)
    assert record is not None
    due = T0 + timedelta(minutes=5)
    retry = Outcome(kind="retry", key=record.key, attempts=1, error="HTTP 503", retry_at=due, at=T0)
    waiting, effects = decide(record, retry, T0)
    assert waiting is not None
    assert (waiting.status, waiting.attempts, waiting.next_attempt_at) == ("pending", 1, due)
    assert effects == (StartAttempts(waiting),)
    ok = Outcome(kind="delivered", key=record.key, attempts=2, payload="{}", at=due)
    done, _ = decide(waiting, ok, due)
    assert done is not None
    assert (done.status, done.next_attempt_at) == ("delivered", None)
