"""The gate's in-memory index answers as a walk over every item would, after any writes."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import cast

from hypothesis import given, settings
from hypothesis import strategies as st

from services.gate.index import HoldIndex, Holds
from tests.properties import examples

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
REASONS = ("awaiting_internal_notice", "awaiting_internal_lead", "awaiting_publish_at")

_minutes = st.integers(min_value=0, max_value=120).map(lambda m: T0 + timedelta(minutes=m))
_holds: st.SearchStrategy[Holds] = st.lists(
    st.tuples(st.lists(st.sampled_from(REASONS), max_size=2, unique=True).map(tuple), _minutes),
    max_size=2,
).map(tuple)
_write = st.tuples(
    st.sampled_from([b"lerum:a", b"lerum:b", b"lerum:c", b"ale:a", b"ale:b"]),
    st.none() | _minutes,
    _holds,
    st.integers(0, 2),
)
# A step is a state written for an item, or the clock's tick at a moment.
_step = st.one_of(_write, _minutes)


def _walk_counts(items: dict[bytes, Holds]) -> dict[tuple[str, str], int]:
    counts: Counter[tuple[str, str]] = Counter()
    for key, holds in items.items():
        tenant = key.decode().partition(":")[0]
        for reasons, _ in holds:
            counts.update((tenant, r) for r in reasons or ("none",))
    return dict(counts)


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(_step, max_size=40))
def test_index_agrees_with_a_walk_over_every_item(steps: list[object]) -> None:
    index = HoldIndex()
    holds_of: dict[bytes, Holds] = {}
    wake_of: dict[bytes, datetime | None] = {}
    answered: set[tuple[bytes, datetime]] = set()
    escalated_of: dict[bytes, int] = {}
    for step in steps:
        if isinstance(step, datetime):
            due = index.due(step)
            expected = {
                (key, at)
                for key, at in wake_of.items()
                if at is not None and at <= step and (key, at) not in answered
            }
            assert set(due) == expected
            assert len(due) == len(expected)  # each wake time answered once
            answered |= expected
            continue
        assert isinstance(step, tuple)
        key, wake_at, holds, escalated = cast(tuple[bytes, datetime | None, Holds, int], step)
        escalated = min(escalated, len(holds))
        index.update(key, key.decode().partition(":")[0], wake_at, holds, escalated)
        escalated_of[key] = escalated
        if wake_at is not None and wake_of.get(key) != wake_at:
            answered.discard((key, wake_at))  # a new wake time is answered anew
        wake_of[key] = wake_at
        holds_of[key] = holds
        held = {k: h for k, h in holds_of.items() if h}
        assert index.counts() == _walk_counts(held)
        assert sorted(index.held()) == sorted(held)
        for tenant in ("lerum", "ale"):
            starts = [
                s for k, h in held.items() if k.startswith(f"{tenant}:".encode()) for _, s in h
            ]
            assert index.oldest(tenant) == (min(starts) if starts else None)
            mine = [k for k in holds_of if k.startswith(f"{tenant}:".encode())]
            assert index.items(tenant) == sum(1 for k in mine if holds_of[k])
            assert index.escalated(tenant) == sum(escalated_of[k] for k in mine)


def test_a_wake_time_is_answered_once_and_a_new_one_again() -> None:
    index = HoldIndex()
    index.update(b"lerum:a", "lerum", T0, ())
    assert index.due(T0 - timedelta(seconds=1)) == []
    assert index.due(T0) == [(b"lerum:a", T0)]
    assert index.due(T0 + timedelta(minutes=1)) == []  # the tick is on its way
    later = T0 + timedelta(minutes=5)
    index.update(b"lerum:a", "lerum", later, ())
    index.update(b"lerum:a", "lerum", later, ())  # written again, unchanged
    assert index.due(later) == [(b"lerum:a", later)]


def test_a_released_item_no_longer_counts_as_the_oldest_hold() -> None:
    index = HoldIndex()
    index.update(b"lerum:old", "lerum", None, ((("awaiting_internal_notice",), T0),))
    index.update(
        b"lerum:new", "lerum", None, ((("awaiting_publish_at",), T0 + timedelta(hours=1)),)
    )
    assert index.oldest("lerum") == T0
    index.update(b"lerum:old", "lerum", None, ())
    assert index.oldest("lerum") == T0 + timedelta(hours=1)
    assert index.counts() == {("lerum", "awaiting_publish_at"): 1}
    assert index.oldest("ale") is None


def test_a_wake_time_set_cleared_and_set_again_is_answered_once() -> None:
    index = HoldIndex()
    index.update(b"lerum:a", "lerum", T0, ())
    index.update(b"lerum:a", "lerum", None, ())
    index.update(b"lerum:a", "lerum", T0, ())
    assert index.due(T0) == [(b"lerum:a", T0)]


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(st.lists(_write, max_size=6), max_size=6), _minutes)
def test_writes_in_batches_answer_as_the_same_writes_one_at_a_time(
    batches: list[list[tuple[bytes, datetime | None, Holds, int]]], now: datetime
) -> None:
    one_by_one, batched = HoldIndex(), HoldIndex()
    for batch in batches:
        distinct = {key: (key, key.decode().partition(":")[0], w, h, e) for key, w, h, e in batch}
        for entry in distinct.values():
            one_by_one.update(*entry)
        batched.update_many(list(distinct.values()))
    assert batched.counts() == one_by_one.counts()
    for tenant in ("lerum", "ale"):
        assert batched.items(tenant) == one_by_one.items(tenant)
        assert batched.escalated(tenant) == one_by_one.escalated(tenant)
        assert batched.oldest(tenant) == one_by_one.oldest(tenant)
    assert sorted(batched.held()) == sorted(one_by_one.held())
    assert sorted(batched.due(now)) == sorted(one_by_one.due(now))
