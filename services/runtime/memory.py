"""In-memory adapters of the ports, for service tests and anything run without Kafka."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Generic, TypeVar

from pydantic import BaseModel

from services.runtime.ports import OutboundRecord, nothing_to_wait_for

__all__ = ["DictModelTable", "DictTextTable", "MemoryOutbox"]

M = TypeVar("M", bound=BaseModel)


class DictModelTable(Generic[M]):
    """A :class:`~services.runtime.ports.ModelTable` in a dict, stored as JSON like the real one."""

    def __init__(self, model: type[M]) -> None:
        self._model = model
        self.data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> M | None:
        raw = self.data.get(key)
        return self._model.model_validate_json(raw) if raw is not None else None

    def put(self, key: bytes, value: M) -> None:
        self.data[key] = value.model_dump_json().encode()

    def saved(self) -> Awaitable[None]:
        """Nothing to wait for: the dict has it."""
        return nothing_to_wait_for()

    def items(self) -> Iterator[tuple[bytes, M]]:
        for key, raw in list(self.data.items()):
            yield key, self._model.model_validate_json(raw)

    def values(self) -> Iterator[M]:
        for _, value in self.items():
            yield value


class DictTextTable:
    """A :class:`~services.runtime.ports.TextTable` in a dict."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self.data.get(key)

    def put(self, key: str, value: str) -> None:
        self.data.pop(key, None)
        self.data[key] = value

    def oldest_first(self) -> Iterator[tuple[str, str]]:
        yield from self.data.items()

    def forget(self, key: str) -> None:
        self.data.pop(key, None)


class MemoryOutbox:
    """An :class:`~services.runtime.ports.Outbox` that keeps what was sent.

    *on_send*, when given, is called with each batch after it is kept, so a test
    can feed records back to a handler as the broker would. *fail* makes every
    send raise, as an unreachable broker does.
    """

    def __init__(
        self, on_send: Callable[[Sequence[OutboundRecord]], Awaitable[None]] | None = None
    ) -> None:
        self.sent: list[OutboundRecord] = []
        self.on_send = on_send
        self.fail: Exception | None = None

    async def send_all(self, records: Sequence[OutboundRecord]) -> None:
        if self.fail is not None:
            raise self.fail
        self.sent.extend(records)
        if self.on_send is not None and records:
            await self.on_send(records)

    def on(self, topic: str) -> list[OutboundRecord]:
        return [r for r in self.sent if r.topic == topic]
