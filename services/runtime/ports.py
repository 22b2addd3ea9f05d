"""The narrow ports handlers talk through: an outbox for records, typed tables, a clock.

Handlers receive these as constructor arguments and never see faust: the
composition root passes the Kafka-backed adapters (``services.runtime.tables`` and
``services.runtime.outboxes``), service tests the in-memory ones
(``services.runtime.memory``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from pydantic import BaseModel

__all__ = [
    "Clock",
    "Headers",
    "InboundRecord",
    "ModelTable",
    "OutboundRecord",
    "Outbox",
    "TextTable",
    "nothing_to_wait_for",
    "utcnow",
]

#: The one clock of the services; tests pass their own.
Clock = Callable[[], datetime]

Headers = Sequence[tuple[str, bytes]]


def utcnow() -> datetime:
    return datetime.now(UTC)


async def nothing_to_wait_for() -> None:
    """What :meth:`ModelTable.saved` answers for an adapter whose puts are durable at once."""


@dataclass(frozen=True)
class OutboundRecord:
    """One record to write: topic, key, value and headers (a None key or value as read),
    and its partition when it is not the key's."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    partition: int | None = None


@dataclass(frozen=True)
class InboundRecord:
    """One record a handler reads, whatever consumer delivered it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = field(default_factory=tuple)

    def header(self, name: str) -> str | None:
        """The first header of that name (case-insensitive), as text."""
        for key, value in self.headers:
            if key.lower() == name and value is not None:
                return value.decode("utf-8", "replace")
        return None


class Outbox(Protocol):
    """The one way a handler writes to Kafka."""

    async def send_all(self, records: Sequence[OutboundRecord]) -> None:
        """Write *records* in this order and wait until every one is acknowledged.

        They are pipelined, so several cost one round trip; raises on a timeout
        or a refusal, and then nothing may be assumed written.
        """
        ...


M = TypeVar("M", bound=BaseModel)


class ModelTable(Protocol[M]):
    """A table of pydantic models by bytes key; the adapter owns the encoding."""

    def get(self, key: bytes) -> M | None: ...

    def put(self, key: bytes, value: M) -> None: ...

    def saved(self) -> Awaitable[None]:
        """What waits until every value put so far is durable (on the table's changelog).

        Those values are taken when it is called, not when it is awaited. A
        handler awaits it before its inputs count as handled. An adapter may
        make a value durable as it is put; then there is nothing to wait for.
        """
        ...

    def items(self) -> Iterator[tuple[bytes, M]]: ...

    def values(self) -> Iterator[M]: ...


class TextTable(Protocol):
    """A table of text by text key, for values too small to be models (ids)."""

    def get(self, key: str) -> str | None: ...

    def put(self, key: str, value: str) -> None: ...
