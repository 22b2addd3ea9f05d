"""A table store on disk checked against the broker before a service starts.

A RocksDB store keeps the changelog offset it has read up to, and at start
replays only what the changelog has past it. If the broker's log of that
partition ends before that offset (the topic was deleted or recreated, or the
broker lost its data), the store and the log disagree about what happened;
replaying would skip what the log gets next, and dropping the store would
lose what only it holds. The service then does not start, and says which
store, which topic and partition, and what to do.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import faust

from services.runtime.faust_compat import kept_offsets, log_ends
from services.runtime.kafka_security import KafkaSecurity
from services.runtime.settings import Settings

__all__ = ["StoreAhead", "stores_ahead"]

#: How long the broker may take to answer the ends, in seconds.
_TIMEOUT = 30.0


@dataclass(frozen=True)
class StoreAhead:
    """A store that has read further than its changelog's log reaches."""

    path: Path
    topic: str
    partition: int
    kept: int
    end: int

    def __str__(self) -> str:
        last = f"ends at offset {self.end - 1}" if self.end else "is empty or missing"
        return (
            f"the store {self.path} has read changelog {self.topic} partition "
            f"{self.partition} up to offset {self.kept}, but the broker's log {last}: "
            "the topic was deleted or recreated, or the broker lost its data. "
            "Restore the topic's data if you can; if it is gone for good, move "
            f"{self.path} aside and start again, and the partition is rebuilt from "
            "what the broker has (what only this store held is then lost)"
        )


def stores_ahead(app: faust.App, settings: Settings) -> list[StoreAhead]:
    """Every on-disk store of *app* that has read past the end of its changelog."""
    kept = kept_offsets(app, settings.partitions)
    if not kept or not settings.kafka_bootstrap_servers:
        return []
    client = KafkaSecurity.of(settings).client_kwargs()
    # A loop of its own: the worker that starts next sets up the thread's loop.
    loop = asyncio.new_event_loop()
    try:
        ends = loop.run_until_complete(
            asyncio.wait_for(log_ends(settings.kafka_bootstrap_servers, client, kept), _TIMEOUT)
        )
    finally:
        loop.close()
    return [
        StoreAhead(path, tp.topic, tp.partition, offset, ends[tp])
        for tp, (path, offset) in sorted(kept.items())
        if offset >= ends[tp]
    ]
