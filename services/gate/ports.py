"""The gate handler's own ports, besides the shared ones in ``services.runtime.ports``:
the hold index, the held board and the telemetry. The handler sees only these
protocols; the service gives it the SQLite index and board and the Prometheus
telemetry, a test may give it anything that keeps the same promises (both the
index and the board also run in memory, and :class:`NoTelemetry` counts nothing).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, Protocol

from schemas.events import Decision, ManualReject, ManualRelease, ReleaseOrder
from services.gate.index import Entry
from services.gate.paging import DEFAULT_LIMIT, Page
from services.runtime.ports import InboundRecord

__all__ = ["Board", "GateMetrics", "Holds", "NoTelemetry"]


class Holds(Protocol):
    """What this process holds, by item: due wake times and counts (``HoldIndex``)."""

    def update_many(self, entries: Sequence[Entry]) -> None: ...
    def due(self, now: datetime) -> list[tuple[bytes, datetime]]: ...
    def counts(self) -> dict[tuple[str, str], int]: ...
    def items(self, tenant: str) -> int: ...
    def escalated(self, tenant: str) -> int: ...
    def oldest(self, tenant: str) -> datetime | None: ...
    def held(self) -> Iterator[bytes]: ...


class Board(Protocol):
    """The held list of every process (``HeldBoard``)."""

    def put_many(self, entries: Iterable[tuple[bytes, float, list[dict[str, Any]]]]) -> None: ...
    def get(self, key: bytes) -> list[dict[str, Any]]: ...
    def count(self, tenants: Collection[str]) -> int: ...
    def reasons(self, tenants: Collection[str]) -> list[str]: ...
    def page(
        self,
        tenants: Collection[str],
        *,
        limit: int = DEFAULT_LIMIT,
        cursor: str | None = None,
        q: str | None = None,
        reason: str | None = None,
    ) -> Page: ...
    async def read_json(
        self,
        column: Literal["row", "api"],
        tenants: Collection[str],
        *,
        limit: int = DEFAULT_LIMIT,
        cursor: str | None = None,
        q: str | None = None,
        reason: str | None = None,
    ) -> tuple[bytes, int, str | None]: ...


class GateMetrics(Protocol):
    """The gate's metrics and log lines (``GateTelemetry``)."""

    def decided(self, decision: Decision) -> None: ...
    def released(self, order: ReleaseOrder, latency: float | None) -> None: ...
    def undecodable_input(self, record: InboundRecord, errors: int) -> None: ...
    def unknown_tenant(self, record: InboundRecord, tenant: str, item_id: str) -> None: ...
    def unkeyed_input(self, record: InboundRecord) -> None: ...
    def operator_requested(self, command: ManualRelease | ManualReject) -> None: ...
    def holds(
        self,
        counts: Mapping[tuple[str, str], int],
        tenants: Mapping[str, tuple[int, int, datetime | None]],
        now: datetime,
    ) -> None: ...


class NoTelemetry:
    """:class:`GateMetrics` that counts and logs nothing."""

    def decided(self, decision: Decision) -> None:
        pass

    def released(self, order: ReleaseOrder, latency: float | None) -> None:
        pass

    def undecodable_input(self, record: InboundRecord, errors: int) -> None:
        pass

    def unknown_tenant(self, record: InboundRecord, tenant: str, item_id: str) -> None:
        pass

    def unkeyed_input(self, record: InboundRecord) -> None:
        pass

    def operator_requested(self, command: ManualRelease | ManualReject) -> None:
        pass

    def holds(
        self,
        counts: Mapping[tuple[str, str], int],
        tenants: Mapping[str, tuple[int, int, datetime | None]],
        now: datetime,
    ) -> None:
        pass
