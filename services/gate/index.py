"""An in-memory index of the gate's item table, kept up to date as states are written.

The timer asks which items need the clock now, and the gauges ask how many
holds there are by reason and how old the oldest is. Answered by walking every
held item, each tick cost time in proportion to everything held (about 50 ms
at 50,000 holds, twice a second, with every input waiting behind it). Here
each answer costs what changed since the last one: heaps ordered by time, and
counts adjusted by the difference a write makes. Heap entries are not removed
when an item changes; an entry that no longer matches its item is dropped
when it reaches the top.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable
from datetime import datetime

__all__ = ["HoldIndex", "Holds"]

#: (reasons, held since) for each held audience of one item
Holds = tuple[tuple[tuple[str, ...], datetime], ...]


def _reasons(holds: Holds) -> Iterable[str]:
    for reasons, _ in holds:
        yield from reasons or ("none",)


class HoldIndex:
    """When each item next needs the clock, and what it holds, for a table of items."""

    def __init__(self) -> None:
        self._wake: dict[bytes, datetime] = {}
        self._wake_heap: list[tuple[datetime, bytes]] = []
        self._holds: dict[bytes, Holds] = {}
        self._since_heaps: dict[str, list[tuple[datetime, bytes]]] = {}
        self._counts: Counter[tuple[str, str]] = Counter()
        self._items: Counter[str] = Counter()
        self._escalated: dict[bytes, int] = {}
        self._escalated_by_tenant: Counter[str] = Counter()

    def update(
        self,
        key: bytes,
        tenant: str,
        wake_at: datetime | None,
        holds: Holds,
        escalated: int = 0,
    ) -> None:
        """Record what the state just written for *key* says: its wake time, its holds
        and how many of them escalated."""
        before_escalated = self._escalated.get(key, 0)
        if escalated != before_escalated:
            self._escalated_by_tenant[tenant] += escalated - before_escalated
            if escalated:
                self._escalated[key] = escalated
            else:
                self._escalated.pop(key, None)
        if wake_at is None:
            self._wake.pop(key, None)
        elif self._wake.get(key) != wake_at:
            self._wake[key] = wake_at
            heapq.heappush(self._wake_heap, (wake_at, key))
        before = self._holds.get(key, ())
        if holds == before:
            return
        self._counts.subtract((tenant, r) for r in _reasons(before))
        self._counts.update((tenant, r) for r in _reasons(holds))
        self._items[tenant] += bool(holds) - bool(before)
        if holds:
            self._holds[key] = holds
            earlier = {since for _, since in before}
            heap = self._since_heaps.setdefault(tenant, [])
            for _, since in holds:
                if since not in earlier:
                    heapq.heappush(heap, (since, key))
        else:
            self._holds.pop(key, None)

    def due(self, now: datetime) -> list[tuple[bytes, datetime]]:
        """The items whose wake time has come, each wake time answered once."""
        out: list[tuple[bytes, datetime]] = []
        answered: set[bytes] = set()
        heap = self._wake_heap
        while heap and heap[0][0] <= now:
            at, key = heapq.heappop(heap)
            # A wake time set, cleared and set again has two entries; both leave now.
            if self._wake.get(key) == at and key not in answered:
                answered.add(key)
                out.append((key, at))
        return out

    def counts(self) -> dict[tuple[str, str], int]:
        """Holds by (tenant, reason); a hold with several reasons counts under each."""
        return {k: n for k, n in self._counts.items() if n}

    def items(self, tenant: str) -> int:
        """How many of the tenant's items hold something."""
        return self._items[tenant]

    def escalated(self, tenant: str) -> int:
        """How many of the tenant's holds the gate escalated."""
        return self._escalated_by_tenant[tenant]

    def oldest(self, tenant: str) -> datetime | None:
        """When the tenant's oldest current hold began, if anything is held."""
        heap = self._since_heaps.get(tenant)
        while heap:
            since, key = heap[0]
            if any(s == since for _, s in self._holds.get(key, ())):
                return since
            heapq.heappop(heap)
        return None

    def held(self) -> list[bytes]:
        """The keys of the items that hold something."""
        return list(self._holds)
