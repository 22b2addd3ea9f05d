"""The gate's partition batches: a batch is acknowledged only once saved, and the next one is
decided while it is being saved. Real asyncio, stand-in events: no broker."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.runtime.batches import PartitionBatches


@dataclass
class _Message:
    partition: int
    generation_id: int = 1


@dataclass
class _Event:
    number: int
    partition: int = 0
    generation: int = 1
    acked: bool = False
    message: _Message = field(init=False)

    def __post_init__(self) -> None:
        self.message = _Message(self.partition, self.generation)

    def ack(self) -> None:
        self.acked = True


class _App:
    def __init__(self) -> None:
        self.crashed: list[BaseException] = []
        self.consumer_generation_id = 1

    async def crash(self, exc: BaseException) -> None:
        self.crashed.append(exc)


class _Saves:
    """A handler whose batches are saved when the test says so."""

    def __init__(self) -> None:
        self.decided: list[list[int]] = []
        self.saves: list[asyncio.Future[None]] = []
        self.next_decided = asyncio.Event()

    async def handle(self, batch: Sequence[Any], enter: Callable[[int], None]) -> Awaitable[None]:
        self.decided.append([e.number for e in batch])
        self.next_decided.set()
        save: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.saves.append(save)
        return save

    async def decided_again(self) -> None:
        await asyncio.wait_for(self.next_decided.wait(), 5)
        self.next_decided.clear()


async def _settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_a_batch_is_acknowledged_only_once_saved_and_the_next_is_decided_meanwhile() -> None:
    app, saves = _App(), _Saves()
    batches = PartitionBatches(app, saves.handle)  # type: ignore[arg-type]
    first, second = _Event(1), _Event(2)

    await batches.feed(first)
    await saves.decided_again()
    await _settle()
    assert not first.acked, "decided and written, but not yet saved"

    await batches.feed(second)
    await saves.decided_again()
    assert saves.decided == [[1], [2]], "the next batch is decided while the first is saved"
    assert (first.acked, second.acked) == (False, False)

    saves.saves[0].set_result(None)
    await _settle()
    assert (first.acked, second.acked) == (True, False)
    saves.saves[1].set_result(None)
    await _settle()
    assert second.acked


async def test_what_queues_while_a_partition_is_busy_is_one_batch_and_one_save_at_most_waits() -> (
    None
):
    app, saves = _App(), _Saves()
    batches = PartitionBatches(app, saves.handle)  # type: ignore[arg-type]
    events = [_Event(n) for n in range(1, 6)]
    await batches.feed(events[0])
    await saves.decided_again()
    for event in events[1:4]:
        await batches.feed(event)
    await saves.decided_again()
    assert saves.decided == [[1], [2, 3, 4]]

    await batches.feed(events[4])
    await _settle()
    assert saves.decided == [[1], [2, 3, 4]], "a third batch waits for the first save"

    saves.saves[0].set_result(None)
    await saves.decided_again()
    assert saves.decided == [[1], [2, 3, 4], [5]]
    assert [e.acked for e in events] == [True, False, False, False, False]


async def test_a_failed_save_crashes_the_app_and_acknowledges_nothing_of_its_batch() -> None:
    app, saves = _App(), _Saves()
    batches = PartitionBatches(app, saves.handle)  # type: ignore[arg-type]
    event = _Event(1)
    await batches.feed(event)
    await saves.decided_again()

    saves.saves[0].set_exception(ConnectionError("broker gone"))
    await _settle()

    assert not event.acked, "read again after the restart the crash causes"
    assert [type(e) for e in app.crashed] == [ConnectionError]


async def test_what_was_read_before_a_rebalance_is_left_to_be_read_again_not_acknowledged() -> None:
    app, saves = _App(), _Saves()
    batches = PartitionBatches(app, saves.handle)  # type: ignore[arg-type]
    before = [_Event(n) for n in (1, 2, 3)]
    await batches.feed(before[0])
    await saves.decided_again()
    for event in before[1:]:
        await batches.feed(event)  # queued while the first batch is saved
    await saves.decided_again()
    assert saves.decided == [[1], [2, 3]]
    third = _Event(4)
    await batches.feed(third)  # queued behind the two saves

    # The group rebalances: faust reads the partition again from its committed
    # offset, in the new generation.
    app.consumer_generation_id = 2
    saves.saves[0].set_result(None)
    saves.saves[1].set_result(None)
    again = [_Event(n, generation=2) for n in (1, 2, 3, 4)]
    for event in again:
        await batches.feed(event)
    await saves.decided_again()
    await _settle()

    assert saves.decided == [[1], [2, 3], [1, 2, 3, 4]], "4 as read before: not decided"
    assert not any(e.acked for e in [*before, third]), "no offset of the old generation"
    saves.saves[2].set_result(None)
    await _settle()
    assert all(e.acked for e in again)
