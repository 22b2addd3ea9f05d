"""The gate's side of the monthly follow-up e-mail: ask publish for each tenant's report
once it is due, once per process (publish keeps each (tenant, month) to one e-mail,
so a restart that asks again sends nothing twice)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Container
from datetime import date

from services.gate.followup import FollowUp
from services.gate.report import due_month, report_due
from services.runtime import topics
from services.runtime.keys import ItemKey
from services.runtime.ports import Clock, OutboundRecord, Outbox

__all__ = ["MonthlyReports"]


class MonthlyReports:
    def __init__(
        self,
        *,
        tenants: Collection[str],
        followup: FollowUp,
        ready: Callable[[], bool],
        outbox: Outbox,
        clock: Clock,
        console_url: str,
        holidays: Container[date],
    ) -> None:
        self._tenants = tuple(sorted(tenants))
        self._followup = followup
        self._ready = ready
        self._outbox = outbox
        self._clock = clock
        self._console_url = console_url.rstrip("/")
        self._holidays = holidays
        self._asked: set[tuple[str, str]] = set()

    async def tick(self) -> None:
        """Ask for every report that is due and not yet asked for by this process; only
        once the whole audit trail has been read, so the figures are complete."""
        now = self._clock()
        month = due_month(now, self._holidays)
        if month is None or not self._ready():
            return
        for tenant in self._tenants:
            if (tenant, month) in self._asked:
                continue
            report = report_due(tenant, now, self._followup, self._holidays, self._console_url)
            if report is not None:
                key = ItemKey(tenant, f"uppfoljning-{report.month}").encode()
                kind, marker = topics.REPORT_HEADER
                value = report.model_dump_json().encode()
                record = OutboundRecord(topics.NOTIFICATIONS, key, value, [(kind, marker)])
                await self._outbox.send_all([record])
            self._asked.add((tenant, month))
