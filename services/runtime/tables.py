"""faust tables behind the ports: tables of bytes, model and text tables, and a model
table whose changelog goes out on the outbox."""

from __future__ import annotations

from collections.abc import Awaitable, Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar

import faust
from pydantic import BaseModel

from services.runtime.faust_compat import (
    changelog_topic_name,
    current_event_partition,
    keep_changelog_offset,
    store_delete_without_changelog,
    store_items,
    store_without_changelog,
)
from services.runtime.outboxes import ProducerOutbox
from services.runtime.ports import OutboundRecord, nothing_to_wait_for

__all__ = ["FaustModelTable", "FaustTextTable", "OutboxModelTable", "bytes_table"]


#: Per partition database. faust's defaults (a 2 GiB block cache and three
#: 64 MiB write buffers) are sized for one big table, not for a pod with a
#: memory limit and a database for each of its partitions.
_ROCKSDB_OPTIONS = {
    "write_buffer_size": 4 * 1024 * 1024,
    "max_write_buffer_number": 2,
    "block_cache_size": 8 * 1024 * 1024,
}


def bytes_table(
    app: faust.App,
    name: str,
    partitions: int,
    store: str = "memory",
    topic_configs: Mapping[str, str] | None = None,
) -> Any:
    """A table of bytes to bytes; the service owns the encoding of its values.

    The types are explicit because a table otherwise encodes its changelog as
    JSON, whatever the app's default serializer is. *store* "rocksdb" keeps the
    table on disk under the app's datadir (rocksdict), one database per partition.
    *topic_configs* are set on the changelog topic when it is made.
    """
    return app.Table(
        name,
        default=None,
        partitions=partitions,
        key_type=bytes,
        value_type=bytes,
        store=f"{store}:{name}",  # the path names the files; "scheme://" alone is ignored
        options=dict(_ROCKSDB_OPTIONS) if store == "rocksdb" else None,
        extra_topic_configs=dict(topic_configs or {}),
    )


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
        self._topic: str = changelog_topic_name(table)
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
            keep_changelog_offset(self._table, tp, offset)


class FaustTextTable:
    """A :class:`~services.runtime.ports.TextTable` over a faust table of bytes."""

    def __init__(self, table: Any) -> None:
        self._table = table

    def get(self, key: str) -> str | None:
        raw = self._table.get(key.encode())
        return raw.decode() if isinstance(raw, bytes) else None

    def put(self, key: str, value: str) -> None:
        """A key written again moves to the newest end of :meth:`oldest_first`."""
        store_delete_without_changelog(self._table, key.encode())
        self._table[key.encode()] = value.encode()

    def oldest_first(self) -> Iterator[tuple[str, str]]:
        """This process's entries in the order written (or recovered)."""
        for key, raw in store_items(self._table):
            yield key.decode(), raw.decode()

    def forget(self, key: str) -> None:
        """Drop an entry here alone: the changelog's retention drops it there."""
        store_delete_without_changelog(self._table, key.encode())
