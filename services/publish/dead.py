"""Publish's dead letters as every publish process knows them.

The process that owns a delivery writes it to the compacted topic ``publish.dead``
when it dies, and a tombstone when a redelivery takes it up again; every process
reads that topic whole (a mirror hands each record to :meth:`DeadLetters.apply`)
and its own writes straight away. A header carries the owner's time, so an older
record never replaces a newer one. So ``GET /v1/dead-letters`` and a redelivery
work from any publish process.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError

from services.publish.delivery import Delivery
from services.runtime.stamps import stamp_of

__all__ = ["DeadLetters"]


class DeadLetters:
    def __init__(self) -> None:
        self._by_key: dict[str, tuple[float, Delivery | None]] = {}

    def put(self, key: str, stamp: float, record: Delivery | None) -> None:
        """The owner's word at *stamp*: dead (*record*), or no longer (None)."""
        known = self._by_key.get(key)
        if known is None or known[0] <= stamp:
            self._by_key[key] = (stamp, record)

    def apply(
        self, key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]
    ) -> None:
        """One record of ``publish.dead``; one without a key or a time is skipped."""
        stamp = stamp_of(headers)
        if key is None or stamp is None:
            return
        try:
            record = Delivery.model_validate_json(value) if value is not None else None
        except ValidationError:
            return
        self.put(key.decode(), stamp, record)

    def all(self, tenant: str | None = None) -> list[Delivery]:
        found = (
            r
            for _, r in self._by_key.values()
            if r is not None and (tenant is None or r.order.tenant == tenant)
        )
        return sorted(found, key=lambda r: r.updated_at)

    def by_id(self, delivery_id: str) -> Delivery | None:
        return next((r for r in self.all() if r.delivery_id == delivery_id), None)
