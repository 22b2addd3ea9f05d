"""One item's inputs in order, partitions side by side, in batches acknowledged once saved."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import faust
import structlog

from services.runtime.faust_compat import (
    set_current_event,
)

__all__ = ["PartitionBatches"]


class PartitionBatches:
    """Handle a stream's events in batches: one partition's in order, partitions side by side.

    Every key lives in one partition (the inputs are co-partitioned), so one
    item's inputs are always handled in the order they arrived. A partition's worker takes
    whatever its partition has queued, up to *max_batch*, as soon as it is free:
    one event alone when the stream is quiet (no added latency), a batch sharing
    one round trip when it is busy. Feed it from an agent iterating
    ``stream.noack().events()``. *handle* decides a batch and answers what waits
    until the batch is saved; the worker decides the next batch meanwhile (at most
    one save in flight besides the newest), and acknowledges a batch's events
    only once it is saved. faust commits only the unbroken run of acknowledged
    offsets, so nothing is committed before it was saved. The handler gets a
    function that makes the batch's *i*-th event faust's current event, for
    table writes to go to that event's changelog partition.

    An event read before the group's latest rebalance is neither decided nor
    acknowledged: after a rebalance faust reads every partition again from its
    committed offset, so such an event comes again, and acknowledged it would
    enter the new generation's offsets, which faust commits as one unbroken run
    without checking where that run begins.
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
            self._tasks[partition] = asyncio.ensure_future(self._work(queue))
        await queue.put(event)

    async def _work(self, queue: asyncio.Queue[Any]) -> None:
        saving: asyncio.Future[bool] | None = None
        while True:
            batch = [await queue.get()]
            while len(batch) < self._max and not queue.empty():
                batch.append(queue.get_nowait())
            batch = [event for event in batch if self._current(event)]
            if not batch:
                continue
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
            if self._current(event):
                event.ack()
        return True

    def _current(self, event: Any) -> bool:
        """Whether *event* was read in the group's present generation."""
        return bool(event.message.generation_id == self._app.consumer_generation_id)

    async def _failed(self, batch: Sequence[Any], exc: Exception) -> None:
        # Unacknowledged, the batch is handled again after the restart the crash
        # causes; skipping it would lose it.
        structlog.get_logger("gatekeeper").error(
            "batch.failed", partition=batch[0].message.partition, error=repr(exc)
        )
        await self._app.crash(exc)


def _enter(batch: Sequence[Any], i: int) -> None:
    set_current_event(batch[i])
