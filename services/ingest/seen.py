"""The ``webhook-id``s ingest has accepted, for the door's answer, and their expiry.

The table ``ingest-seen`` is partitioned: a process holds the ids of its own
partitions. Every process also reads the table's changelog whole (a mirror hands
each record to :meth:`EverySeen.apply`), so a CMS that delivers an id again to
another process is answered ``200 duplicate`` there too.

An id is kept for the replay window (``GATEKEEPER_WEBHOOK_ID_RETENTION_MS``,
7 days by default: longer than a CMS retries) and the ids together take at most
``GATEKEEPER_WEBHOOK_IDS_MAX_BYTES``; past either, the oldest are forgotten.
A forgotten id delivered again is accepted again, and the gate, which knows
the event id derived from it, records it as already decided.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from services.ingest.dedupe import seen_at, seen_value
from services.runtime.ports import Clock, TextTable

__all__ = ["EverySeen", "LocalIds", "SeenIds", "SeenWindow", "Swept"]


@dataclass(frozen=True)
class SeenWindow:
    """How long an id is kept, and how many bytes the ids may take together."""

    retention_s: float
    max_bytes: int

    @property
    def retention_ms(self) -> int:
        return round(self.retention_s * 1000)


class LocalIds(TextTable, Protocol):
    """This process's part of the table, which can also forget its oldest ids."""

    def oldest_first(self) -> Iterator[tuple[str, str]]: ...

    def forget(self, key: str) -> None: ...


class SeenIds:
    """A :class:`~services.runtime.ports.TextTable` of event ids by idempotency key
    over a table of stamped values: :meth:`get` answers only ids seen within the
    window, :meth:`put` stamps the time."""

    def __init__(self, table: TextTable, window: SeenWindow, clock: Clock) -> None:
        self._table = table
        self._window = window
        self._clock = clock

    def get(self, key: str) -> str | None:
        value = self._table.get(key)
        if value is None:
            return None
        event_id, at = seen_at(value)
        if self._clock().timestamp() - at > self._window.retention_s:
            return None
        return event_id

    def put(self, key: str, value: str) -> None:
        self._table.put(key, seen_value(value, self._clock().timestamp()))


@dataclass(frozen=True)
class Swept:
    """What one sweep forgot: ids past the window, and ids forgotten early for space."""

    expired: int
    evicted: int
    kept: int
    bytes: int


class EverySeen:
    """A :class:`~services.runtime.ports.TextTable`: this process's table, and what every
    process's table holds as its changelog tells it, oldest first."""

    def __init__(self, local: LocalIds, window: SeenWindow) -> None:
        self._local = local
        self._window = window
        self._everywhere: dict[bytes, str] = {}
        self._bytes = 0

    def get(self, key: str) -> str | None:
        return self._local.get(key) or self._everywhere.get(key.encode())

    def put(self, key: str, value: str) -> None:
        self._local.put(key, value)

    def apply(
        self, key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]
    ) -> None:
        """One record of the changelog; an id seen again moves to the newest end."""
        if key is None:
            return
        old = self._everywhere.pop(key, None)
        if old is not None:
            self._bytes -= len(key) + len(old)
        if value is not None:
            text = value.decode("utf-8", "replace")
            self._everywhere[key] = text
            self._bytes += len(key) + len(text)

    def sweep(self, now: float) -> Swept:
        """Forget the ids seen before the window, then the oldest while the ids take
        more than the bytes allowed. Ids arrive nearly in time order, so the sweep
        stops at the first id it keeps."""
        cutoff = now - self._window.retention_s
        expired = evicted = 0
        while self._everywhere:
            key, value = next(iter(self._everywhere.items()))
            at = seen_at(value)[1]
            if at < cutoff:
                expired += 1
            elif self._bytes > self._window.max_bytes:
                evicted += 1
                cutoff = at + 1
            else:
                break
            del self._everywhere[key]
            self._bytes -= len(key) + len(value)
        stale = []
        for key_text, value in self._local.oldest_first():
            if seen_at(value)[1] >= cutoff:
                break
            stale.append(key_text)
        for key_text in stale:
            self._local.forget(key_text)
        return Swept(expired, evicted, len(self._everywhere), self._bytes)
